"""The full loop on both databases: start from the command line -> basket updates -> totals
at the basket -> checkout writes a receipt and ends the session."""

from __future__ import annotations

import json

from tests.support.fake_basket import total_message
from tests.support.service_proc import cli, service_env

# Its own catalogue: discounts (the discount rounds down, so the price up), Korean names, an
# extra column, no stock column (every product starts at 0, so checkout makes it negative).
CATALOG = """code,name,name_en,price,discount_percent
MLON,성주 참외 3~8입 봉,Korean melons,13900,0
APPL,사과 1.5kg,Apples,26900,15
TMAT,토마토,Tomatoes,6980,33
"""
MLON, APPL, TMAT = 13900, 26900 - 26900 * 15 // 100, 6980 - 6980 * 33 // 100  # 22865, 4677


def test_service_full_loop(broker, any_db, baskets, services, tmp_path):
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(CATALOG, encoding="utf-8")
    env = service_env(broker.port, any_db)
    svc = services(env, catalog=catalog).start()
    b1 = baskets(1)
    b1.online()
    svc.wait_line(r"basket 1 is online")

    r = cli(env, "start", "1")
    assert r.returncode == 0, r.stderr
    assert "session" in r.stdout
    b1.wait_status(b"start")

    # A second start on a basket in use is refused.
    r = cli(env, "start", "1")
    assert r.returncode == 1 and "in use" in r.stderr, (r.returncode, r.stderr)

    m = b1.mark()
    b1.send({})
    b1.wait_total(0, start=m)
    first, second = "MLON", "APPL"
    b1.send({first: 2})
    b1.wait_total(2 * MLON)
    cart = {first: 2, second: 3, "TMAT": 1, "NOPE9": 1}
    expected = 2 * MLON + 3 * APPL + TMAT
    b1.send(cart)
    b1.wait_total(expected)
    svc.wait_line(r"unknown product code\(s\) NOPE9 priced 0")

    carts = [json.loads(x) for x in cli(env, "carts", "--json").stdout.splitlines()]
    assert carts == [{"basket": 1, "in_use": True, "session": carts[0]["session"],
                      "online": True, "cart": dict(sorted(cart.items())), "total": expected,
                      "updated_at": carts[0]["updated_at"]}]

    m = b1.mark()
    r = cli(env, "checkout", "1")
    assert r.returncode == 0, r.stderr
    assert "total %d won" % expected in r.stdout
    b1.wait_status(b"end", start=m)

    receipts = [json.loads(x) for x in cli(env, "receipts", "--json").stdout.splitlines()]
    assert len(receipts) == 1
    rec = receipts[0]
    assert rec["basket"] == 1 and rec["total"] == expected and rec["unknown"] == ["NOPE9"]
    lines = {ln["code"]: ln for ln in rec["lines"]}
    assert lines[second]["unit_price"] == APPL and lines[second]["count"] == 3
    assert lines["TMAT"]["unit_price"] == 4677 and lines["MLON"]["name"] == "성주 참외 3~8입 봉"
    assert lines["NOPE9"] == {"code": "NOPE9", "name": "", "count": 1, "unit_price": 0,
                              "amount": 0, "known": False}
    assert sum(ln["amount"] for ln in rec["lines"]) == expected
    assert rec["payment_id"] is None and len(rec["key"]) == 22  # a staff checkout, its link key
    # The checkout moved stock and sales (from 0: sold while out of stock, so negative).
    r = cli(env, "stock", "--below", "0", "--json")
    assert r.returncode == 0, r.stderr
    assert [(x["code"], x["stock"], x["sales"]) for x in map(json.loads, r.stdout.splitlines())
            ] == [("APPL", -3, 3), ("MLON", -2, 2), ("TMAT", -1, 1)]

    # Freed: checkout again is refused, a new session can start.
    r = cli(env, "checkout", "1")
    assert r.returncode == 1 and "not in use" in r.stderr
    assert cli(env, "start", "1").returncode == 0
    r = cli(env, "end", "1")
    assert r.returncode == 0 and "cancelled" in r.stdout

    hist = [json.loads(x) for x in cli(env, "history", "1", "--json").stdout.splitlines()]
    assert [h["total"] for h in hist] == [0, 2 * MLON, expected]
    # Every total arrived exactly once, in order.
    assert b1.totals() == [0, 2 * MLON, expected]
    assert b1.statuses().count(total_message(1, expected, cart, unknown=1)) == 1  # NOPE9
    assert svc.stop() == 0  # SIGTERM: a clean stop
    assert svc.count("Traceback") == 0
    assert "service-pw" not in svc.output()  # MQTT_PASSWORD is never logged
