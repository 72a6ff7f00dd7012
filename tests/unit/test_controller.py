from mqtt_controller import protocol
from mqtt_controller.controller import IDLE, NONE, NOW, PACED, SHOPPING, Controller

TOTAL_1 = b'{"msg":"total","payload":{"basketid":1,"totalprice":13900}}'


def test_idle_start_opens_an_empty_session():
    c = Controller(1)
    assert c.take_update() is None
    c.item("MLON")  # ignored while idle
    assert c.counters["ignored_items"] == 1
    assert c.command(b"start") == "start"
    assert c.state == SHOPPING
    assert c.take_update() == b'{"id":1,"list":{}}'
    assert c.take_dirty() == {"state": SHOPPING, "list": {}, "total": None}


def test_items_coalesce_into_one_update():
    c = Controller(3)
    c.command(b"start")
    c.take_update()
    for line in ("MLON", "MLON", "BLUE", "-BLUE", "APPL=2"):
        c.item(line)
    assert c.take_update() == b'{"id":3,"list":{"APPL":2,"MLON":2}}'
    assert c.take_update() is None
    c.item("-NONE")  # no change, no update
    assert c.take_update() is None


def test_start_while_shopping_republishes():
    c = Controller(1, SHOPPING, {"MLON": 2})
    c.command(b"start")
    assert c.state == SHOPPING
    assert c.take_update() == b'{"id":1,"list":{"MLON":2}}'
    assert c.cart.items == {"MLON": 2}


def test_end_publishes_empty_list_and_goes_idle():
    c = Controller(1, SHOPPING, {"MLON": 2}, total=27800)
    c.command(b'{"msg":"end"}')
    assert c.state == IDLE
    assert c.take_update() == b'{"id":1,"list":{}}'
    assert c.view() == (IDLE, 1, 0, None, None)
    c.command(b"end")  # ignored while idle
    assert c.take_update() is None
    assert c.state == IDLE


def total(price, cart=None, basket=1):
    extra = ',"cart":"%s"' % cart if cart is not None else ""
    return ('{"msg":"total","payload":{"basketid":%d,"totalprice":%d%s}}'
            % (basket, price, extra)).encode()


def test_total_is_shown_while_shopping_never_while_idle():
    c = Controller(1)
    assert c.command(TOTAL_1) == "total"  # a command, not a rejection ...
    assert c.total is None  # ... but never shown while idle
    assert c.view() == (IDLE, 1, 0, None, None)
    assert c.counters["rejected_commands"] == 0
    assert c.take_dirty() is None
    c.command(b"start")
    c.item("MLON")
    c.command(TOTAL_1)  # no `cart` (the original backend): shown as it comes
    assert c.view() == (SHOPPING, 1, 1, 13900, None)
    notes = [t for _, t in c.take_notes()]
    assert any("13,900" in t for t in notes), notes


def test_a_total_naming_another_cart_is_stale_and_not_shown():
    c = Controller(1)
    c.command(b"start")
    c.item("APPL")
    c.item("MLON=2")
    c.take_notes()
    old = protocol.cart_digest({"APPL": 1})
    assert c.command(total(900, old)) == "total"
    assert c.view() == (SHOPPING, 1, 3, None, None)
    assert not c.confirmed
    assert c.counters["stale_totals"] == 1 and c.counters["rejected_commands"] == 0
    notes = c.take_notes()
    assert notes and notes[0][0] == "info" and "stale" in notes[0][1], notes
    c.command(total(4500, "babb60748de7c28f8779ca339e428c99"))  # {"APPL":1,"MLON":2}
    assert c.view() == (SHOPPING, 1, 3, 4500, None) and c.confirmed
    assert c.take_dirty()["total"] == 4500


