"""`serve`: subscribes to the baskets' updates and availability, prices each accepted update
exactly once (commit, publish the total, then acknowledge the MQTT message) and counts what
it rejects. One worker thread does the database work; paho's thread only queues messages.
Per basket the worker keeps one lane: one update in flight, at most one held (the newest:
older held ones are superseded) and a rate limit on totals, so no basket can delay another."""

from __future__ import annotations

import heapq
import logging
import queue
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import paho.mqtt.client as mqtt

from basket_service import contract, fleet, mqttlink, store
from basket_service.catalog import Product
from basket_service.config import Settings
from basket_service.contract import Rejected
from basket_service.db import DB_LOST, WAL_TRUNCATE_BYTES, Database, DatabaseError, now

log = logging.getLogger("basket_service")
T = TypeVar("T")

# Health reports (docs/fleet.md) go beside the lanes: the newest per basket is stored, with
# no rate limit, so they never hold up an update.
TOPICS = ("basket/+/update", "basket/+/availability", "basket/+/health")
MAILBOXES = ("/update", "/health")  # one mailbox per topic: the newest message waits
# At most this many messages per transaction (the broker's max_inflight_messages usually
# bounds a batch first).
MAX_BATCH = 500
CHECKPOINT_S = 0.5
# Per basket: at most TOTALS_PER_S updates priced (and totals sent) per second on average, in
# bursts of up to TOTALS_BURST; what comes faster is coalesced (the newest cart wins).
TOTALS_PER_S = 10.0
TOTALS_BURST = 3.0
SWITCH_S = 0.0005  # sys.setswitchinterval while serving
RECONCILE_S = 60.0  # default of the RECONCILE_S setting
TICK_S = 10.0  # idle lanes are dropped and supersede counts logged this often


class Stopped(Exception):
    """The service is stopping before a message was done with: it is not acknowledged."""


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    retain: bool
    mid: int | None = None  # None: not from the main subscription (sweep), nothing to ack
    qos: int = 0
    dup: bool = False
    generation: int = 0  # which connection delivered it: a PUBACK only makes sense on that one
    # Arrival order on the main subscription; a sweep's copy (mid None) carries the last one
    # given out before the sweep began.
    seq: int = 0
    via: str = ""  # history's `via`; "" = live or retained by the MQTT flag
    since: str | None = None  # a sweep's copy: when the sweep began (store.apply_update)
    # "mail": take the topic's mailbox (Service._on_message); "sweep-start" / "sweep-end": no
    # message, the worker's bookkeeping of sweeps
    marker: str = ""


@dataclass
class Work:
    """One message of a batch: what it asks for, and what applying it did."""

    item: Incoming
    basket: int
    update: contract.Update | None = None
    online: bool | None = None
    health: dict[str, object] | None = None  # a health report (contract.parse_health)
    events: list[tuple[str, str | None, str | None]] | None = None  # what it changed
    reason: str = ""  # rejected
    applied: store.Applied | None = None
    publish: bool = False  # its total is sent (decided after the commit)


@dataclass
class Lane:
    """One basket in the worker: the update whose total is in flight (`busy`), the newest one
    waiting (`held`, at most one), the rate limit's tokens, and its timer."""

    tokens: float
    stamp: float  # when `tokens` was last brought up to date (monotonic)
    busy: Work | None = None
    held: Work | None = None
    due: float | None = None  # a timer is set for this time
    seen: int = 0  # seq of the newest update from the main subscription


