"""The worker's per-basket lanes, driven directly (a fake MQTT client, a fake clock, a real
SQLite database): a basket's held updates collapse to the newest (the others acknowledged at
once, never priced), totals are rate limited per basket with a timer for the held one, one
basket's backlog never holds up another's update, a live repeat of the current cart sends its
total again, and a sweep's copy never overrides a newer update."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from basket_service import catalog, config, contract, store
from basket_service.db import now, open_db
from basket_service.service import TOTALS_BURST, TOTALS_PER_S, Incoming, Service

PRODUCTS = catalog.parse("code,name,price,discount_percent\nMLON,melon,13900,0\n")


class FakeClient:
    """What the worker uses of paho: publish (a packet id per total), ack, corked."""

    def __init__(self) -> None:
        self.published: list[tuple[int, str, dict[str, Any]]] = []
        self.acked: list[int] = []
        self._mid = 100

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> SimpleNamespace:
        self._mid += 1
        self.published.append((self._mid, topic, json.loads(payload)["payload"]))
        return SimpleNamespace(mid=self._mid)

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)

    @contextmanager
    def corked(self) -> Iterator[None]:
        yield

    def disconnect(self) -> None:
        pass


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.db = open_db(config.load({"BASKET_DB": str(tmp / "b.db")}))
        self.svc = Service(config.load({"BASKET_DB": str(tmp / "b.db")}), self.db, PRODUCTS,
                           reconcile_s=0)
        self.client = FakeClient()
        self.svc.client = self.client  # type: ignore[assignment]
        self.t = 1000.0
        self.svc.clock = lambda: self.t
        self.mid = 0
        self.seq = 0
        self.confirmed = 0

    def update(self, basket: int, melons: int, retain: bool = False) -> Incoming:
        self.mid += 1
        self.seq += 1
        return Incoming("basket/%d/update" % basket,
                        b'{"id":%d,"list":{"MLON":%d}}' % (basket, melons), retain, self.mid, 1,
                        seq=self.seq)

    def confirm_all(self) -> None:
        """The broker's PUBACK for every total published so far (paho's thread)."""
        for mid, _, _ in self.client.published[self.confirmed:]:
            self.svc._on_publish(None, None, mid, None, None)  # type: ignore[arg-type]
        self.confirmed = len(self.client.published)

    def totals(self, basket: int) -> list[int]:
        return [p["totalprice"] for _, t, p in self.client.published
                if t == "basket/%d/status" % basket]

    def history(self, basket: int) -> list[int]:
        return [h["cart"]["MLON"] for h in store.history(self.db, basket)]

    def close(self) -> None:
        self.db.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def test_held_updates_collapse_to_the_newest(rig):
    first = rig.update(1, 1)
    rig.svc.handle_batch([first])  # priced; its total is in flight (no PUBACK yet)
    assert rig.totals(1) == [13900]
    later = [rig.update(1, n) for n in (2, 3, 4)]
    rig.svc.handle_batch(later[:1])
    rig.svc.handle_batch(later[1:])
    # 2 and 3 were superseded: acknowledged at once, never priced; 4 waits, unacknowledged.
    assert rig.client.acked == [later[0].mid, later[1].mid]
    assert rig.totals(1) == [13900]
    assert rig.svc.applied["superseded"] == 2
    rig.confirm_all()
    rig.svc.handle_batch([])  # 1's total confirmed: 1 acknowledged, 4 priced
    assert rig.client.acked[-1] == first.mid
    assert rig.totals(1) == [13900, 4 * 13900]
    rig.confirm_all()
    rig.svc.handle_batch([])
    assert rig.client.acked[-1] == later[2].mid
    assert rig.history(1) == [1, 4]  # no history row for a superseded update
    assert store.counters(rig.db)["superseded"] == 2
    lane = rig.svc._lanes[1]
    assert lane.busy is None and lane.held is None


def test_one_basket_holds_at_most_two_updates(rig):
    flood = [rig.update(1, n % 999 + 1) for n in range(2000)]
    rig.svc.handle_batch(flood[:500])
    rig.svc.handle_batch(flood[500:])
    assert len(rig.svc._lanes) == 1
    lane = rig.svc._lanes[1]
    # One batch collapses to its newest; while that one's total is in flight, the next
    # batch's collapse to theirs, held. Everything else was acknowledged, never priced.
    assert lane.busy is not None and lane.busy.item is flood[499]
    assert lane.held is not None and lane.held.item is flood[-1]
    assert len(rig.client.acked) == 1998
    assert rig.totals(1) == [500 * 13900]


def test_totals_are_rate_limited_and_the_held_one_goes_when_its_slot_comes(rig):
    for n in range(1, 8):  # a basket publishing far faster than the limit, all confirmed
        rig.svc.handle_batch([rig.update(1, n)])
        rig.confirm_all()
        rig.svc.handle_batch([])
        rig.t += 0.001
    # The burst went at once; the newest of the rest waits for the next slot.
    assert len(rig.totals(1)) == int(TOTALS_BURST)
    wait = rig.svc._idle_timeout()
    assert 0 < wait <= 1 / TOTALS_PER_S  # the worker sleeps until then (no busy waiting)
    rig.svc.handle_batch([])
    assert len(rig.totals(1)) == int(TOTALS_BURST)  # not yet
    rig.t += wait
    rig.svc.handle_batch([])  # the timer fired
    assert rig.totals(1)[-1] == 7 * 13900
    assert rig.history(1) == [1, 2, 3, 7]
    # Over a long flood: at most TOTALS_PER_S per second (plus the burst).
    start = rig.t
    for n in range(1, 2001):  # 2 s at 1,000 updates/s
        rig.t = start + n / 1000
        rig.svc.handle_batch([rig.update(1, n % 999 + 1)])
        rig.confirm_all()
        rig.svc.handle_batch([])
    sent = len(rig.totals(1)) - 4
    assert 2 * TOTALS_PER_S - 1 <= sent <= 2 * TOTALS_PER_S + TOTALS_BURST, sent


def test_a_flooding_basket_does_not_hold_up_another(rig):
    flood = [rig.update(1, n % 999 + 1) for n in range(300)]
    other = rig.update(2, 2)
    rig.svc.handle_batch(flood[:150] + [other] + flood[150:])
    assert rig.totals(2) == [2 * 13900]  # priced in the same batch, not after basket 1's
    rig.confirm_all()
    rig.svc.handle_batch([rig.update(2, 3)])
    assert rig.totals(2) == [2 * 13900, 3 * 13900]
    assert other.mid in rig.client.acked


def test_a_live_repeat_sends_the_total_again(rig):
    rig.svc.handle_batch([rig.update(1, 2)])
    rig.confirm_all()
    rig.svc.handle_batch([])
    assert rig.totals(1) == [27800]
    # The basket saw no total for its cart and publishes it again (retain flag 0, live).
    rig.svc.handle_batch([rig.update(1, 2, retain=False)])
    assert rig.totals(1) == [27800, 27800]
    digest = contract.cart_digest('{"MLON":2}')
    assert [p["cart"] for _, _, p in rig.client.published] == [digest, digest]
    rig.confirm_all()
    rig.svc.handle_batch([])
    # A retained redelivery of the unchanged cart (total confirmed) sends nothing.
    rig.svc.handle_batch([rig.update(1, 2, retain=True)])
    assert rig.totals(1) == [27800, 27800]
    assert rig.history(1) == [2]


def test_a_sweep_copy_never_overrides_a_newer_update(rig):
    rig.svc.handle_batch([rig.update(1, 1)])
    rig.confirm_all()
    rig.svc.handle_batch([])
    rig.t += 1
    # A sweep begins (it has read nothing yet); then a live update arrives, still held
    # behind the rate limit's slot or not: the sweep's copy (an older cart) must lose.
    sweep_seq, since = rig.seq, now()
    live = rig.update(1, 5)
    rig.svc.handle_batch([Incoming("", b"", True, seq=sweep_seq, marker="sweep-start"), live])
    rig.confirm_all()
    rig.svc.handle_batch([])
    old = Incoming("basket/1/update", b'{"id":1,"list":{"MLON":1}}', True, seq=sweep_seq,
                   via="reconcile", since=since)
    rig.svc.handle_batch([old, Incoming("", b"", True, seq=sweep_seq, marker="sweep-end")])
    assert rig.totals(1) == [13900, 5 * 13900]
    assert store.carts(rig.db)[0]["cart"] == {"MLON": 5}
    # Applied by another process after the sweep began: store's `since` check skips it too.
    store.apply_update(rig.db, contract.parse_update(2, b'{"id":2,"list":{"MLON":7}}'),
                       PRODUCTS, via="live")
    a = store.apply_update(rig.db, contract.parse_update(2, b'{"id":2,"list":{"MLON":6}}'),
                           PRODUCTS, via="reconcile", retained=True, since=since)
    assert (a.action, a.publish) == ("stale", False)
    # A sweep copy that differs and is not overtaken is applied, and its total sent.
    rig.t += 1
    time.sleep(0.002)  # `since` has millisecond steps: later than the last change
    sweep_seq, since = rig.seq, now()
    rig.svc.handle_batch([Incoming("basket/1/update", b'{"id":1,"list":{"MLON":9}}', True,
                                   seq=sweep_seq, via="reconcile", since=since)])
    assert rig.totals(1)[-1] == 9 * 13900
    assert store.history(rig.db, 1)[-1]["via"] == "reconcile"


def test_idle_lanes_are_forgotten(rig):
    for b in range(1, 51):
        rig.svc.handle_batch([rig.update(b, 1)])
    rig.confirm_all()
    rig.svc.handle_batch([])
    assert len(rig.svc._lanes) == 50
    rig.t += 60
    rig.svc.handle_batch([])
    assert rig.svc._lanes == {}


def test_the_mailbox_keeps_one_update_per_basket_in_the_inbox(rig):
    """paho's thread: an update that comes while an older one of its basket still waits for
    the worker replaces it, and the older is acknowledged at once (never parsed)."""
    msgs = [SimpleNamespace(topic="basket/1/update", payload=b'{"id":1,"list":{"MLON":%d}}' % n,
                            retain=False, mid=n, qos=1, dup=False) for n in range(1, 201)]
    other = SimpleNamespace(topic="basket/2/update", payload=b'{"id":2,"list":{"MLON":1}}',
                            retain=False, mid=500, qos=1, dup=False)
    for m in msgs[:100] + [other] + msgs[100:]:
        rig.svc._on_message(None, None, m)  # type: ignore[arg-type]
    assert rig.svc.inbox.qsize() == 2  # one pointer per basket
    assert rig.client.acked == list(range(1, 200))  # all but basket 1's newest
    rig.svc.handle_batch([rig.svc.inbox.get_nowait(), rig.svc.inbox.get_nowait()])
    assert rig.totals(1) == [200 * 13900] and rig.totals(2) == [13900]
    assert rig.svc.applied["superseded"] == 199
    rig.confirm_all()
    rig.svc.handle_batch([])
    assert store.counters(rig.db)["superseded"] == 199
