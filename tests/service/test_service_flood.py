"""One basket flooding the broker (thousands of updates a second) against the provisioned
broker (tools/provision.py) and `basket_service serve`: the other baskets' updates are all
answered; the flooder gets at most its rate limit of totals and ends priced at its
last cart; nothing is dropped by the broker. And convergence: a service killed (-9) while
baskets update fast ends, after its restart, with every basket's last cart stored and its
total (naming that cart) the last one the basket saw; an update lost for good in the database
is found by the periodic reconciliation against the broker's retained carts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from basket_service.service import TOTALS_BURST, TOTALS_PER_S
from tests.support.broker import Broker
from tests.support.flood import Basket, RawBasket, cart_digest, drain, flood, flood_raw, steady
from tests.support.service_proc import cli, service_env

FLOOD_RATE = 5000.0
FLOOD_S = 3.0


@pytest.fixture
def prov() -> Iterator[Broker]:
    p = Broker.provisioned("--baskets", "1-4", "--run-as-user", "root", tls=False).start()
    yield p
    p.close()


def env_for(prov: Broker, db: dict[str, str], **extra: str) -> dict[str, str]:
    s = prov.env_file()
    return service_env(prov.port, db, MQTT_USER=s["MQTT_USER"], MQTT_PASSWORD=s["MQTT_PASSWORD"],
                       SERVICE_CLIENT_ID=s["SERVICE_CLIENT_ID"], BASKETS="1-4", **extra)


def test_a_flooding_basket_delays_and_loses_no_other_basket(prov, sqlite_db, services):
    env = env_for(prov, sqlite_db)
    svc = services(env).start()
    flooder = RawBasket(prov.port, 1, prov.password(1))  # cheap: paho would take a core
    others = [Basket(prov.port, n, prov.password(n)) for n in (2, 3, 4)]
    try:
        t = threading.Thread(target=flood_raw, args=(flooder, FLOOD_RATE, FLOOD_S))
        t0 = time.monotonic()
        t.start()
        paced = [threading.Thread(target=steady, args=(b, 0.1, FLOOD_S, 10 * b.n))
                 for b in others]
        for p in paced:
            p.start()
        for p in paced:
            p.join()
        t.join()
        flood_s = time.monotonic() - t0
        sent = len(flooder.sent)
        drain(flooder, 10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(b.unanswered() for b in others):
            time.sleep(0.05)
        lat = sorted(x for b in others for x in b.latencies_ms())
        unanswered = sum(b.unanswered() for b in others)
        assert unanswered == 0, "%d updates of the other baskets never answered" % unanswered
        # How quickly they were answered is bench/bench_flood.py's figure, not a test's.
        assert len(lat) == sum(len(b.sent) for b in others), len(lat)
        # The flooder: its newest cart is priced, but at most its rate limit of totals.
        assert sent >= 1000, sent  # it did flood
        assert flooder.answered_last()
        within = [x for x in flooder.totals if x[0] <= t0 + flood_s]
        assert len(within) <= TOTALS_PER_S * flood_s + TOTALS_BURST + 2, len(within)
        assert flooder.last_total() is not None and flooder.last_total()[0] == flooder.last
        svc.wait_line(r"update\(s\) superseded", timeout=15)
        stats = dict(ln.split() for ln in cli(env, "stats").stdout.splitlines())
        assert int(stats["superseded"]) > sent * 0.9, (stats, sent)
    finally:
        for b in [flooder, *others]:
            b.close()
    assert "dropped" not in prov.log(), prov.log()[-2000:]
    assert svc.count("Traceback") == 0


def carts(env: dict[str, str]) -> dict[int, dict[str, int]]:
    return {c["basket"]: c["cart"] for c in
            (json.loads(x) for x in cli(env, "carts", "--json").stdout.splitlines())}


def test_killed_service_converges_on_every_basket_last_cart(prov, any_db, services):
    env = env_for(prov, any_db)
    svc = services(env).start()
    baskets = [Basket(prov.port, n, prov.password(n)) for n in (1, 2, 3)]
    try:
        runs = [threading.Thread(target=flood, args=(b, 100.0, 2.0)) for b in baskets]
        for r in runs:
            r.start()
        time.sleep(0.7)
        svc.kill()  # -9, mid-stream: updates queue at the broker (max_queued_messages 100)
        for r in runs:
            r.join()
        time.sleep(0.3)
        svc.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(b.answered_last() for b in baskets):
            time.sleep(0.05)
        for b in baskets:
            assert b.answered_last(), "basket %d: no total for its last cart" % b.n
            assert b.last_total() is not None and b.last_total()[0] == b.last, b.n
        stored = carts(env)
        for b in baskets:
            assert cart_digest(stored[b.n]) == b.last, (b.n, stored[b.n])
    finally:
        for b in baskets:
            b.close()
    assert svc.count("Traceback") == 0


def test_reconcile_prices_a_cart_the_database_never_got(prov, sqlite_db, services):
    """The broker dropped an update for the service (it says so only in its own log): here
    the database is put back to an older cart behind the service's back, as if the newest
    update had never arrived. Within RECONCILE_S the service reads the retained carts, finds
    the difference, applies the basket's cart (via reconcile) and sends its total."""
    import sqlite3

    env = env_for(prov, sqlite_db, RECONCILE_S="1")
    svc = services(env).start()
    b = Basket(prov.port, 2, prov.password(2))
    try:
        old = b.publish({"MLON": 1})
        svc.wait_line(r"basket 2: new cart \{\"MLON\":1\}")
        new = b.publish({"MLON": 3})
        svc.wait_line(r"basket 2: new cart \{\"MLON\":3\}")
        assert b.last_total() == (new, 3 * 13900)
        with sqlite3.connect(sqlite_db["BASKET_DB"]) as c:
            c.execute("UPDATE baskets SET cart = ?, cart_digest = ?, total = ? WHERE id = 2",
                      ('{"MLON":1}', old, 13900))
        n = len(b.totals)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(b.totals) == n:
            time.sleep(0.05)
        assert b.totals[n:] and b.totals[n][1:] == (new, 3 * 13900), b.totals
        assert carts(env)[2] == {"MLON": 3}
        hist = [json.loads(x) for x in cli(env, "history", "2", "--json").stdout.splitlines()]
        assert [h["cart"] for h in hist] == [{"MLON": 1}, {"MLON": 3}]  # restored: no new row
    finally:
        b.close()
    assert svc.count("Traceback") == 0
