"""Restart safety: a service killed mid-session loses no accepted update, and carts published
while it was down (retained) are priced when it comes back."""

from __future__ import annotations

import json

from tests.support.service_proc import cli, service_env


def history(env):
    return [json.loads(x) for x in cli(env, "history", "--json").stdout.splitlines()]


def test_service_restart_mid_session(broker, any_db, baskets, services):
    env = service_env(broker.port, any_db, BASKETS="1-2")  # `start 1` before it is seen
    svc = services(env).start()
    b1 = baskets(1)
    b2 = baskets(2)
    assert cli(env, "start", "1").returncode == 0
    b1.wait_status(b"start")
    b1.send({"MLON": 1})
    b1.wait_total(13900)
    # Killed once that update is done (acknowledged): a kill inside the few milliseconds
    # between the broker's PUBACK for the total and the database noting it would send that
    # total again after the restart (at least once for totals; see docs/service.md).
    svc.wait_line(r"basket 1: new cart \{\"MLON\":1\} -> total 13900$")
    svc.kill()  # no clean shutdown
    b1.send({"MLON": 2})  # retained, and queued in the service's persistent session
    b2.send({"TMAT": 3})  # a basket the service has never heard of
    m1, m2 = b1.mark(), b2.mark()

    svc2 = services(env).start()
    b1.wait_total(27800, start=m1)
    b2.wait_total(3 * 6980, start=m2)
    # Everything settles: the retained copies of the same carts add nothing.
    b1.send({"MLON": 3})
    b1.wait_total(41700)

    carts = {c["basket"]: c for c in
             (json.loads(x) for x in cli(env, "carts", "--json").stdout.splitlines())}
    assert carts[1]["cart"] == {"MLON": 3} and carts[1]["in_use"] is True
    assert carts[2]["cart"] == {"TMAT": 3} and carts[2]["in_use"] is False
    # Per basket, the history keeps the order of its updates; between baskets MQTT orders
    # nothing (after the restart the broker's queued and retained copies of basket 1's and
    # basket 2's carts may arrive either way round).
    rows = [(h["basket"], h["cart"]) for h in history(env)]
    assert [c for b, c in rows if b == 1] == [{"MLON": 1}, {"MLON": 2}, {"MLON": 3}], rows
    assert [c for b, c in rows if b == 2] == [{"TMAT": 3}], rows
    assert b1.totals() == [13900, 27800, 41700]
    assert b2.totals() == [3 * 6980]
    assert svc2.count("Traceback") == 0


def test_service_prices_retained_carts_on_first_start(broker, sqlite_db, baskets, services):
    """A fresh service (no MQTT session yet) still prices what the baskets left retained."""
    env = service_env(broker.port, sqlite_db)
    b1 = baskets(1)
    b1.send({"BLUE": 2})
    b1.online()
    svc = services(env).start()
    b1.wait_total(2 * 14980)
    svc.wait_line(r"basket 1 is online")
    assert [h["cart"] for h in history(env)] == [{"BLUE": 2}]
