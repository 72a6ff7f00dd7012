"""Checkout bills exactly the cart the basket holds: it is confirmed against the broker's
retained `basket/<n>/update` (sessions.confirm_cart, pure) and refused, changing nothing, when
the database has not priced that cart yet, when there is no cart at the broker, or when the
basket is offline. The integration test stops the service while the basket publishes a newer
cart (the broker holds it, the database does not): checkout refuses; once the service is back
and has priced it, checkout bills it."""

from __future__ import annotations

import json

import pytest

from basket_service import contract, sessions, store
from tests.support.service_proc import cli, service_env


def upd(basket: int, cart: dict[str, int]) -> bytes:
    return json.dumps({"id": basket, "list": cart}, separators=(",", ":")).encode()


def digest(cart: dict[str, int]) -> str:
    return contract.cart_digest(contract.encode_cart(cart))


HELD = store.Held(True, 7, digest({"MLON": 2}), True)


def test_confirm_cart_accepts_the_priced_cart():
    assert sessions.confirm_cart(3, HELD, upd(3, {"MLON": 2}), b"online") == HELD.digest
    # Other key order, same cart; availability never reported: fine.
    assert sessions.confirm_cart(3, store.Held(True, 7, HELD.digest, None),
                                 b'{"list":{"MLON":2},"id":3}', None) == HELD.digest
    # The broker says online (the database has not seen it yet): fine.
    assert sessions.confirm_cart(3, store.Held(True, 7, HELD.digest, False),
                                 upd(3, {"MLON": 2}), b"online") == HELD.digest


@pytest.mark.parametrize("held,update,avail,why", [
    (HELD, upd(3, {"MLON": 2, "APPL": 3}), b"online",
     "the basket's latest cart (5 items) is not priced yet; try again in a moment"),
    (HELD, upd(3, {"MLON": 1}), b"online",
     "the basket's latest cart (1 item) is not priced yet; try again in a moment"),
    (store.Held(True, 7, None, True), upd(3, {}), b"online",
     "the basket's latest cart (0 items) is not priced yet"),
    (HELD, None, b"online", "no cart at the broker"),
    (HELD, b"", b"online", "no cart at the broker"),
    (HELD, upd(3, {"MLON": 2}), b"offline", "the basket is offline"),
    (store.Held(True, 7, HELD.digest, False), upd(3, {"MLON": 2}), None, "the basket is offline"),
    (HELD, b"{not json", b"online", "the broker's cart is not valid (bad_json)"),
    (HELD, upd(4, {"MLON": 2}), b"online", "the broker's cart is not valid (id_mismatch)"),
])
def test_confirm_cart_refuses(held, update, avail, why):
    with pytest.raises(sessions.Unconfirmed) as e:
        sessions.confirm_cart(3, held, update, avail)
    assert str(e.value).startswith("basket 3: cannot confirm the cart: " + why), str(e.value)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, store.SessionError)  # the dashboard answers 409


def receipts(env):
    return [json.loads(x) for x in cli(env, "receipts", "--json").stdout.splitlines()]


def in_use(env, n):
    rows = [json.loads(x) for x in cli(env, "carts", "--json").stdout.splitlines()]
    return {r["basket"]: r["in_use"] for r in rows}[n]


def refused(env, n, why):
    r = cli(env, "checkout", str(n))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    line = "error: basket %d: cannot confirm the cart: %s" % (n, why)
    assert r.stderr.strip().splitlines() == [line], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert receipts(env) == [] and in_use(env, n)  # nothing changed


def test_checkout_refuses_a_cart_the_service_has_not_priced(broker, any_db, baskets, services):
    env = service_env(broker.port, any_db, BASKETS="1-4")
    svc = services(env).start()
    b3 = baskets(3)
    b3.online()
    assert cli(env, "start", "3").returncode == 0
    b3.wait_status(b"start")
    b3.send({"MLON": 1})
    b3.wait_total(13900, cart={"MLON": 1})
    svc.stop()
    # The basket goes on while the service is down: the broker holds the newer cart.
    newer = {"MLON": 2, "APPL": 3}
    b3.send(newer)
    refused(env, 3, "the basket's latest cart (5 items) is not priced yet; try again in a moment")
    # Back up: it prices the queued cart, and checkout bills exactly that.
    m = b3.mark()
    svc.start()
    b3.wait_total(2 * 13900 + 3 * 26900, cart=newer, start=m)
    r = cli(env, "checkout", "3")
    assert r.returncode == 0, r.stderr
    assert "total %d won" % (2 * 13900 + 3 * 26900) in r.stdout
    rec = receipts(env)
    assert [(x["basket"], x["total"]) for x in rec] == [(3, 2 * 13900 + 3 * 26900)]
    assert {ln["code"]: ln["count"] for ln in rec[0]["lines"]} == newer
    assert svc.count("Traceback") == 0


def test_checkout_refuses_offline_or_without_a_cart(broker, sqlite_db, baskets, services):
    env = service_env(broker.port, sqlite_db, BASKETS="1-4")
    svc = services(env).start()
    b2 = baskets(2)
    b2.online()
    assert cli(env, "start", "2").returncode == 0
    b2.send({"TMAT": 1})
    b2.wait_total(6980)
    b2.offline()
    svc.wait_line(r"basket 2 is offline")
    refused(env, 2, "the basket is offline")
    b2.online()
    b2.peer.publish("basket/2/update", b"", retain=True)  # the retained cart is cleared
    svc.wait_line(r"rejected basket/2/update")
    refused(env, 2, "no cart at the broker")
    b2.send({"TMAT": 1})
    r = cli(env, "checkout", "2")
    assert r.returncode == 0 and "total 6980 won" in r.stdout, r.stderr