class Service:
    def __init__(self, settings: Settings, db: Database, products: Mapping[str, Product],
                 share_group: str | None = None, reconcile_s: float = RECONCILE_S) -> None:
        self.settings = settings
        self.db = db
        self.products = dict(products)
        self.share_group = share_group
        # How often the broker's retained carts are read back (RECONCILE_S; 0: never).
        self.reconcile_s = reconcile_s
        # Messages from paho's thread; None: totals were confirmed (see _on_publish).
        self.inbox: queue.Queue[Incoming | None] = queue.Queue()
        self.stop = threading.Event()
        self.generation = 0
        self.rejected: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        self.db_errors = DB_LOST
        self.clock: Callable[[], float] = time.monotonic
        # Called (from the worker thread) after each message: the dashboard looks at once.
        self.on_change: Callable[[], None] | None = None
        self.client: mqttlink.Client = mqttlink.make_client(settings, settings.client_id,
                                                            clean=False, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self._session_present = False
        self._seq = 0  # paho's thread only (a sweep reads it)
        # Totals of a whole batch go out together: no limit in paho (its default of 20 holds
        # the rest back, and each PUBACK then scans every queued message). What is in flight
        # is bounded anyway: at most one total per basket.
        self.client.max_inflight_messages_set(0)
        # Published totals waiting for the broker's PUBACK (by our packet id), PUBACKs that
        # came before _publish noted the packet id, and messages whose total the broker has
        # confirmed, to be marked as sent and acknowledged by the worker. All under _plock.
        self._plock = threading.Lock()
        self._waiting: dict[int, Work] = {}
        self._early: set[int] = set()
        self._confirmed: list[Work] = []
        self._woken = False  # a wake-up (None) for the confirmed ones is in the inbox
        # Worker only: one lane per basket heard of lately, the lanes' timers (due, basket),
        # the sweeps under way (by seq), superseded updates not yet counted in the database,
        # and the connection the busy updates belong to.
        self._lanes: dict[int, Lane] = {}
        self._timers: list[tuple[float, int]] = []
        self._sweeps: Counter[int] = Counter()
        self._superseded = 0
        # The updates' mailboxes (topic -> newest not yet taken by the worker) and how many
        # each replaced, under _mlock (paho's thread fills them, the worker empties them).
        self._mlock = threading.Lock()
        self._mail: dict[str, Incoming] = {}
        self._mail_superseded: Counter[str] = Counter()
        self._superseded_by: Counter[str] = Counter()  # topic -> n since the last tick (log)
        self._next_tick = 0.0
        self._busy_generation = 0

    # --- paho's thread: only bookkeeping and queueing ---------------------------------------
    def _filters(self) -> list[str]:
        if self.share_group:
            return ["$share/%s/%s" % (self.share_group, t) for t in TOPICS]
        return list(TOPICS)

    def _on_connect(self, c: mqtt.Client, u: object, flags: mqtt.ConnectFlags,
                    rc: mqtt.ReasonCode, props: object) -> None:
        if rc.is_failure:
            log.error("MQTT broker %s:%d refused the connection: %s", self.settings.mqtt_host,
                      self.settings.mqtt_port, rc)
            return
        self.generation += 1
        self._session_present = bool(flags.session_present)
        # Subscribing again (on every connection) makes the broker send the retained carts
        # again: what was dropped or published while the link was down is priced now.
        c.subscribe([(f, 1) for f in self._filters()])
        if self.share_group:
            # A shared subscription gets no retained messages: read them once per connection
            # so carts published while no service ran are priced now.
            threading.Thread(target=self._sweep, args=(list(TOPICS), "retained"),
                             name="sweep", daemon=True).start()

    def _on_subscribe(self, c: mqtt.Client, u: object, mid: int, codes: object,
                      props: object) -> None:
        # Logged once the broker has the subscriptions: from here on nothing is missed
        # (tests start publishing when they see this line).
        log.info("connected to MQTT %s:%d as %s (session present: %s)", self.settings.mqtt_host,
                 self.settings.mqtt_port, self.settings.client_id, self._session_present)

    def _on_disconnect(self, c: mqtt.Client, u: object, flags: object, rc: mqtt.ReasonCode,
                       props: object) -> None:
        if not self.stop.is_set():
            log.warning("MQTT link lost (%s); paho reconnects", rc)

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        """Queues the message for the worker. An update waits in the topic's mailbox (one per
        topic, the newest): one that comes while an older one still waits there replaces it,
        and the older is acknowledged at once (superseded; the worker never parses it). So a
        flooding basket has at most one message in the inbox, ahead of nobody."""
        self._seq += 1
        item = Incoming(msg.topic, bytes(msg.payload), bool(msg.retain), msg.mid, msg.qos,
                        bool(msg.dup), self.generation, self._seq)
        if not msg.topic.endswith(MAILBOXES):
            self.inbox.put(item)
            return
        with self._mlock:
            old = self._mail.get(msg.topic)
            self._mail[msg.topic] = item
            if old is not None and msg.topic.endswith("/update"):
                self._mail_superseded[msg.topic] += 1
        if old is None:
            self.inbox.put(Incoming(msg.topic, b"", False, marker="mail"))
        else:
            self._ack(old)

    def _sweep(self, topics: list[str], via: str) -> None:
        """Reads the broker's retained messages on `topics` with a short-lived plain
        subscription and queues them for the worker (via `via`). A copy is older than anything
        the main subscription delivers after the sweep began, so those win (Incoming.seq,
        store.apply_update's `since`)."""
        seq, since = self._seq, now()
        self.inbox.put(Incoming("", b"", True, seq=seq, marker="sweep-start"))
        try:
            retained = mqttlink.read_retained(self.settings, topics)
        except OSError as e:
            log.warning("retained sweep failed: %s", e)
            retained = []
        else:
            log.log(logging.INFO if via == "retained" else logging.DEBUG,
                    "retained sweep (%s): %d message(s)", via, len(retained))
        for topic, payload in retained:
            self.inbox.put(Incoming(topic, payload, True, seq=seq, via=via, since=since))
        self.inbox.put(Incoming("", b"", True, seq=seq, marker="sweep-end"))

    def _reconcile(self) -> None:
        """Every reconcile_s: the broker's retained carts against the database. An update the
        broker dropped for us (it says so only in its own log) is priced at the latest here."""
        while not self.stop.wait(self.reconcile_s):
            self._sweep(["basket/+/update"], "reconcile")

    # --- the worker ------------------------------------------------------------------------
    def _checkpoints(self) -> None:
        """SQLite: copies the WAL into the database file every CHECKPOINT_S, beside the
        worker (PASSIVE: it never blocks the worker's transactions, and its fsyncs no longer
        stall a COMMIT of the worker for tens of milliseconds). When the WAL has grown past
        WAL_TRUNCATE_BYTES anyway (readers kept PASSIVE from finishing), one TRUNCATE
        checkpoint empties it; journal_size_limit cuts it back after an ordinary restart."""
        conn = None
        while not self.stop.wait(CHECKPOINT_S):
            try:
                if conn is None:
                    conn = self.db.checkpointer()
                if self.db.wal_bytes() > WAL_TRUNCATE_BYTES:
                    conn.execute("PRAGMA busy_timeout=1000")
                    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                    conn.execute("PRAGMA busy_timeout=30000")
                    log.info("WAL of %s truncated%s", self.db.where,
                             " (readers busy, retrying)" if busy else "")
                else:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as e:
                log.warning("checkpoint of %s failed: %s", self.db.where, e)
                conn = None
        if conn is not None:
            conn.close()

    def run(self) -> None:
        # paho's thread holds the GIL while it decodes a burst of messages; the worker waits
        # for it at most this long (Python's default of 5 ms would be most of a total's time).
        sys.setswitchinterval(SWITCH_S)
        if self.db.backend == "sqlite":
            self.db.checkpoint_elsewhere()
            threading.Thread(target=self._checkpoints, name="checkpoint", daemon=True).start()
        if self.reconcile_s > 0:
            threading.Thread(target=self._reconcile, name="reconcile", daemon=True).start()
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()
        try:
            while not self.stop.is_set():
                batch: list[Incoming | None] = []
                try:
                    batch.append(self.inbox.get(timeout=self._idle_timeout()))
                except queue.Empty:
                    pass  # a lane's timer is due (or a second passed)
                # Whatever else is already queued joins this batch: no waiting for more, so a
                # lone update is handled at once and a burst shares one commit.
                while batch and len(batch) < MAX_BATCH:
                    try:
                        batch.append(self.inbox.get_nowait())
                    except queue.Empty:
                        break
                items = [i for i in batch if i is not None]
                if self.handle_batch(items) and self.on_change is not None:
                    self.on_change()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            log.info("stopped; applied %s; rejected %s", dict(self.applied), dict(self.rejected))

    def _idle_timeout(self) -> float:
        """Until the next lane's timer (the worker sleeps in the inbox's wait, never spins)."""
        if not self._timers:
            return 1.0
        return min(1.0, max(0.0, self._timers[0][0] - self.clock()))

    def handle(self, item: Incoming) -> None:
        self.handle_batch([item])

    def handle_batch(self, items: list[Incoming]) -> bool:
        """Processes a batch of messages in one transaction, then publishes their totals
        without waiting. The same transaction marks as sent the totals the broker has
        confirmed since the last one, and only then are those messages acknowledged: per
        message it is the order of docs/service.md (commit, total confirmed, total_sent = 1,
        ack), with one commit for many. Each message's one-line summary is logged once it is
        acknowledged (tests wait on it). Returns whether anything was processed.

        Per basket, one lane (docs/service.md, "Fairness"): one update at a time is priced
        and its total in flight; a later update waits (held, not yet acknowledged) until that
        total is confirmed and the basket's rate limit allows the next one; a newer update
        supersedes the held one, which is acknowledged at once and never priced. So an update
        is never overtaken by a newer cart of its basket before its total is out (a crash
        cannot leave a total unsent that nothing sends again), a flooding basket costs the
        others one parse per message, and each basket holds at most two updates."""
        clock = self.clock()
        with self._plock:
            confirmed, self._confirmed = self._confirmed, []
            self._woken = False
        ready: set[int] = set()
        if self._busy_generation != self.generation:
            # A new connection: paho sends unconfirmed totals again, but the broker also
            # redelivers their updates; waiting for those PUBACKs is no longer needed.
            for b, ln in self._lanes.items():
                if ln.busy is not None:
                    ln.busy = None
                    ready.add(b)
            self._busy_generation = self.generation
        for c in confirmed:  # its basket is free: its held update may go now
            got = self._lanes.get(c.basket)
            if got is not None and got.busy is c:
                got.busy = None
                ready.add(c.basket)
        work: list[Work] = []
        dropped: list[Work] = []
        with self._mlock:
            early, self._mail_superseded = self._mail_superseded, Counter()
        if early:
            self._count_superseded(early)
        for item in items:
            if item.marker == "mail":
                with self._mlock:
                    mail = self._mail.pop(item.topic, None)
                if mail is None:
                    continue
                item = mail
            elif item.marker:
                self._sweeps[item.seq] += 1 if item.marker == "sweep-start" else -1
                self._sweeps += Counter()  # drops the finished
                continue
            w = self._parse(item)
            if w.update is None:
                work.append(w)  # availability or rejected: no total, no lane
                continue
            lane = self._lane(w.basket, clock)
            if item.mid is None:  # a sweep's copy
                if lane.seen > item.seq:
                    continue  # an update that came after the sweep began is at least as new
            else:
                lane.seen = item.seq
            if lane.held is not None:
                dropped.append(lane.held)
            lane.held = w
            ready.add(w.basket)
        while self._timers and self._timers[0][0] <= clock:
            _, b = heapq.heappop(self._timers)
            got = self._lanes.get(b)
            if got is not None and got.due is not None and got.due <= clock:
                got.due = None
                ready.add(b)
        for b in sorted(ready):
            lane = self._lanes[b]
            if lane.held is None or lane.busy is not None:
                continue
            if self._take(lane, clock):
                w, lane.held = lane.held, None
                lane.busy = w  # until its total is confirmed (or none is sent)
                work.append(w)
            elif lane.due is None:
                lane.due = clock + (1.0 - lane.tokens) / TOTALS_PER_S
                heapq.heappush(self._timers, (lane.due, b))
        if dropped:
            self._supersede(dropped)
        if work or confirmed:
            log.debug("batch: %d message(s), %d held, %d confirmed, %d superseded", len(work),
                      sum(1 for ln in self._lanes.values() if ln.held), len(confirmed),
                      len(dropped))
            self._process(work, confirmed)
        if clock >= self._next_tick:
            self._tick(clock)
        return bool(work or confirmed or dropped)

    def _lane(self, basket: int, clock: float) -> Lane:
        lane = self._lanes.get(basket)
        if lane is None:
            lane = self._lanes[basket] = Lane(TOTALS_BURST, clock)
        return lane

    @staticmethod
    def _take(lane: Lane, clock: float) -> bool:
        """The rate limit (a token bucket): True when the basket may have a total now."""
        lane.tokens = min(TOTALS_BURST, lane.tokens + (clock - lane.stamp) * TOTALS_PER_S)
        lane.stamp = clock
        if lane.tokens >= 1.0:
            lane.tokens -= 1.0
            return True
        return False

    def _supersede(self, dropped: list[Work]) -> None:
        """Held updates a newer one of their basket replaced: acknowledged now, never priced
        (no history row, no total); counted as `superseded`."""
        with self.client.corked():
            for w in dropped:
                self._ack(w.item)
        self._count_superseded(Counter(w.item.topic for w in dropped))
        if log.isEnabledFor(logging.DEBUG):
            for w in dropped:
                assert w.update is not None
                log.debug("basket %d: cart %s superseded", w.basket, w.update.cart)

    def _count_superseded(self, by_topic: Counter[str]) -> None:
        n = sum(by_topic.values())
        self.applied["superseded"] += n
        self._superseded += n  # into the `superseded` counter with the next commit
        self._superseded_by.update(by_topic)

    def _tick(self, clock: float) -> None:
        """Every TICK_S: logs who was coalesced, and forgets idle lanes (nothing in flight or
        held, the rate limit full again, and no sweep under way that needs `seen`)."""
        self._next_tick = clock + TICK_S
        if self._superseded_by:
            top, n = self._superseded_by.most_common(1)[0]
            log.info("%d update(s) superseded by a newer cart of their basket in the last"
                     " %.0f s (%s: %d)", sum(self._superseded_by.values()), TICK_S,
                     top[:80], n)
            self._superseded_by.clear()
        floor = min(self._sweeps) if self._sweeps else None
        idle = [b for b, ln in self._lanes.items()
                if ln.busy is None and ln.held is None
                and ln.tokens + (clock - ln.stamp) * TOTALS_PER_S >= TOTALS_BURST
                and (floor is None or ln.seen <= floor)]
        for b in idle:
            del self._lanes[b]

    def _process(self, work: list[Work], confirmed: list[Work]) -> None:
        try:
            self._with_db(lambda: self._commit(work, confirmed))
        except Stopped:
            return
        except Exception:  # noqa: BLE001 - nothing a peer sends may stop the service
            if not work:  # not acknowledged: the broker delivers them again
                log.exception("could not mark %d total(s) as sent", len(confirmed))
                return
            if len(work) > 1 or confirmed:  # find the culprit: one transaction per message
                log.warning("batch of %d failed; retrying one by one", len(work))
                self._process([], confirmed)
                for w in work:
                    self._process([w], [])
                return
            item = work[0].item
            log.exception("internal error on %s; message dropped", item.topic[:80])
            self.rejected["internal_error"] += 1
            self._release(work[0])
            self._ack(item)
            return
        with self.client.corked():
            for c in confirmed:
                self._finish(c)
            for w in work:
                a = w.applied
                w.publish = a is not None and a.publish
                if w.publish:
                    self._publish(w)
                else:
                    self._release(w)
                    self._finish(w)

    def _release(self, w: Work) -> None:
        """w's basket has no total in flight after all: its lane is free for the next one."""
        lane = self._lanes.get(w.basket)
        if w.update is not None and lane is not None and lane.busy is w:
            lane.busy = None
            if lane.held is not None and lane.due is None:
                lane.due = self.clock()
                heapq.heappush(self._timers, (lane.due, w.basket))

    def _parse(self, item: Incoming) -> Work:
        try:
            basket, kind = contract.parse_topic(item.topic)
            if kind == "availability":
                return Work(item, basket, online=contract.parse_availability(item.payload))
            if kind == "health":
                return Work(item, basket, health=contract.parse_health(basket, item.payload))
            return Work(item, basket, update=contract.parse_update(basket, item.payload))
        except Rejected as r:
            self.rejected[r.reason] += 1
            log.warning("rejected %s: %s (rejected so far: %d)", item.topic[:80], r,
                        sum(self.rejected.values()))
            return Work(item, 0, reason=r.reason)

    def _commit(self, work: list[Work], confirmed: list[Work]) -> list[Work]:
        """One transaction for the whole batch. Runs again from the start if the database
        was lost (nothing of a rolled-back attempt is kept)."""
        marks: dict[int, tuple[str, int | None]] = {}
        superseded = self._superseded
        for c in confirmed:  # in PUBACK order, which is publish order: the newest wins
            assert c.applied is not None
            marks[c.basket] = (c.applied.digest, c.applied.session)
        with self.db.tx() as t:
            if self.db.backend == "postgresql":
                # Lock the batch's baskets in one order: two share-group members with
                # overlapping batches then wait for each other instead of deadlocking.
                for b in sorted({w.basket for w in work if w.basket} | set(marks)):
                    t.lock_basket(b)
            for basket, (digest, session) in marks.items():
                store.mark_total_sent_tx(t, basket, digest, session)
            rejected: Counter[str] = Counter(w.reason for w in work if w.reason)
            for reason, n in rejected.items():
                store.count_rejected_tx(t, reason, n)
            if superseded:
                t.bump("superseded", superseded)
            for w in work:
                if w.update is not None:
                    it = w.item
                    w.applied = store.apply_update_tx(
                        t, w.update, self.products,
                        via=it.via or ("retained" if it.retain else "live"),
                        client_id=self.settings.client_id, mid=it.mid if it.qos else None,
                        dup=it.dup, retained=it.retain, since=it.since)
                elif w.online is not None:
                    store.set_availability_tx(t, w.basket, w.online)
                elif w.health is not None:
                    w.events = fleet.record_health_tx(t, w.basket, w.health, since=w.item.since)
        self._superseded -= superseded
        for w in work:
            if w.applied is not None:
                self.applied[w.applied.action] += 1
                if w.applied.unknown:
                    log.warning("basket %d: unknown product code(s) %s priced 0", w.basket,
                                ",".join(w.applied.unknown))
        return work

    def _publish(self, w: Work) -> None:
        """Sends the total without waiting: the broker's PUBACK (paho's network thread,
        _on_publish) finishes the message. Until then it is not acknowledged, so a crash or a
        lost link makes the broker deliver it again."""
        assert w.applied is not None
        info = self.client.publish(contract.status_topic(w.basket),
                                   contract.total_payload(w.basket, w.applied.total,
                                                          w.applied.digest, self._unknown(w)),
                                   qos=1)
        with self._plock:
            confirmed = info.mid in self._early
            if confirmed:
                self._early.discard(info.mid)
            else:
                self._waiting[info.mid] = w
            if confirmed:
                self._confirmed.append(w)
        if confirmed:
            self.inbox.put(None)

    def _unknown(self, w: Work) -> int:
        """How many of the priced cart's codes the catalogue does not know."""
        items = w.update.items if w.update is not None else {}
        return sum(1 for code in items if code not in self.products)

    def _on_publish(self, c: mqtt.Client, u: object, mid: int, rc: mqtt.ReasonCode,
                    props: object) -> None:
        """The broker has a total: the worker marks it as sent with its next transaction
        and then acknowledges the update (woken by a None in the inbox if it is idle). paho's
        thread, inside paho's own lock: bookkeeping only."""
        with self._plock:
            w = self._waiting.pop(mid, None)
            if w is None:
                self._early.add(mid)  # the PUBACK beat _publish's bookkeeping
                return
            self._confirmed.append(w)
            wake = not self._woken
            self._woken = True
        if wake:
            self.inbox.put(None)

    def _finish(self, w: Work) -> None:
        self._ack(w.item)
        if not log.isEnabledFor(logging.INFO):
            return
        if w.applied is not None and w.applied.action == "stale":
            log.debug("basket %d: the sweep's cart is older than the one applied since; skipped",
                      w.basket)
        elif w.applied is not None:
            assert w.update is not None
            log.info("basket %d: %s cart %s -> total %d%s", w.basket, w.applied.action,
                     w.update.cart, w.applied.total, "" if w.publish else " (already sent)")
        elif w.online is not None:
            log.info("basket %d is %s", w.basket, "online" if w.online else "offline")
        elif w.health is not None and w.events is None:
            log.debug("basket %d: the sweep's health report is older than the one stored",
                      w.basket)
        elif w.health is not None:
            log.info("basket %d: health report stored%s", w.basket, "".join(
                "; %s %s -> %s" % e for e in w.events or []))

    def _ack(self, item: Incoming) -> None:
        if item.mid is None or not item.qos:
            return
        if item.generation != self.generation:
            return  # delivered on an earlier connection: the broker redelivers it
        self.client.ack(item.mid, item.qos)

    def _with_db(self, op: Callable[[], T]) -> T:
        """Runs a database operation; on a lost database, reconnects with back-off and tries
        again until it works or the service stops (raises Stopped)."""
        delay = 0.5
        while not self.stop.is_set():
            try:
                return op()
            except self.db_errors as e:
                log.error("database %s: %s; retrying in %.1f s", self.db.where,
                          str(e).splitlines()[0] if str(e) else type(e).__name__, delay)
                if self.stop.wait(delay):
                    break
                delay = min(delay * 2, 15.0)
                try:
                    self.db.connect()
                except DatabaseError as e2:
                    log.error("%s", e2)
        raise Stopped()
