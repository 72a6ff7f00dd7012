"""What the service and the command line do to the database: apply an update exactly once,
record availability, open/close sessions, write receipts, list carts and receipts."""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from basket_service import catalog, contract
from basket_service.catalog import Priced, Product
from basket_service.contract import Update
from basket_service.db import Database, Row, Tx, now

log = logging.getLogger("basket_service")
T = TypeVar("T")


class SessionError(RuntimeError):
    """A session command does not fit the basket's state (e.g. start on a basket in use)."""


@dataclass(frozen=True)
class Applied:
    """What applying one update did. `publish` is True when the basket's total still has to be
    sent (a new state, or a state whose total was never confirmed as sent)."""

    action: str  # new | repeat | restored | duplicate | stale (a sweep's older snapshot)
    basket: int
    digest: str
    total: int
    unknown: list[str]
    publish: bool
    session: int | None = None  # the basket's session when it was applied


@dataclass(frozen=True)
class Loaded:
    """What load_products did: codes new to the database, codes already there, codes gone."""

    added: int
    updated: int
    removed: int


PRODUCT_COLUMNS = "code, name, price, discount_percent, stock, category, image_url"


def load_products(db: Database, products: Mapping[str, Product], *,
                  reset_stock: bool = False) -> Loaded:
    """Brings the database's catalogue to `products` in one transaction. A code new to the
    database is inserted with the file's stock (0 when the file gives none) and sales 0; a code
    already there takes name, price, discount, category and image_url from the file but keeps
    its stock and sales (the database owns them once imported; `serve` loads the catalogue at
    every start), unless `reset_stock` and the file gives a stock: then stock is the file's.
    Codes not in `products` are deleted."""
    stamp = now()
    with db.tx() as t:
        before = {str(r[0]) for r in t.all("SELECT code FROM products")}
        gone = sorted(before - set(products))
        for i in range(0, len(gone), 500):
            chunk = gone[i:i + 500]
            t.run("DELETE FROM products WHERE code IN (" + ",".join("?" * len(chunk)) + ")",
                  chunk)
        insert = ("INSERT INTO products (code, name, price, discount_percent, stock, sales,"
                  " category, image_url, loaded_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)"
                  " ON CONFLICT (code) DO UPDATE SET name = excluded.name,"
                  " price = excluded.price, discount_percent = excluded.discount_percent,"
                  " category = excluded.category, image_url = excluded.image_url,"
                  " loaded_at = excluded.loaded_at")
        keep: list[tuple[object, ...]] = []
        reset: list[tuple[object, ...]] = []
        for p in products.values():
            row = (p.code, p.name, p.price, p.discount_percent,
                   0 if p.stock is None else p.stock, p.category, p.image_url, stamp)
            (reset if reset_stock and p.stock is not None else keep).append(row)
        t.many(insert, keep)
        t.many(insert + ", stock = excluded.stock", reset)
    added = sum(1 for c in products if c not in before)
    return Loaded(added, len(products) - added, len(gone))


def read_products(t: Tx) -> dict[str, Product]:
    return catalog.from_rows(t.all("SELECT " + PRODUCT_COLUMNS + " FROM products"))


def stock_levels(db: Database, below: int = 5, limit: int = 500) -> list[dict[str, object]]:
    """The products whose stock is `below` or less (negative: sold while out of stock),
    lowest first, at most `limit` of them."""
    with db.read() as t:
        rows = t.all("SELECT code, name, stock, sales, category FROM products WHERE stock <= ?"
                     " ORDER BY stock, code LIMIT ?", (below, limit))
    return [{"code": c, "name": n, "stock": int(st), "sales": int(sa), "category": cat}
            for c, n, st, sa, cat in rows]


def stock_count(db: Database, below: int = 5) -> int:
    """How many products stock_levels(db, below) would list without a limit."""
    with db.read() as t:
        row = t.one("SELECT count(*) FROM products WHERE stock <= ?", (below,))
    return int(row[0]) if row else 0


