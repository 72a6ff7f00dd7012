from mqtt_controller.controller import IDLE, SHOPPING, Controller

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
    assert c.view() == (IDLE, 1, 0, None)
    c.command(b"end")  # ignored while idle
    assert c.take_update() is None
    assert c.state == IDLE


def test_total_is_remembered_in_both_states():
    c = Controller(1)
    c.command(TOTAL_1)
    assert c.total == 13900 and c.state == IDLE
    c.command(b"start")
    c.item("MLON")
    c.command(TOTAL_1)
    assert c.view() == (SHOPPING, 1, 1, 13900)
    notes = [t for _, t in c.take_notes()]
    assert any("13,900" in t for t in notes), notes


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
    assert c.view() == (SHOPPING, 1, 2, 100)
    c = Controller(1, "bogus", {"MLON": 2}, total=-3)
    assert c.view() == (IDLE, 1, 0, None)


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
