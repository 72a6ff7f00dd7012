"""`serve`: subscribes to the baskets' updates and availability, prices each accepted update
exactly once (commit, publish the total, then acknowledge the MQTT message) and counts what
it rejects. One worker thread does the database work; paho's thread only queues messages."""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import paho.mqtt.client as mqtt

from basket_service import contract, mqttlink, store
from basket_service.catalog import Product
from basket_service.config import Settings
from basket_service.contract import Rejected
from basket_service.db import Database, DatabaseError

log = logging.getLogger("basket_service")
T = TypeVar("T")

TOPICS = ("basket/+/update", "basket/+/availability")
# At most this many messages per transaction (the broker's max_inflight_messages usually
# bounds a batch first).
MAX_BATCH = 500
CHECKPOINT_S = 0.5


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


def _db_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.OperationalError, DatabaseError]
    try:
        import psycopg

        errors.append(psycopg.OperationalError)
    except ImportError:
        pass
    return tuple(errors)


@dataclass
class Work:
    """One message of a batch: what it asks for, and what applying it did."""

    item: Incoming
    basket: int
    update: contract.Update | None = None
    online: bool | None = None
    reason: str = ""  # rejected
    applied: store.Applied | None = None
    publish: bool = False  # its total is sent (decided after the commit)


class Service:
    def __init__(self, settings: Settings, db: Database, products: Mapping[str, Product],
                 share_group: str | None = None) -> None:
        self.settings = settings
        self.db = db
        self.products = dict(products)
        self.share_group = share_group
        # Messages from paho's thread; None: totals were confirmed (see _on_publish).
        self.inbox: queue.Queue[Incoming | None] = queue.Queue()
        self.stop = threading.Event()
        self.generation = 0
        self.rejected: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        self.db_errors = _db_errors()
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
        # Totals of a whole batch go out together: no limit in paho (its default of 20 holds
        # the rest back, and each PUBACK then scans every queued message). What is in flight
        # is bounded anyway: each total belongs to an update not yet acknowledged, and the
        # broker's max_inflight_messages bounds those.
        self.client.max_inflight_messages_set(0)
        # Published totals waiting for the broker's PUBACK (by our packet id), PUBACKs that
        # came before _publish noted the packet id, and messages whose total the broker has
        # confirmed, to be marked as sent and acknowledged by the worker. All under _plock.
        self._plock = threading.Lock()
        self._waiting: dict[int, Work] = {}
        self._early: set[int] = set()
        self._confirmed: list[Work] = []
        self._woken = False  # a wake-up (None) for the confirmed ones is in the inbox
        # Worker only: baskets with an update whose total is not yet confirmed (basket ->
        # that update), the updates held back until it is (oldest first), and the connection
        # _busy belongs to.
        self._busy: dict[int, Work] = {}
        self._held: dict[int, deque[Work]] = {}
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
        c.subscribe([(f, 1) for f in self._filters()])
        if self.share_group:
            # A shared subscription gets no retained messages: read them once per connection
            # so carts published while no service ran are priced now.
            threading.Thread(target=self._sweep, name="sweep", daemon=True).start()

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
        self.inbox.put(Incoming(msg.topic, bytes(msg.payload), bool(msg.retain), msg.mid,
                                msg.qos, bool(msg.dup), self.generation))

    def _sweep(self) -> None:
        try:
            retained = mqttlink.read_retained(self.settings, list(TOPICS))
        except OSError as e:
            log.warning("retained sweep failed: %s", e)
            return
        log.info("retained sweep: %d message(s)", len(retained))
        for topic, payload in retained:
            self.inbox.put(Incoming(topic, payload, retain=True))

    # --- the worker ------------------------------------------------------------------------
    def _checkpoints(self) -> None:
        """SQLite: copies the WAL into the database file every CHECKPOINT_S, beside the
        worker (PASSIVE: it never blocks the worker's transactions, and its fsyncs no longer
        stall a COMMIT of the worker for tens of milliseconds)."""
        conn = None
        while not self.stop.wait(CHECKPOINT_S):
            try:
                if conn is None:
                    conn = self.db.checkpointer()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as e:
                log.warning("checkpoint of %s failed: %s", self.db.where, e)
                conn = None
        if conn is not None:
            conn.close()

    def run(self) -> None:
        if self.db.backend == "sqlite":
            self.db.checkpoint_elsewhere()
            threading.Thread(target=self._checkpoints, name="checkpoint", daemon=True).start()
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()
        try:
            while not self.stop.is_set():
                try:
                    first = self.inbox.get(timeout=1.0)
                except queue.Empty:
                    continue
                # Whatever else is already queued joins this batch: no waiting for more, so a
                # lone update is handled at once and a burst shares one commit.
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self.inbox.get_nowait())
                    except queue.Empty:
                        break
                items = [i for i in batch if i is not None]
                self.handle_batch(items)
                if items and self.on_change is not None:
                    self.on_change()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            log.info("stopped; applied %s; rejected %s", dict(self.applied), dict(self.rejected))

    def handle(self, item: Incoming) -> None:
        self.handle_batch([item])

    def handle_batch(self, items: list[Incoming]) -> None:
        """Processes a batch of messages in one transaction, then publishes their totals
        without waiting. The same transaction marks as sent the totals the broker has
        confirmed since the last one, and only then are those messages acknowledged: per
        message it is the order of docs/service.md (commit, total confirmed, total_sent = 1,
        ack), with one commit for many. Each message's one-line summary is logged once it is
        acknowledged (tests wait on it). An empty batch only handles the confirmed ones.

        Per basket, one update at a time: a basket's next update waits (held, not yet
        acknowledged) until the total of its previous one is confirmed. So, as with one
        message at a time, an update is never overtaken by a newer cart of its basket before
        its total is out, and a crash cannot leave a total unsent that nothing sends again."""
        with self._plock:
            confirmed, self._confirmed = self._confirmed, []
            self._woken = False
        if self._busy_generation != self.generation:
            # A new connection: paho sends unconfirmed totals again, but the broker also
            # redelivers their updates; waiting for those PUBACKs is no longer needed.
            self._busy.clear()
            self._busy_generation = self.generation
        work: list[Work] = []
        for c in confirmed:  # its basket is free: its oldest held update goes now
            if self._busy.get(c.basket) is not c:
                continue  # confirmed after a reconnect had already freed the basket
            del self._busy[c.basket]
            held = self._held.get(c.basket)
            if held:
                w = held.popleft()
                work.append(w)
                self._busy[c.basket] = w
                if not held:
                    del self._held[c.basket]
        for item in items:
            w = self._parse(item)
            if w.update is not None:
                if w.basket in self._busy:
                    self._held.setdefault(w.basket, deque()).append(w)
                    continue
                self._busy[w.basket] = w  # until its total is confirmed (or none is sent)
            work.append(w)
        if work or confirmed:
            log.debug("batch: %d message(s), %d basket(s) waiting, %d confirmed", len(work),
                      len(self._held), len(confirmed))
            self._process(work, confirmed)
            # Baskets whose update sent no total are free again; so are their held updates.
            free = [b for b in self._held if b not in self._busy]
            while free:
                again = []
                for b in free:
                    w = self._held[b].popleft()
                    again.append(w)
                    self._busy[b] = w
                    if not self._held[b]:
                        del self._held[b]
                self._process(again, [])
                free = [b for b in self._held if b not in self._busy]

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
            if work[0].update is not None:
                self._busy.pop(work[0].basket, None)
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
                    if w.update is not None:
                        self._busy.pop(w.basket, None)
                    self._finish(w)

    def _parse(self, item: Incoming) -> Work:
        try:
            basket, kind = contract.parse_topic(item.topic)
            if kind == "availability":
                return Work(item, basket, online=contract.parse_availability(item.payload))
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
            for w in work:
                if w.update is not None:
                    it = w.item
                    w.applied = store.apply_update_tx(
                        t, w.update, self.products, via="retained" if it.retain else "live",
                        client_id=self.settings.client_id, mid=it.mid if it.qos else None,
                        dup=it.dup, retained=it.retain)
                elif w.online is not None:
                    store.set_availability_tx(t, w.basket, w.online)
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
                                   contract.total_payload(w.basket, w.applied.total), qos=1)
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
        if w.applied is not None:
            assert w.update is not None
            log.info("basket %d: %s cart %s -> total %d%s", w.basket, w.applied.action,
                     w.update.cart, w.applied.total, "" if w.publish else " (already sent)")
        elif w.online is not None:
            log.info("basket %d is %s", w.basket, "online" if w.online else "offline")

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