def test_any_cart_change_hides_the_total_until_one_for_the_new_cart():
    c = Controller(1, SHOPPING, {"MLON": 2}, total=27800)
    assert c.view() == (SHOPPING, 1, 2, 27800, None) and c.confirmed
    c.item("APPL")
    assert c.view() == (SHOPPING, 1, 3, None, None) and not c.confirmed
    c.command(total(27800, protocol.cart_digest({"MLON": 2})))  # the old cart's: stale
    assert c.view() == (SHOPPING, 1, 3, None, None)
    c.command(total(28700, protocol.cart_digest({"APPL": 1, "MLON": 2})))
    assert c.view() == (SHOPPING, 1, 3, 28700, None)
    c.item("-NONE")  # no change: the total stays
    assert c.view() == (SHOPPING, 1, 3, 28700, None)
    c.item("-APPL")
    assert c.view() == (SHOPPING, 1, 2, None, None)
    c.command(TOTAL_1)  # no `cart`: shown, and it counts as confirmation
    assert c.view() == (SHOPPING, 1, 2, 13900, None) and c.confirmed
    c.command(b"end")
    assert c.view() == (IDLE, 1, 0, None, None)


def test_digest_is_computed_lazily_once_per_cart():
    calls = []
    real = protocol.cart_digest

    def counting(items):
        calls.append(1)
        return real(items)

    protocol.cart_digest = counting
    try:
        c = Controller(1)
        c.command(b"start")
        for _ in range(50):
            c.item("MLON")
        assert calls == []  # items alone never hash
        for _ in range(3):
            c.command(total(5, "00"))
        assert len(calls) == 1
        c.item("APPL")
        c.command(total(5, "00"))
        assert len(calls) == 2
    finally:
        protocol.cart_digest = real


def test_item_updates_are_paced_commands_and_resync_are_not():
    c = Controller(1)
    assert c.pending_update() == NONE
    c.command(b"start")
    assert c.pending_update() == NOW
    c.take_update()
    c.item("MLON")
    assert c.pending_update() == PACED
    c.resync()
    assert c.pending_update() == NOW
    c.take_update()
    c.item("MLON")
    c.command(b"start")  # a command in the same turn: the whole update goes at once
    assert c.pending_update() == NOW
    assert c.take_update() == b'{"id":1,"list":{"MLON":2}}'
    assert c.pending_update() == NONE


def test_bad_input_is_counted_and_changes_nothing():
    c = Controller(1, SHOPPING, {"MLON": 2}, total=500)
    c.take_update()
    before = c.snapshot()
    bad = [b"", b"hello", b"{", b'{"msg":"total","payload":{"basketid":2,"totalprice":1}}',
           b'{"msg":"total","payload":{"basketid":1,"totalprice":-1}}', b"\xff" * 10,
           b"x" * 5000]
    for p in bad:
        assert c.command(p) is None
    for line in ("MLON=1000", "MLON=-2", "bad code", "X" * 40):
        assert c.item(line) is False
    c.reject_command("oversized packet skipped")
    assert c.snapshot() == before
    assert c.take_update() is None
    assert c.counters["rejected_commands"] == len(bad) + 1
    assert c.counters["rejected_items"] == 4


def test_restored_state_is_validated():
    c = Controller(1, SHOPPING, {"MLON": 2}, total=100)
    assert c.view() == (SHOPPING, 1, 2, 100, None)
    c = Controller(1, "bogus", {"MLON": 2}, total=-3)
    assert c.view() == (IDLE, 1, 0, None, None)
    c = Controller(1, IDLE, None, total=500)  # idle: a saved total is not shown
    assert c.view() == (IDLE, 1, 0, None, None)


def test_resync_publishes_current_cart_again():
    c = Controller(1, SHOPPING, {"MLON": 1})
    c.resync()
    assert c.take_update() == b'{"id":1,"list":{"MLON":1}}'


def test_notes_are_bounded():
    c = Controller(1)
    for _ in range(100):
        c.command(b"junk")
    assert len(c.take_notes()) <= 32
    assert c.counters["rejected_commands"] == 100


def pin(body, basket=3):
    return ('{"msg":"pin","payload":{"basketid":%d,%s}}' % (basket, body)).encode()