def apply_update(db: Database, upd: Update, products: Mapping[str, Product], *, via: str,
                 client_id: str = "", mid: int | None = None, dup: bool = False,
                 retained: bool = False, since: str | None = None) -> Applied:
    """Applies one accepted update in one transaction, so each update is priced once:
    - a redelivery (MQTT DUP) of a message this client already committed is a duplicate;
    - a cart equal to the basket's current cart adds nothing to the history; its total is
      sent again when it was never confirmed, or when the update is live (`retained` False:
      the basket re-publishes because it saw no total for its cart);
    - a retained cart already seen in this session restores it as current (a member of a
      share group that comes back late may have applied an older update in between);
    - `since` (a sweep of the broker's retained carts, read from that time on): nothing is
      done when the basket's cart changed after it (the sweep's copy may be older)."""
    with db.tx() as t:
        return apply_update_tx(t, upd, products, via=via, client_id=client_id, mid=mid, dup=dup,
                               retained=retained, since=since)


def apply_update_tx(t: Tx, upd: Update, products: Mapping[str, Product], *, via: str,
                    client_id: str = "", mid: int | None = None, dup: bool = False,
                    retained: bool = False, since: str | None = None) -> Applied:
    """apply_update inside a transaction the caller holds (the service applies a whole batch
    of updates in one); updates of one basket must come in the order they were received."""
    digest = upd.digest
    _, session, _, cur_digest, cur_total, total_sent = t.lock_basket(upd.basket)
    if since is not None and cur_digest != digest:
        row = t.one("SELECT updated_at FROM baskets WHERE id = ?", (upd.basket,))
        if row and row[0] and row[0] >= since:
            return Applied("stale", upd.basket, cur_digest or "", int(cur_total), [], False,
                           session)
    if dup and mid is not None:
        seen = t.one("SELECT digest FROM inbox WHERE client_id = ? AND mid = ?",
                     (client_id, mid))
        if seen and seen[0] == digest:
            publish = cur_digest == digest and not total_sent
            return Applied("duplicate", upd.basket, digest, int(cur_total), [], publish,
                           session)
    if mid is not None:
        t.run("INSERT INTO inbox (client_id, mid, digest) VALUES (?, ?, ?) ON CONFLICT"
              " (client_id, mid) DO UPDATE SET digest = excluded.digest",
              (client_id, mid, digest))
    if cur_digest == digest:
        return Applied("repeat", upd.basket, digest, int(cur_total), [],
                       not total_sent or not retained, session)
    priced = catalog.price(upd.items, products)
    action = "new"
    if retained:
        same_session = "session_id IS NULL" if session is None else "session_id = ?"
        params = (upd.basket, digest) if session is None else (upd.basket, digest, session)
        if t.one("SELECT 1 FROM history WHERE basket = ? AND digest = ? AND "
                 + same_session + " LIMIT 1", params):
            action = "restored"
    stamp = now()
    if action == "new":
        t.run("INSERT INTO history (basket, session_id, received_at, cart, digest, total,"
              " unknown, via) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
              (upd.basket, session, stamp, upd.cart, digest, priced.total,
               ",".join(priced.unknown), via))
    t.run("UPDATE baskets SET cart = ?, cart_digest = ?, total = ?, total_sent = 0,"
          " updated_at = ? WHERE id = ?", (upd.cart, digest, priced.total, stamp, upd.basket))
    return Applied(action, upd.basket, digest, priced.total, priced.unknown, True, session)


def mark_total_sent(db: Database, basket: int, digest: str,
                    session: int | None = None) -> None:
    with db.tx() as t:
        mark_total_sent_tx(t, basket, digest, session)


def mark_total_sent_tx(t: Tx, basket: int, digest: str, session: int | None) -> None:
    """The broker has the total for this cart; a no-op once the basket's cart has moved on or
    a session started or ended since (start wants the first update's total sent again)."""
    same = "session_id IS NULL" if session is None else "session_id = ?"
    t.run("UPDATE baskets SET total_sent = 1 WHERE id = ? AND cart_digest = ? AND " + same,
          (basket, digest) if session is None else (basket, digest, session))


