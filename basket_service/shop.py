"""The shopper's self-service flow (docs/shopper.md): pairing a phone with the PIN on an idle
basket's display, the phone's view of its cart, checkout through a payment provider, cancel
of an empty cart, and the sweep that keeps each basket's display and its abandoned session in
order. The rules of pairing are pairing.py's (pure); here they run inside the basket's
database transaction, so several requests (and the sweep) never interleave on one basket.

The `pairing` table holds one row per basket: `state` (pairing.PairState as JSON) and `display`
(JSON: `sent` the pin command last sent and `avail` the basket's availability_at then;
`thanks_until` while the display says thank you; `busy` the session seen open, so the PIN
changes after every session; `session` the one a phone paired for; `last_token` / `last`: the
phone of the session that just ended and how it ended, so that phone still finds its receipt).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from basket_service import contract, pairing, payments, sessions, store
from basket_service.config import Settings
from basket_service.db import Database, Tx
from basket_service.mqttlink import LinkError, publish_once

log = logging.getLogger("basket_service.shop")

THANKS_S = 8.0  # the display says thank you this long after a shopper's checkout
EMPTY = contract.cart_digest("{}")


class Refusal(store.SessionError):
    """A shopper's request that does not fit the basket's state; `reason` names it for the
    page (busy, offline, empty_cart, unknown_items, not_empty, declined...), `status` is the
    HTTP status the page gets."""

    def __init__(self, basket: int, reason: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.basket = basket
        self.reason = reason
        self.status = status

    def doc(self) -> dict[str, Any]:
        return {"refused": self.reason, "basket": self.basket, "detail": str(self)}


@dataclass
class Row:
    """One basket's pairing row, read inside a transaction."""

    state: pairing.PairState
    display: dict[str, Any] = field(default_factory=dict)
    stored: bool = True


def _read(t: Tx, basket: int) -> Row:
    r = t.one("SELECT state, display FROM pairing WHERE basket = ?", (basket,))
    return _parse(basket, r[0] if r else None, r[1] if r else None)


def _parse(basket: int, state: str | None, display: str | None) -> Row:
    if state is None:
        return Row(pairing.fresh(basket), {}, stored=False)
    try:
        st = pairing.PairState.from_dict(json.loads(state))
        doc = json.loads(display or "{}")
        if not isinstance(doc, dict) or st.basket != basket:
            raise ValueError("not this basket's pairing")
    except (ValueError, TypeError, RecursionError) as e:
        # A broken row costs that basket its pairing, never the service: a new PIN.
        store.report_bad_row("pairing", basket, state, e)
        return Row(pairing.fresh(basket), {}, stored=True)
    return Row(st, doc)


def _write(t: Tx, row: Row) -> None:
    state = json.dumps(row.state.to_dict(), separators=(",", ":"))
    display = json.dumps(row.display, separators=(",", ":"))
    if row.stored:
        t.run("UPDATE pairing SET state = ?, display = ? WHERE basket = ?",
              (state, display, row.state.basket))
    else:
        t.run("INSERT INTO pairing (basket, state, display) VALUES (?, ?, ?)",
              (row.state.basket, state, display))
        row.stored = True


def _ended(row: Row, outcome: str, receipt_key: str | None = None) -> None:
    """The basket's session is over: the phone is unbound (it may still see how it ended) and
    a new PIN is drawn."""
    last_token = row.state.token_hash or row.display.get("last_token")
    row.state = pairing.session_ended(row.state)
    row.display.pop("busy", None)
    row.display.pop("session", None)
    row.display["last_token"] = last_token
    row.display["last"] = {"outcome": outcome, "receipt": receipt_key}


def _token_is(token: object, token_hash: object) -> bool:
    try:
        pairing.authorize(pairing.PairState(1, "", token_hash if isinstance(token_hash, str)
                                            else None), token)
    except pairing.NotPaired:
        return False
    return True


