"""`serve`: subscribes to the baskets' updates and availability, prices each accepted update
exactly once (commit, publish the total, then acknowledge the MQTT message) and counts what
it rejects. One worker thread does the database work; paho's thread only queues messages."""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections import Counter
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


class Service:
    def __init__(self, settings: Settings, db: Database, products: Mapping[str, Product],
                 share_group: str | None = None) -> None:
        self.settings = settings
        self.db = db
        self.products = dict(products)
        self.share_group = share_group
        self.inbox: queue.Queue[Incoming] = queue.Queue()
        self.stop = threading.Event()
        self.generation = 0
        self.rejected: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        self.db_errors = _db_errors()
        # Called (from the worker thread) after each message: the dashboard looks at once.
        self.on_change: Callable[[], None] | None = None
        self.client = mqttlink.make_client(settings, settings.client_id, clean=False,
                                           manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

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
        log.info("connected to MQTT %s:%d as %s (session present: %s)", self.settings.mqtt_host,
                 self.settings.mqtt_port, self.settings.client_id, flags.session_present)
        c.subscribe([(f, 1) for f in self._filters()])
        if self.share_group:
            # A shared subscription gets no retained messages: read them once per connection
            # so carts published while no service ran are priced now.
            threading.Thread(target=self._sweep, name="sweep", daemon=True).start()

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
    def run(self) -> None:
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()
        try:
            while not self.stop.is_set():
                try:
                    item = self.inbox.get(timeout=1.0)
                except queue.Empty:
                    continue
                self.handle(item)
                if self.on_change is not None:
                    self.on_change()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            log.info("stopped; applied %s; rejected %s", dict(self.applied), dict(self.rejected))

    def handle(self, item: Incoming) -> None:
        """Processes one message; it is acknowledged only once its effects are durable, and
        the one-line summary is logged after that (tests wait on it)."""
        done = ""
        try:
            basket, kind = contract.parse_topic(item.topic)
            if kind == "availability":
                online = contract.parse_availability(item.payload)
                self._with_db(lambda: store.set_availability(self.db, basket, online))
                done = "basket %d is %s" % (basket, "online" if online else "offline")
            else:
                summary = self._price(contract.parse_update(basket, item.payload), item)
                if summary is None:
                    return
                done = summary
        except Stopped:
            return
        except Rejected as r:
            self.rejected[r.reason] += 1
            log.warning("rejected %s: %s (rejected so far: %d)", item.topic[:80], r,
                        sum(self.rejected.values()))
            reason = r.reason
            try:
                self._with_db(lambda: store.count_rejected(self.db, reason))
            except Stopped:
                return
        except Exception:  # noqa: BLE001 - nothing a peer sends may stop the service
            log.exception("internal error on %s; message dropped", item.topic[:80])
            self.rejected["internal_error"] += 1
        self._ack(item)
        if done:
            log.info("%s", done)

    def _price(self, upd: contract.Update, item: Incoming) -> str | None:
        """Returns a summary, or None when the message must not be acknowledged (the broker
        delivers it again and the inbox recognises it)."""
        via = "retained" if item.retain else "live"
        applied = self._with_db(lambda: store.apply_update(
            self.db, upd, self.products, via=via, client_id=self.settings.client_id,
            mid=item.mid if item.qos else None, dup=item.dup, retained=item.retain))
        self.applied[applied.action] += 1
        if applied.unknown:
            log.warning("basket %d: unknown product code(s) %s priced 0", upd.basket,
                        ",".join(applied.unknown))
        summary = "basket %d: %s cart %s -> total %d" % (upd.basket, applied.action, upd.cart,
                                                         applied.total)
        if not applied.publish:
            return summary + " (already sent)"
        if not self._publish(contract.status_topic(upd.basket),
                             contract.total_payload(upd.basket, applied.total)):
            return None
        self._with_db(lambda: store.mark_total_sent(self.db, upd.basket, applied.digest))
        return summary

    def _publish(self, topic: str, payload: bytes) -> bool:
        info = self.client.publish(topic, payload, qos=1)
        for _ in range(30):
            if self.stop.is_set():
                return False
            try:
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError) as e:
                log.warning("total for %s not sent (%s); it is sent again on redelivery", topic, e)
                return False
            if info.is_published():
                return True
        log.warning("total for %s not acknowledged in 30 s", topic)
        return False

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
