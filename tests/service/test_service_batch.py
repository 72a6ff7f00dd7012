"""The batch path: a burst of updates from many baskets is handled in batches (one transaction
each, totals published together); each basket's updates are coalesced (a held one is superseded
by a newer one, the newest cart wins), none is priced twice, and every basket ends with the
total of its last cart; a service killed (SIGKILL) mid-burst loses no basket's last cart and
prices nothing twice."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from tests.support.broker import Broker
from tests.support.fake_basket import encode_update
from tests.support.peer import Peer
from tests.support.service_proc import cli, service_env

BASKETS = 40
ROUNDS = 10
PRICE = 13900  # MLON


@pytest.fixture
def fleet_broker() -> Iterator[Broker]:
    # No ACL: one client plays the whole fleet. As provisioned (tools/provision.py), more than
    # Mosquitto's default of 20 updates may be in flight to the service.
    b = Broker.with_acl(users={"service": "service-pw", "fleet": "fleet-pw"},
                  extra_conf="max_inflight_messages 1000\n").start()
    yield b
    b.close()


def burst(port: int, rounds: int = ROUNDS) -> None:
    """BASKETS x rounds updates ({"MLON": round}), QoS 1 retained, as fast as the broker
    takes them (no waiting between messages)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet")
    c.username_pw_set("fleet", "fleet-pw")
    c.max_inflight_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        infos = [c.publish("basket/%d/update" % n, encode_update(n, {"MLON": r}), qos=1,
                           retain=True)
                 for r in range(1, rounds + 1) for n in range(1, BASKETS + 1)]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


def totals(watcher: Peer) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {n: [] for n in range(1, BASKETS + 1)}
    with watcher.cond:
        for topic, payload, _ in watcher.messages:
            doc = json.loads(payload)
            out[int(topic.split("/")[1])].append(doc["payload"]["totalprice"])
    return out


def all_totals_arrived(watcher: Peer, rounds: int = ROUNDS) -> bool:
    """Every basket's last total is its last cart's, and no older total came after a newer."""
    return all(t and t[-1] == PRICE * rounds and t == sorted(t)
               for t in totals(watcher).values())


def check_history(env: dict[str, str], rounds: int = ROUNDS) -> list[dict]:  # type: ignore[type-arg]
    hist = [json.loads(x) for x in cli(env, "history", "--json").stdout.splitlines()]
    priced = Counter((h["basket"], h["cart"]["MLON"]) for h in hist)
    assert set(priced.values()) == {1}, priced  # none priced twice
    assert {(n, rounds) for n in range(1, BASKETS + 1)} <= set(priced), priced
    assert all(h["total"] == PRICE * h["cart"]["MLON"] for h in hist)
    carts = [json.loads(x) for x in cli(env, "carts", "--json").stdout.splitlines()]
    assert {c["basket"]: c["cart"] for c in carts} == {n: {"MLON": rounds}
                                                       for n in range(1, BASKETS + 1)}
    return hist


def stats(env: dict[str, str]) -> dict[str, int]:
    return {k: int(v) for k, v in (ln.split() for ln in cli(env, "stats").stdout.splitlines())}


def test_service_batch_burst_priced_once_every_total_arrives(fleet_broker, any_db, services):
    env = service_env(fleet_broker.port, any_db, LOG_LEVEL="DEBUG")
    svc = services(env).start()
    watcher = Peer(fleet_broker.port)
    watcher.subscribe("basket/+/status")
    burst(fleet_broker.port)
    watcher.wait_for(lambda: all_totals_arrived(watcher), timeout=60, what="every total")
    hist = check_history(env)
    # Without a restart nothing is sent twice: exactly one total per priced update, in order;
    # every update was either priced or superseded.
    assert totals(watcher) == {n: [h["total"] for h in hist if h["basket"] == n]
                               for n in range(1, BASKETS + 1)}
    assert len(hist) + stats(env).get("superseded", 0) == BASKETS * ROUNDS
    sizes = [int(m) for m in re.findall(r"batch: (\d+) message", svc.output())]
    assert max(sizes) > 1, "the burst should have been handled in batches: %s" % sizes[:50]
    assert svc.count("Traceback") == 0
    watcher.close()


def test_service_batch_killed_mid_burst_loses_nothing(fleet_broker, any_db, services):
    rounds = 25  # 1,000 updates: the kill lands while many are queued or in flight
    env = service_env(fleet_broker.port, any_db)
    svc = services(env).start()
    watcher = Peer(fleet_broker.port)
    watcher.subscribe("basket/+/status")
    sender = threading.Thread(target=burst, args=(fleet_broker.port, rounds))
    sender.start()
    # SIGKILL once some updates are done (acknowledged) and more are in flight.
    svc.wait_line(r"basket \d+: new cart", timeout=30)
    svc.kill()
    done_before = svc.count(r"basket \d+: new cart")
    sender.join(60)
    assert 0 < done_before < BASKETS * rounds, "the kill came after the whole burst"
    svc2 = services(env).start()
    try:
        watcher.wait_for(lambda: all_totals_arrived(watcher, rounds), timeout=60,
                         what="every total")
    except AssertionError:
        raise AssertionError("last totals: %s\n%s" % (
            {n: t[-3:] for n, t in totals(watcher).items() if t[-1:] != [PRICE * rounds]},
            svc2.output()[-3000:]))
    check_history(env, rounds)  # none priced twice across the kill, every last cart priced
    # Totals are at least once: only those in flight at the kill may come twice.
    sent = sum(len(t) for t in totals(watcher).values())
    assert sent <= BASKETS * rounds + 500, sent
    assert svc2.count("Traceback") == 0
    watcher.close()
