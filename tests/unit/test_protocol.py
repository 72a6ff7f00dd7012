from _util import raises

from mqtt_controller import protocol
from mqtt_controller.protocol import END, PIN, START, TOTAL, Rejected, parse_command


def test_plain_commands_with_white_space():
    assert parse_command(b"start", 1) == (START, None)
    assert parse_command(b"  end\n", 1) == (END, None)
    assert parse_command(b"\tSTART \r\n", 1) == (START, None)


def test_json_commands():
    assert parse_command(b'{"msg":"start"}', 1) == (START, None)
    assert parse_command(b'{"msg": "end"}', 1) == (END, None)
    assert parse_command(b' {"MSG":"End"} ', 1) == (END, None)


def test_total_in_documented_and_spring_forms():
    doc = b'{"msg":"total","payload":{"basketid":1,"totalprice":13900}}'
    spring = b'{"msg":"total","payload":{"basketId":1,"totalPrice":15000}}'
    assert parse_command(doc, 1) == (TOTAL, (13900, None, 0))
    assert parse_command(spring, 1) == (TOTAL, (15000, None, 0))
    assert parse_command(b'{"Msg":"TOTAL","Payload":{"BASKETID":7,"TOTALPRICE":0}}', 7) == (
        TOTAL, (0, None, 0))


def test_total_names_the_cart_it_priced():
    t = b'{"msg":"total","payload":{"basketid":1,"totalprice":500,"cart":"%s"}}'
    digest = "babb60748de7c28f8779ca339e428c99"
    assert parse_command(t % digest.encode(), 1) == (TOTAL, (500, digest, 0))
    assert parse_command(b'{"msg":"total","payload":{"basketid":1,"totalprice":5,"CART":"ab"}}',
                         1) == (TOTAL, (5, "ab", 0))
    for bad in (b'1', b'null', b'["x"]', b'"' + b"a" * 65 + b'"'):
        e = raises(Rejected, parse_command,
                   b'{"msg":"total","payload":{"basketid":1,"totalprice":5,"cart":%s}}' % bad, 1)
        assert "cart" in str(e), (bad, str(e))


def test_cart_digest_is_the_contract_one():
    # sha256(b'{"APPL":1,"MLON":2}') and sha256(b'{}'), first 32 hex characters: the same bytes
    # basket_service.contract.cart_digest(encode_cart(items)) gives, on both interpreters.
    assert protocol.encode_list({"MLON": 2, "APPL": 1}) == b'{"APPL":1,"MLON":2}'
    assert protocol.encode_list({}) == b"{}"
    assert protocol.cart_digest({"MLON": 2, "APPL": 1}) == "babb60748de7c28f8779ca339e428c99"
    assert protocol.cart_digest({}) == "44136fa355b3678a1146ad16f7e8649e"


def test_rejections_say_why():
    cases = [
        (b'{"msg":"total","payload":{"basketid":2,"totalprice":100}}', "basket 2"),
        (b'{"msg":"total","payload":{"basketid":1,"totalprice":-5}}', "negative"),
        (b'{"msg":"total","payload":{"basketid":1,"totalprice":1.5}}', "non-integer"),
        (b'{"msg":"total","payload":{"basketid":1,"totalprice":"100"}}', "non-integer"),
        (b'{"msg":"total","payload":{"basketid":1,"totalprice":true}}', "non-integer"),
        (b'{"msg":"total","payload":{"basketid":"1","totalprice":100}}', "basketid"),
        (b'{"msg":"total"}', "payload"),
        (b'{"msg":"total","payload":[1,2]}', "payload"),
        (b'{"msg":"refund"}', "unknown msg"),
        (b'{"nomsg":1}', "msg"),
        (b'[1,2,3]', "unknown command"),
        (b'{"msg":', "bad JSON"),
        (b"hello", "unknown command"),
        (b"", "unknown command"),
        (b"\xff\xfe", "UTF-8"),
        (b"start" + b" " * 600, "oversized"),
    ]
    for payload, why in cases:
        e = raises(Rejected, parse_command, payload, 1)
        assert why in str(e), (payload, str(e))


def test_deeply_nested_json_is_rejected_not_raised():
    raises(Rejected, parse_command, b"{" * 200 + b"}" * 200, 1)
    raises(Rejected, parse_command, b'{"msg":' + b"[" * 240 + b"]" * 240 + b"}", 1)


def test_update_payload_is_compact_and_sorted():
    items = {"WTMN": 1, "APPL": 3, "MLON": 2, "AVCD": 10}
    assert protocol.encode_update(1, items) == (
        b'{"id":1,"list":{"APPL":3,"AVCD":10,"MLON":2,"WTMN":1}}')
    assert protocol.encode_update(12, {}) == b'{"id":12,"list":{}}'


