"""Scale out: two service processes in one share group on PostgreSQL. One is killed halfway
through a stream of updates and restarted (same client id, as a supervisor would): no update is
priced twice, what was queued for the killed member is coalesced when it comes back (a basket's
newest cart wins), and each basket ends on its newest cart and that cart's total."""

from __future__ import annotations

import json
import time
from collections import Counter

from tests.support.service_proc import cli, service_env

BASKETS = (1, 2, 3, 4)
ROUNDS = 12
PRICE = 13900  # MLON


def test_service_share_group_survives_a_killed_member(broker, pg_db, baskets, services):
    env = service_env(broker.port, pg_db)
    a = services(env, "--share-group", "pricing", "--client-id", "svc-a").start()
    b = services(env, "--share-group", "pricing", "--client-id", "svc-b").start()
    fakes = {n: baskets(n) for n in BASKETS}

    done_line = r"basket \d+: new cart"
    a_before = b_before = 0
    for r in range(1, ROUNDS + 1):
        if r == ROUNDS // 2 + 1:
            a_before, b_before = a.count(done_line), b.count(done_line)
            a.kill()  # mid-stream: updates may be in flight to it
        for n in BASKETS:
            fakes[n].send({"MLON": r})
        time.sleep(0.15)  # within the service's rate limit per basket (10/s), as baskets do

    assert a_before > 0 and b_before > 0, "both members should have priced before the kill"
    b_after_kill = b.count(done_line)
    a.start()  # same client id: its persistent session hands back what was queued for it

    expected = [PRICE * r for r in range(1, ROUNDS + 1)]
    for n in BASKETS:
        fake = fakes[n]
        # The basket ends up showing its newest cart's total.
        fake.peer.wait_for(lambda f=fake: f.totals()[-1:] == expected[-1:], timeout=30,
                           what="basket %d to end on %d" % (n, expected[-1]))
        # Before the kill every update was priced (the baskets keep to their rate limit).
        assert set(expected[:ROUNDS // 2 - 1]) <= set(fake.totals()), fake.totals()
        # Totals are at-least-once: a kill between a total's PUBACK and its commit, or a late
        # member repairing an out-of-order cart, may repeat one; never a flood.
        assert set(fake.totals()) <= set(expected) and len(fake.totals()) <= ROUNDS + 2, \
            fake.totals()

    hist = [json.loads(x) for x in cli(env, "history", "--json").stdout.splitlines()]
    priced = Counter((h["basket"], h["cart"]["MLON"]) for h in hist)
    assert set(priced.values()) == {1}, priced  # none priced twice
    assert {(n, ROUNDS) for n in BASKETS} <= set(priced), priced
    assert all(h["total"] == PRICE * h["cart"]["MLON"] for h in hist)

    carts = [json.loads(x) for x in cli(env, "carts", "--json").stdout.splitlines()]
    assert {c["basket"]: c["cart"] for c in carts} == {n: {"MLON": ROUNDS} for n in BASKETS}
    assert b.count(done_line) > b_after_kill or b_after_kill > b_before, \
        "the surviving member should have kept pricing"
    assert a.count("Traceback") == 0 and b.count("Traceback") == 0