def set_availability(db: Database, basket: int, online: bool) -> None:
    with db.tx() as t:
        set_availability_tx(t, basket, online)


def set_availability_tx(t: Tx, basket: int, online: bool) -> None:
    t.lock_basket(basket)
    row = t.one("SELECT online FROM baskets WHERE id = ?", (basket,))
    stamp = now()
    old = None if row is None or row[0] is None else ("online" if row[0] else "offline")
    new = "online" if online else "offline"
    if old != new:  # the fleet's history of state changes (docs/fleet.md)
        t.run("INSERT INTO health_events (basket, at, what, old, new) VALUES (?, ?, ?, ?, ?)",
              (basket, stamp, "online", old, new))
    t.run("UPDATE baskets SET online = ?, availability_at = ? WHERE id = ?",
          (int(online), stamp, basket))


def count_rejected(db: Database, reason: str) -> None:
    with db.tx() as t:
        count_rejected_tx(t, reason)


def count_rejected_tx(t: Tx, reason: str, n: int = 1) -> None:
    t.bump("rejected", n)
    t.bump("rejected." + reason, n)


def counters(db: Database) -> dict[str, int]:
    with db.tx() as t:
        return {str(n): int(v) for n, v in t.all("SELECT name, value FROM counters")}


def start_session(db: Database, basket: int) -> int:
    with db.tx() as t:
        return start_session_tx(t, basket)


def start_session_tx(t: Tx, basket: int) -> int:
    """start_session inside a transaction the caller holds (a shopper's pairing starts the
    session in the transaction that binds the phone)."""
    in_use, session, *_ = t.lock_basket(basket)
    if in_use:
        raise SessionError("basket %d is in use (session %d); end or check it out first"
                           % (basket, session))
    row = t.one("INSERT INTO sessions (basket, started_at) VALUES (?, ?) RETURNING id",
                (basket, now()))
    assert row is not None
    # total_sent = 0: the basket's first update of the session gets a total even if the
    # cart equals the last one seen.
    t.run("UPDATE baskets SET in_use = 1, session_id = ?, total_sent = 0 WHERE id = ?",
          (row[0], basket))
    return int(row[0])


def _close(t: Tx, basket: int, outcome: str) -> int:
    in_use, session, *_ = t.lock_basket(basket)
    if not in_use:
        raise SessionError("basket %d is not in use" % basket)
    t.run("UPDATE sessions SET ended_at = ?, outcome = ? WHERE id = ?", (now(), outcome, session))
    t.run("UPDATE baskets SET in_use = 0, session_id = NULL WHERE id = ?", (basket,))
    return int(session)


def end_session(db: Database, basket: int, outcome: str = "cancelled") -> int:
    with db.tx() as t:
        return _close(t, basket, outcome)


def end_session_tx(t: Tx, basket: int, outcome: str = "cancelled") -> int:
    """end_session inside a transaction the caller holds."""
    return _close(t, basket, outcome)


@dataclass(frozen=True)
class Receipt:
    id: int
    basket: int
    session: int | None
    created_at: str
    priced: Priced
    payment_id: str | None = None  # the payment that paid it (None: a staff checkout)
    key: str = ""  # the receipt's link key (receipt_by_key); "" for receipts written before


@dataclass(frozen=True)
class Held:
    """What the database says about a basket before a checkout."""

    in_use: bool
    session: int | None
    digest: str | None  # of its stored cart (None: no cart yet)
    online: bool | None  # None: it never reported


def held(db: Database, basket: int) -> Held:
    with db.read() as t:
        row = t.one("SELECT in_use, session_id, cart_digest, online FROM baskets WHERE id = ?",
                    (basket,))
    if row is None:
        return Held(False, None, None, None)
    return Held(bool(row[0]), row[1], row[2], None if row[3] is None else bool(row[3]))


