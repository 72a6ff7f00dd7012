from _util import raises

from mqtt_controller.cart import ADD, MAX_CODES, REMOVE, SET, Cart, CartError, parse_item_line


def test_line_protocol():
    assert parse_item_line("MLON") == (ADD, "MLON", 1)
    assert parse_item_line(" -MLON\n") == (REMOVE, "MLON", 1)
    assert parse_item_line("MLON=3") == (SET, "MLON", 3)
    assert parse_item_line("MLON=0") == (SET, "MLON", 0)
    assert parse_item_line("MLON=999") == (SET, "MLON", 999)
    assert parse_item_line(b"BLUE\r") == (ADD, "BLUE", 1)
    assert parse_item_line("   ") is None


def test_bad_lines_reject_never_clamp():
    for bad in ("MLON=1000", "MLON=-1", "MLON=abc", "MLON=", "MLON=1.5", "MLON=+3", "MLON=1e3",
                "MLON= 3x", "=3", "-", "--MLON", "-MLON=2", "ML ON", "X" * 33, "MLON=3=4",
                b"\xff\xfe", "A" * 100):
        raises(CartError, parse_item_line, bad)


def test_cart_counts_and_bounds():
    c = Cart()
    assert c.apply(ADD, "MLON") is True
    assert c.apply(ADD, "MLON") is True
    assert c.apply(REMOVE, "BLUE") is False  # never below zero
    assert c.apply(SET, "BLUE", 0) is False
    assert c.apply(SET, "BLUE", 5) is True
    assert c.apply(SET, "BLUE", 5) is False
    assert c.items == {"MLON": 2, "BLUE": 5}
    assert c.count() == 7
    assert c.apply(REMOVE, "MLON") and c.apply(REMOVE, "MLON")
    assert c.items == {"BLUE": 5}
    c.apply(SET, "BLUE", 999)
    e = raises(CartError, c.apply, ADD, "BLUE")
    assert "999" in str(e)
    assert c.items == {"BLUE": 999}


def test_cart_holds_at_most_64_codes():
    c = Cart()
    for i in range(MAX_CODES):
        c.apply(ADD, "C%d" % i)
    raises(CartError, c.apply, ADD, "ONEMORE")
    assert len(c.items) == MAX_CODES and "ONEMORE" not in c.items
    assert c.apply(ADD, "C0") is True  # an existing code still counts up


def test_replace_validates_everything_or_nothing():
    c = Cart({"MLON": 2})
    for bad in ({"MLON": -1}, {"ML ON": 1}, {"MLON": 1000}, {"MLON": True}, [1], {"A": "2"}):
        raises(CartError, c.replace, bad)
        assert c.items == {"MLON": 2}
    c.replace({"A": 1, "B": 0})
    assert c.items == {"A": 1}