def test_pin_is_an_idle_notice_never_persisted_nor_published():
    c = Controller(3)
    assert c.command(pin('"pin":"482913"')) == "pin"
    assert c.view() == (IDLE, 3, 0, None, "ready | PIN 482913")
    assert c.take_dirty() is None and c.take_update() is None
    assert c.command(pin('"pin":"482913","thanks":true')) == "pin"
    assert c.view() == (IDLE, 3, 0, None, "thank you | PIN 482913")
    c.command(pin('"locked_until":"08:05","thanks":true'))
    assert c.view()[4] == "thank you | locked until 08:05"
    c.command(pin('"locked_until":"08:05"'))
    assert c.view()[4] == "ready | locked until 08:05"
    c.command(pin('"pin":"1234","thanks":false'))  # the same PIN without thanks: ready again
    assert c.view()[4] == "ready | PIN 1234"
    assert c.take_dirty() is None and c.take_update() is None
    assert c.snapshot() == {"state": IDLE, "list": {}, "total": None}
    assert c.counters["commands"] == 5 and c.counters["rejected_commands"] == 0


def test_start_and_end_clear_the_pin_and_pin_while_shopping_is_ignored():
    c = Controller(3)
    c.command(pin('"pin":"482913"'))
    c.command(b"start")
    assert c.view() == (SHOPPING, 3, 0, None, None)
    c.take_notes()
    assert c.command(pin('"pin":"111111"')) == "pin"  # a command, not a rejection
    assert c.view() == (SHOPPING, 3, 0, None, None)
    assert c.counters["rejected_commands"] == 0
    notes = c.take_notes()
    assert notes and notes[0][0] == "info" and "ignored" in notes[0][1], notes
    c.command(b"end")
    assert c.view() == (IDLE, 3, 0, None, None)  # the PIN before the session is gone
    assert c.take_dirty() == {"state": IDLE, "list": {}, "total": None}
    c.command(pin('"pin":"222222"'))
    c.command(b"end")  # the service drew a new PIN: the one shown is cleared
    assert c.view() == (IDLE, 3, 0, None, None)


def test_bad_pin_commands_are_rejected_and_change_nothing():
    c = Controller(3)
    c.command(pin('"pin":"482913"'))
    for bad in (pin('"pin":"482913"', basket=4), pin('"pin":"12"'), pin('"locked_until":""'),
                pin('"pin":"1234","locked_until":"08:05"'), pin('"pin":"1234","thanks":1')):
        assert c.command(bad) is None
    assert c.view() == (IDLE, 3, 0, None, "ready | PIN 482913")
    assert c.counters["rejected_commands"] == 5
    notes = c.take_notes()
    assert notes[-1][0] == "warning" and "(#5)" in notes[-1][1], notes


def unknown_total(price, unknown, cart=None):
    extra = ',"cart":"%s"' % cart if cart is not None else ""
    return ('{"msg":"total","payload":{"basketid":1,"totalprice":%d%s,"unknown":%d}}'
            % (price, extra, unknown)).encode()


def test_unknown_lines_ask_staff_until_the_cart_changes():
    c = Controller(1)
    c.command(unknown_total(5000, 1))  # idle: not shown, no notice
    assert c.view() == (IDLE, 1, 0, None, None)
    c.command(b"start")
    c.item("APPL")
    c.item("XXXX")
    c.command(unknown_total(5000, 1, protocol.cart_digest({"APPL": 1})))  # stale: nothing
    assert c.view() == (SHOPPING, 1, 2, None, None)
    c.command(unknown_total(5000, 1, protocol.cart_digest({"APPL": 1, "XXXX": 1})))
    assert c.view() == (SHOPPING, 1, 2, 5000, "ask staff")
    assert c.take_dirty() == {"state": SHOPPING, "list": {"APPL": 1, "XXXX": 1}, "total": 5000}
    c.item("-XXXX")  # a cart change hides it with the total
    assert c.view() == (SHOPPING, 1, 1, None, None)
    c.command(unknown_total(5000, 0))
    assert c.view() == (SHOPPING, 1, 1, 5000, None)
    c.command(unknown_total(5000, 2))  # the same price, now with unknown lines
    assert c.view() == (SHOPPING, 1, 1, 5000, "ask staff")
    c.command(TOTAL_1)  # no `unknown` (the original backend): none
    assert c.view() == (SHOPPING, 1, 1, 13900, None)
    c.command(unknown_total(5000, 1))
    c.command(b"end")
    assert c.view() == (IDLE, 1, 0, None, None)