def _local_hhmm(iso_utc: str) -> str:
    """pairing's "2027-01-15T08:05:10Z" as the store's clock shows it: "08:05" (rounded up,
    so the basket never opens before the time on its display)."""
    t = datetime.strptime(iso_utc, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return (t.astimezone() + timedelta(seconds=59)).strftime("%H:%M")


def display_payload(basket: int, row: Row, now_s: float, policy: pairing.Policy) -> bytes:
    """The pin command an idle basket's display should have now."""
    shown = pairing.shown(row.state, now_s, policy)
    if "locked_until" in shown:
        shown = {"locked_until": _local_hhmm(shown["locked_until"])}
    thanks = float(row.display.get("thanks_until") or 0) > now_s
    return contract.pin_payload(basket, shown, thanks)


@dataclass(frozen=True)
class Rules:
    policy: pairing.Policy = pairing.Policy()
    idle_s: float = 30 * 60.0  # SESSION_IDLE_MIN
    thanks_s: float = THANKS_S


class Shop:
    """The shopper's operations for the web pages, on connections of their own (each may wait
    for the broker). `provider` is the payment provider (PAYMENT_PROVIDER); the payment each
    basket's open checkout uses is remembered here (in memory: after a restart the phone
    begins again, which gives the same amount a new code)."""

    def __init__(self, settings: Settings, provider: payments.PaymentProvider,
                 rules: Rules | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.provider = provider
        self.rules = rules or Rules(idle_s=settings.session_idle_min * 60.0)
        self.clock = clock
        # The providers keep their ledger in memory: every call to one holds `lock`; a
        # basket's checkout holds that basket's lock, so two presses of pay never overlap.
        self.lock = threading.RLock()
        self.open: dict[int, str] = {}  # basket -> id of its pending or last payment
        self._checking: dict[int, threading.Lock] = {}

    def _basket_lock(self, basket: int) -> threading.Lock:
        with self.lock:
            return self._checking.setdefault(basket, threading.Lock())

    def _db(self) -> Database:
        return Database(self.settings)

    def _notify(self, basket: int, payload: bytes) -> None:
        publish_once(self.settings, [(contract.status_topic(basket), payload)])

    # -- pairing ------------------------------------------------------------------------------
    def pair(self, basket: int, pin: object) -> str:
        """Pairs the phone that typed the PIN shown on the basket and starts its session:
        the phone's token. pairing.Refused (wrong PIN, locked, already paired), Refusal (busy:
        a session staff started; offline), UnknownBasket; LinkError: the basket could not be
        told, nothing changed (the PIN stays)."""
        db = self._db()
        try:
            sessions.check_basket(self.settings, db, basket)
            refused: Exception | None = None
            token = ""
            with db.tx() as t:
                in_use, *_ = t.lock_basket(basket)
                online = t.one("SELECT online FROM baskets WHERE id = ?", (basket,))
                row = _read(t, basket)
                before = Row(row.state, dict(row.display))
                if in_use and not row.state.paired:
                    refused = Refusal(basket, "busy", "basket %d is in use (staff started a "
                                      "session); ask staff" % basket)
                elif not row.state.paired and not (online and online[0]):
                    refused = Refusal(basket, "offline", "basket %d is offline; ask staff"
                                      % basket, 503)
                else:
                    try:
                        row.state, token = pairing.pair(row.state, pin, self.clock(),
                                                        self.rules.policy)
                    except pairing.Refused as e:
                        if e.state is not None:
                            row.state = e.state
                            _write(t, row)
                        refused = e
                    else:
                        sid = store.start_session_tx(t, basket)
                        row.display.update(session=sid, busy=sid, thanks_until=0)
                        _write(t, row)
            if refused is not None:
                raise refused
            try:
                self._notify(basket, contract.START)
            except LinkError:
                with db.tx() as t:
                    t.lock_basket(basket)
                    store.end_session_tx(t, basket, "failed")
                    before.stored = True
                    _write(t, before)
                raise
            log.info("basket %d: paired with a phone (session %d)", basket, sid)
            return token
        finally:
            db.close()

    def _authorized(self, db: Database, basket: int, token: object) -> Row:
        with db.read() as t:
            row = _read(t, basket)
        pairing.authorize(row.state, token)
        return row

    # -- the phone's view -----------------------------------------------------------------------
    def view(self, db: Database, basket: int, token: object) -> dict[str, Any]:
        """What the phone shows: its cart priced line by line while paired; else whether the
        basket can be paired (or is locked, or taken), or how the phone's session ended."""
        with db.read() as t:
            row = _read(t, basket)
        doc: dict[str, Any] = {"basket": basket}
        try:
            pairing.authorize(row.state, token)
        except pairing.NotPaired:
            if token and _token_is(token, row.display.get("last_token")):
                return doc | {"paired": False, "ended": row.display.get("last")}
            shown = pairing.shown(row.state, self.clock(), self.rules.policy)
            state = "taken" if shown.get("paired") else (
                "locked" if "locked_until" in shown else "free")
            return doc | {"paired": False, "pairing": state,
                          "locked_until": shown.get("locked_until")}
        cart = store.basket_doc(db, basket) or {"lines": [], "items": 0, "total": 0,
                                               "unknown": []}
        doc.update(paired=True, lines=cart["lines"], items=cart["items"], total=cart["total"],
                   unknown=cart["unknown"], online=cart.get("online"),
                   session=row.display.get("session"))
        pay = self._payment(basket)
        if pay is not None and pay.checkout.session == doc["session"]:
            doc["payment"] = pay.doc()
        return doc

    def _payment(self, basket: int) -> payments.Payment | None:
        with self.lock:
            pid = self.open.get(basket)
            if pid is None:
                return None
            try:
                return self.provider.status(pid)
            except payments.UnknownPayment:
                return None

    # -- checkout and cancel -------------------------------------------------------------------
    def checkout(self, basket: int, token: object) -> dict[str, Any]:
        """The phone pays for the cart the basket holds now (confirmed with the broker, as a
        staff checkout is): {"payment": ...} and, once paid, {"receipt": ...}. Refusal: an
        empty cart, unknown items, a declined payment; sessions.Unconfirmed: the cart is not
        priced yet."""
        with self._basket_lock(basket):
            return self._checkout(basket, token)

    def _checkout(self, basket: int, token: object) -> dict[str, Any]:
        db = self._db()
        try:
            row = self._authorized(db, basket, token)
            session = row.display.get("session")
            held, digest = sessions.confirmed_cart(self.settings, db, basket)
            cart: dict[str, Any] | None = store.basket_doc(db, basket)
            if cart is None or held.session != session or cart.get("digest") != digest:
                raise sessions.Unconfirmed("basket %d: the cart changed; try again in a moment"
                                           % basket)
            if cart["unknown"]:
                raise Refusal(basket, "unknown_items", "basket %d holds %d item(s) the "
                              "catalogue does not know: ask staff" % (basket,
                                                                      len(cart["unknown"])))
            if not cart["items"] or cart["total"] <= 0:
                raise Refusal(basket, "empty_cart", "basket %d: an empty cart cannot be checked"
                              " out" % basket)
            with self.lock:
                pay = self.provider.begin(payments.Checkout(basket, int(held.session or 0), digest,
                                                            int(cart["total"])))
                self.open[basket] = pay.id
            out: dict[str, Any] = {"payment": pay.doc()}
            if pay.status == payments.PAID:
                out["receipt"] = self._finish(db, pay)
            elif pay.status == payments.DECLINED:
                raise Refusal(basket, "declined", "the payment was declined; try again or ask "
                              "staff", 402)
            return out
        finally:
            db.close()

    def confirm(self, code: str) -> dict[str, Any]:
        """Staff took the money for a counter checkout code (the dashboard): the receipt.
        Refused (nothing paid) when the basket's cart changed since the code was shown."""
        if not isinstance(self.provider, payments.CounterProvider):
            raise store.SessionError("checkout codes exist only with PAYMENT_PROVIDER=counter")
        wanted = payments.normal_code(code)
        with self.lock:
            pending = [p for p in self.provider.pending() if p.code == wanted]
        db = self._db()
        try:
            if pending:
                c = pending[0].checkout
                held = store.held(db, c.basket)
                if held.session != c.session or held.digest != c.digest:
                    with self.lock:
                        self.provider.cancel(pending[0].id)
                    raise store.SessionError(
                        "checkout code %s: basket %d's cart changed since it was shown; "
                        "nothing was paid (the shopper presses pay again for a new code)"
                        % (wanted, c.basket))
            with self.lock:
                pay = self.provider.confirm(code)
            with self._basket_lock(pay.checkout.basket):
                return self._finish(db, pay)
        finally:
            db.close()

    def pending(self) -> list[dict[str, object]]:
        """The counter's checkouts waiting for staff, oldest first."""
        if not isinstance(self.provider, payments.CounterProvider):
            return []
        with self.lock:
            return [p.doc() for p in self.provider.pending()]

    def _finish(self, db: Database, pay: payments.Payment) -> dict[str, Any]:
        """A paid payment becomes the receipt (once: store.checkout keys it by the payment),
        the session ends, the display says thank you, the phone finds its receipt."""
        c = pay.checkout
        done = store.receipt_by_payment(db, pay.id)
        if done is not None:
            return done
        receipt = store.checkout(db, c.basket, c.digest, c.session, payment_id=pay.id)
        with db.tx() as t:
            t.lock_basket(c.basket)
            row = _read(t, c.basket)
            _ended(row, "paid", receipt.key)
            row.display["thanks_until"] = self.clock() + self.rules.thanks_s
            _write(t, row)
        log.info("basket %d: receipt %d paid by phone (%s %s)", c.basket, receipt.id,
                 pay.provider, pay.id)
        doc = store.receipt_doc(receipt)
        try:
            self._notify(c.basket, contract.END)
        except LinkError as e:
            log.warning("basket %d: receipt %d written, but the basket was not told: %s",
                        c.basket, receipt.id, e)
        return doc

    def cancel(self, basket: int, token: object) -> dict[str, Any]:
        """The phone ends its session, allowed only with an empty cart (the original's rule
        against leaving with goods): Refusal not_empty otherwise."""
        db = self._db()
        try:
            self._authorized(db, basket, token)
            held, digest = sessions.confirmed_cart(self.settings, db, basket)
            if digest != EMPTY:
                raise Refusal(basket, "not_empty", "basket %d: cancel is only for an empty cart;"
                              " take the items out or check out" % basket)
            with db.tx() as t:
                t.lock_basket(basket)
                row = _read(t, basket)
                pairing.authorize(row.state, token)
                sid = store.end_session_tx(t, basket, "cancelled")
                _ended(row, "cancelled")
                _write(t, row)
            self._cancel_payment(basket)
            try:
                self._notify(basket, contract.END)
            except LinkError as e:
                raise sessions.NotNotified("session %d cancelled, but the basket was not told: "
                                           "%s" % (sid, e), sid)
            return {"basket": basket, "session": sid, "state": "idle"}
        finally:
            db.close()

    def _cancel_payment(self, basket: int) -> None:
        pay = self._payment(basket)
        if pay is not None and pay.status == payments.PENDING:
            with self.lock:
                self.provider.cancel(pay.id)

    # -- the sweep --------------------------------------------------------------------------------
    def sweep(self, db: Database) -> int:
        """One look at every basket (the web server runs it every second): a new PIN after any
        session ended; an empty session idle for SESSION_IDLE_MIN ended (`abandoned`); each
        online idle basket's display given its PIN (again when it came back online). Returns
        how many messages went out. LinkError: the broker is away; the next sweep retries."""
        now_s = self.clock()
        idle_before = idle_cutoff(self.rules.idle_s, now_s)
        with db.read() as t:
            rows = t.all("SELECT b.id, b.in_use, b.session_id, b.online, b.availability_at,"
                         " b.cart_digest, b.updated_at, s.started_at, p.state, p.display"
                         " FROM baskets b LEFT JOIN sessions s ON s.id = b.session_id"
                         " LEFT JOIN pairing p ON p.basket = b.id ORDER BY b.id")
        messages: list[tuple[int, bytes, str | None]] = []
        for (basket, in_use, session, online, avail, digest, updated, started, state,
             display) in rows:
            row = _parse(basket, state, display)
            if in_use:
                if digest in (None, EMPTY) and _untouched(idle_before, started, updated):
                    self._abandon(db, basket, session)
                elif row.display.get("busy") != session:
                    self._note_busy(db, basket, session)
                continue
            if not row.stored or row.state.paired or row.display.get("busy"):
                row = self._session_over(db, basket)
            payload = display_payload(basket, row, now_s, self.rules.policy)
            if online and (payload.decode() != row.display.get("sent")
                           or avail != row.display.get("avail")):
                messages.append((basket, payload, avail))
        if messages:
            publish_once(self.settings, [(contract.status_topic(b), p) for b, p, _ in messages])
            with db.tx() as t:
                for basket, payload, avail in messages:
                    t.lock_basket(basket)
                    row = _read(t, basket)
                    row.display.update(sent=payload.decode(), avail=avail)
                    _write(t, row)
        return len(messages)

    def _session_over(self, db: Database, basket: int) -> Row:
        """An idle basket whose row says paired or busy: its session ended some other way
        (staff's end or checkout, the command line): a new PIN. Or a basket new to pairing."""
        with db.tx() as t:
            in_use, *_ = t.lock_basket(basket)
            row = _read(t, basket)
            if not in_use and (row.state.paired or row.display.get("busy")):
                _ended(row, "ended")
            if not in_use or not row.stored:
                _write(t, row)
            return row

    def _note_busy(self, db: Database, basket: int, session: int) -> None:
        with db.tx() as t:
            t.lock_basket(basket)
            row = _read(t, basket)
            row.display["busy"] = session
            _write(t, row)

    def _abandon(self, db: Database, basket: int, session: int) -> None:
        with db.tx() as t:
            in_use, current, *_ = t.lock_basket(basket)
            if not in_use or current != session:
                return
            store.end_session_tx(t, basket, "abandoned")
            row = _read(t, basket)
            _ended(row, "abandoned")
            _write(t, row)
        self._cancel_payment(basket)
        log.info("basket %d: session %d ended: its cart stayed empty for %d min (abandoned)",
                 basket, session, self.rules.idle_s // 60)
        try:
            self._notify(basket, contract.END)
        except LinkError as e:
            log.warning("basket %d: abandoned session %d ended, but the basket was not told: %s",
                        basket, session, e)


def idle_cutoff(idle_s: float, now_s: float | None = None) -> str:
    """The stamp (as db.now() writes them: ISO 8601, UTC) a session's last change must be
    older than for it to have been left alone `idle_s` seconds."""
    t = time.time() if now_s is None else now_s
    return datetime.fromtimestamp(t - idle_s, timezone.utc).isoformat(timespec="milliseconds")


def _untouched(before: str, started: str | None, updated: str | None) -> bool:
    """No change to the session (its start, its cart) since `before`."""
    stamps = [s for s in (started, updated) if s]
    return bool(stamps) and max(stamps) < before


def abandoned(doc: dict[str, Any], before: str) -> bool:
    """A staff alert: a session with goods in its cart and no change since `before`
    (idle_cutoff of SESSION_IDLE_MIN)."""
    return (doc.get("state") == "shopping" and bool(doc.get("items"))
            and _untouched(before, doc.get("session_started_at"), doc.get("cart_updated_at")))