def checkout(db: Database, basket: int, digest: str | None = None,
             session: int | None = None, payment_id: str | None = None) -> Receipt:
    """Prices the basket's current cart from the database's catalogue, writes the receipt,
    takes each known line's count off the product's stock and adds it to its sales (an
    out-of-stock product still sells: its stock goes negative) and frees the basket, all in
    one transaction. `digest` and `session` (sessions.checkout passes what it confirmed with
    the broker): refused (SessionError, nothing changed) unless the stored cart is still that
    cart, in that session. A stored cart that cannot be read (a bad row) is refused the same
    way. `payment_id`: when a receipt of that payment exists already, that receipt is returned
    and nothing changes (a retried checkout, a second "paid": stock moves once)."""
    with db.tx() as t:
        in_use, current, cart, stored, *_ = t.lock_basket(basket)
        if payment_id is not None:  # after the lock: a concurrent checkout has committed
            paid = t.one("SELECT id FROM receipts WHERE payment_id = ?", (payment_id,))
            if paid is not None:
                found = _receipt_by(t, "id", paid[0])
                assert found is not None
                return found
        if not in_use:
            raise SessionError("basket %d is not in use" % basket)
        if session is not None and current != session:
            raise SessionError("basket %d: session %s ended while checking out; nothing billed"
                               % (basket, session))
        if digest is not None and stored != digest:
            raise SessionError("basket %d: cannot confirm the cart: it changed during checkout;"
                               " try again in a moment" % basket)
        try:
            items = cart_of(cart)
        except ValueError as e:
            report_bad_row("baskets", basket, cart, e)
            raise SessionError("basket %d: cannot check out: its stored cart is unreadable (%s);"
                               " the basket's next update replaces it" % (basket, e))
        if digest is not None and contract.cart_digest(contract.encode_cart(items)) != digest:
            report_bad_row("baskets", basket, cart, ValueError("cart and digest differ"))
            raise SessionError("basket %d: cannot check out: its stored cart does not match its"
                               " digest; the basket's next update replaces it" % basket)
        session = _close(t, basket, "checkout")
        priced = catalog.price(items, _products_for(t, sorted(items)))
        stamp = now()
        key = secrets.token_urlsafe(16)
        row = t.one("INSERT INTO receipts (basket, session_id, created_at, total, unknown,"
                    " payment_id, receipt_key) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (basket, session, stamp, priced.total, ",".join(priced.unknown), payment_id,
                     key))
        assert row is not None
        for n, ln in enumerate(priced.lines, start=1):
            t.run("INSERT INTO receipt_lines (receipt_id, line_no, code, name, count, unit_price,"
                  " amount, known) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  (row[0], n, ln.code, ln.name, ln.count, ln.unit_price, ln.amount, int(ln.known)))
            if ln.known and ln.count:
                t.run("UPDATE products SET stock = stock - ?, sales = sales + ? WHERE code = ?",
                      (ln.count, ln.count, ln.code))
        return Receipt(int(row[0]), basket, session, stamp, priced, payment_id, key)


KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")  # secrets.token_urlsafe(16) gives 22


RECEIPT_COLUMNS = "id, basket, session_id, created_at, total, unknown, payment_id, receipt_key"


def _receipt_by(t: Tx, column: str, value: object) -> Receipt | None:
    """The stored receipt whose `column` (id or payment_id or receipt_key) is `value`."""
    head = t.one("SELECT " + RECEIPT_COLUMNS + " FROM receipts WHERE " + column + " = ?",
                 (value,))
    return None if head is None else _stored_receipt(t, head)


def _stored_receipt(t: Tx, head: Row) -> Receipt:
    """A receipts row (RECEIPT_COLUMNS) and its lines, as checkout returned it (its lines as
    billed: no shelf price or picture)."""
    rid, basket, session, created, total, _, payment, key = head
    lines = [catalog.Line(c, n, int(k), int(u), bool(kn)) for c, n, k, u, _, kn in t.all(
        "SELECT code, name, count, unit_price, amount, known FROM receipt_lines"
        " WHERE receipt_id = ? ORDER BY line_no", (rid,))]
    return Receipt(int(rid), int(basket), session, created, Priced(lines, int(total)), payment,
                   key or "")


def receipt_by_key(db: Database, key: object) -> dict[str, object] | None:
    """The receipt with this link key (receipt_doc's shape); None for an unknown key or one
    that is not a short url-safe string."""
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        return None
    with db.read() as t:
        r = _receipt_by(t, "receipt_key", key)
    return None if r is None else receipt_doc(r)


def receipt_by_payment(db: Database, payment_id: object) -> dict[str, object] | None:
    """The receipt that payment paid (receipt_doc's shape); None when there is none."""
    if not isinstance(payment_id, str) or not payment_id or len(payment_id) > 200:
        return None
    with db.read() as t:
        r = _receipt_by(t, "payment_id", payment_id)
    return None if r is None else receipt_doc(r)


# --- bad rows: a row the code cannot read is reported (one warning per bad value) and left
# out of listings, so one broken row never breaks the dashboard or the command line.
_reported: dict[tuple[str, object], str] = {}


def report_bad_row(table: str, key: object, value: object, error: BaseException) -> None:
    """Logs a warning for a row the code cannot read, once per row and fault (the dashboard
    reads the board four times a second)."""
    fault = str(error)
    if _reported.get((table, key)) == fault:
        return
    if len(_reported) > 1000:
        _reported.clear()
    _reported[(table, key)] = fault
    log.warning("skipping a bad row in %s (%s): %s: %s", table, key, fault, repr(value)[:120])


def cart_of(text: object) -> dict[str, int]:
    """A stored cart (canonical JSON) as a dict; ValueError when it is not one."""
    if not isinstance(text, str):
        raise ValueError("cart is not text")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("cart is not JSON")
    if not isinstance(doc, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in doc.items()):
        raise ValueError("cart is not an object of counts")
    return doc


def _readable(rows: Iterable[Row], table: str, convert: Callable[[Row], T]) -> list[T]:
    out: list[T] = []
    for r in rows:
        try:
            out.append(convert(r))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            report_bad_row(table, r[0], r, e)
    return out


def carts(db: Database) -> list[dict[str, object]]:
    with db.read() as t:
        rows = t.all("SELECT id, in_use, session_id, online, cart, total, updated_at"
                     " FROM baskets ORDER BY id")
    return _readable(rows, "baskets", lambda r: {
        "basket": r[0], "in_use": bool(r[1]), "session": r[2],
        "online": None if r[3] is None else bool(r[3]), "cart": cart_of(r[4]),
        "total": int(r[5]), "updated_at": r[6]})


def receipts(db: Database, limit: int = 20, since: str | None = None,
             until: str | None = None) -> list[dict[str, object]]:
    """The newest receipts first; `since`/`until` (ISO 8601 UTC, as stored) bound created_at."""
    where, params = _created_between(since, until)
    with db.read() as t:
        heads = t.all("SELECT " + RECEIPT_COLUMNS + " FROM receipts" + where
                      + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return _readable(heads, "receipts", lambda r: receipt_doc(_stored_receipt(t, r)))


def receipt_totals(db: Database, since: str | None = None,
                   until: str | None = None) -> tuple[int, int]:
    """(number of receipts, sum of their totals) created in [since, until)."""
    where, params = _created_between(since, until)
    with db.read() as t:
        row = t.one("SELECT count(*), coalesce(sum(total), 0) FROM receipts" + where, params)
    assert row is not None
    return int(row[0]), int(row[1])


def _created_between(since: str | None, until: str | None) -> tuple[str, tuple[str, ...]]:
    conds, params = [], []
    if since is not None:
        conds.append("created_at >= ?")
        params.append(since)
    if until is not None:
        conds.append("created_at < ?")
        params.append(until)
    return (" WHERE " + " AND ".join(conds) if conds else ""), tuple(params)


def receipt_doc(r: Receipt) -> dict[str, object]:
    """A receipt as the API and the command line show it."""
    return {"receipt": r.id, "basket": r.basket, "session": r.session, "created_at": r.created_at,
            "total": r.priced.total, "unknown": list(r.priced.unknown),
            "payment_id": r.payment_id, "key": r.key,
            "lines": [{"code": ln.code, "name": ln.name, "count": ln.count,
                       "unit_price": ln.unit_price, "amount": ln.amount, "known": ln.known}
                      for ln in r.priced.lines]}


def board(db: Database) -> tuple[list[dict[str, object]], int]:
    """What the dashboard shows: every basket the service has heard of (or that had a session),
    its state and its cart priced line by line from the database's catalogue, plus the id of
    the newest receipt (0 when none). One read transaction, so it is consistent."""
    with db.read() as t:
        docs = _basket_docs(t, "")
        newest = t.one("SELECT coalesce(max(id), 0) FROM receipts")
    return docs, int(newest[0]) if newest else 0


def basket_doc(db: Database, basket: int) -> dict[str, object] | None:
    """One basket as board() shows it, plus `digest` (its stored cart's), or None when the
    database has no (readable) row for it: what a shopper's phone shows of its cart."""
    with db.read() as t:
        docs = _basket_docs(t, " WHERE b.id = ?", (basket,))
    return docs[0] if docs else None


def _basket_docs(t: Tx, where: str, params: tuple[object, ...] = ()) -> list[dict[str, object]]:
    every = t.all("SELECT b.id, b.in_use, b.session_id, b.online, b.availability_at,"
                  " b.cart, b.updated_at, s.started_at, b.cart_digest FROM baskets b"
                  " LEFT JOIN sessions s ON s.id = b.session_id" + where + " ORDER BY b.id",
                  params)
    good = _readable(every, "baskets", lambda r: (r, cart_of(r[5])))
    rows = [r for r, _ in good]
    carts = [c for _, c in good]
    products = _products_for(t, sorted({c for cart in carts for c in cart}))
    out: list[dict[str, object]] = []
    for (basket, in_use, session, online, avail_at, _, updated, started, digest), cart in zip(
            rows, carts):
        priced = catalog.price(cart, products)
        stamps = [s for s in (avail_at, updated, started) if s]
        out.append({
            "basket": basket,
            "online": None if online is None else bool(online),
            "state": "shopping" if in_use else "idle",
            "session": session,
            "session_started_at": started,
            "lines": [{"code": ln.code, "name": ln.name, "count": ln.count,
                       "unit_price": ln.unit_price, "amount": ln.amount, "known": ln.known,
                       "price": ln.price, "discount_percent": ln.discount_percent,
                       "image_url": ln.image_url} for ln in priced.lines],
            "items": sum(ln.count for ln in priced.lines),
            "total": priced.total,
            "unknown": list(priced.unknown),
            "cart_updated_at": updated,
            "availability_at": avail_at,
            "changed_at": max(stamps) if stamps else None,
            "digest": digest,
        })
    return out


def _products_for(t: Tx, codes: list[str]) -> dict[str, Product]:
    rows: list[Row] = []
    for i in range(0, len(codes), 500):
        chunk = codes[i:i + 500]
        rows += t.all("SELECT " + PRODUCT_COLUMNS + " FROM products WHERE code IN ("
                      + ",".join("?" * len(chunk)) + ")", chunk)
    return catalog.from_rows(rows)


def history(db: Database, basket: int | None = None) -> list[dict[str, object]]:
    where, params = ("WHERE basket = ?", (basket,)) if basket is not None else ("", ())
    with db.read() as t:
        rows = t.all("SELECT id, basket, session_id, received_at, cart, total, unknown, via"
                     " FROM history " + where + " ORDER BY id", params)
    return _readable(rows, "history", lambda r: {
        "id": r[0], "basket": r[1], "session": r[2], "received_at": r[3], "cart": cart_of(r[4]),
        "total": int(r[5]), "unknown": r[6], "via": r[7]})