def test_basket_id_from_topic():
    assert protocol.basket_id_from_topic("basket/1") == 1
    assert protocol.basket_id_from_topic("basket/unit0001") == 1
    assert protocol.basket_id_from_topic("shop3/basket/42") == 42
    assert protocol.basket_id_from_topic("basket/x") is None
    assert protocol.basket_id_from_topic("") is None


def test_codes_and_topics():
    assert protocol.valid_code("MLON") and protocol.valid_code("a-b_c.9")
    assert protocol.valid_code("X" * 32)
    for bad in ("", "X" * 33, "ML ON", "참외", "A/B", "A+B", None, 5):
        assert not protocol.valid_code(bad), bad
    assert protocol.valid_topic("basket/1")
    for bad in ("", "basket/+", "basket/#", "/basket/1", "basket/1/"):
        assert not protocol.valid_topic(bad), bad


def pin_cmd(body):
    return b'{"msg":"pin","payload":{' + body + b"}}"


def test_pin_command_forms():
    assert parse_command(pin_cmd(b'"basketid":3,"pin":"482913"'), 3) == (
        PIN, ("482913", None, False))
    assert parse_command(pin_cmd(b'"basketid":3,"locked_until":"08:05"'), 3) == (
        PIN, (None, "08:05", False))
    assert parse_command(pin_cmd(b'"basketid":3,"pin":"1234","thanks":true'), 3) == (
        PIN, ("1234", None, True))
    assert parse_command(pin_cmd(b'"basketid":3,"locked_until":"~ !","thanks":false'), 3) == (
        PIN, (None, "~ !", False))
    assert parse_command(b'{"MSG":"Pin","PAYLOAD":{"BasketId":3,"PIN":"12345678",'
                         b'"Thanks":true}}', 3) == (PIN, ("12345678", None, True))
    assert parse_command(pin_cmd(b'"basketid":3,"locked_until":"' + b"x" * 16 + b'"'), 3) == (
        PIN, (None, "x" * 16, False))


def test_bad_pin_commands_are_rejected():
    cases = [
        (b'"basketid":4,"pin":"482913"', "basket 4"),
        (b'"basketid":"3","pin":"482913"', "basketid"),
        (b'"basketid":3.0,"pin":"482913"', "basketid"),
        (b'"pin":"482913"', "basketid"),
        (b'"basketid":3', "exactly one"),
        (b'"basketid":3,"pin":"482913","locked_until":"08:05"', "exactly one"),
        (b'"basketid":3,"pin":"123"', "digits"),
        (b'"basketid":3,"pin":"123456789"', "digits"),
        (b'"basketid":3,"pin":482913', "digits"),
        (b'"basketid":3,"pin":"12a4"', "digits"),
        (b'"basketid":3,"pin":"\\u0663\\u0663\\u0663\\u0663"', "digits"),  # Arabic-Indic 3s
        (b'"basketid":3,"pin":null', "digits"),
        (b'"basketid":3,"locked_until":""', "locked_until"),
        (b'"basketid":3,"locked_until":"' + b"x" * 17 + b'"', "locked_until"),
        (b'"basketid":3,"locked_until":"08:05\\n"', "locked_until"),
        (b'"basketid":3,"locked_until":"\\u00e908:05"', "locked_until"),
        (b'"basketid":3,"locked_until":805', "locked_until"),
        (b'"basketid":3,"pin":"482913","thanks":1', "thanks"),
        (b'"basketid":3,"pin":"482913","thanks":"true"', "thanks"),
        (b'"basketid":3,"pin":"482913","thanks":null', "thanks"),
    ]
    for body, why in cases:
        e = raises(Rejected, parse_command, pin_cmd(body), 3)
        assert why in str(e), (body, str(e))
    e = raises(Rejected, parse_command, b'{"msg":"pin"}', 3)
    assert "payload" in str(e), str(e)
    e = raises(Rejected, parse_command, pin_cmd(b'"basketid":3,"pin":"482913","x":"' + b"y" * 500
                                                + b'"'), 3)
    assert "oversized" in str(e), str(e)


def test_total_unknown_lines():
    t = b'{"msg":"total","payload":{"basketid":1,"totalprice":5000,"cart":"ab","unknown":%s}}'
    assert parse_command(t % b"1", 1) == (TOTAL, (5000, "ab", 1))
    assert parse_command(t % b"0", 1) == (TOTAL, (5000, "ab", 0))
    assert parse_command(b'{"msg":"total","payload":{"basketid":1,"totalprice":5,"UNKNOWN":2}}',
                         1) == (TOTAL, (5, None, 2))
    for bad in (b"-1", b"1.0", b'"1"', b"true", b"null", b"[1]"):
        e = raises(Rejected, parse_command, t % bad, 1)
        assert "unknown" in str(e), (bad, str(e))
