"""Session operations shared by the command line and the dashboard: each changes the database
through store and then tells the basket over MQTT (`start` / `end` on basket/<n>/status)."""

from __future__ import annotations

from basket_service import contract, store
from basket_service.config import Settings
from basket_service.db import Database
from basket_service.mqttlink import LinkError, publish_once, read_retained


class NotNotified(LinkError):
    """The database change is done (session ended, receipt written) but the basket could not be
    told. `result` is what the operation returned: a session id or a store.Receipt."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result


def notify(settings: Settings, basket: int, payload: bytes) -> None:
    publish_once(settings, [(contract.status_topic(basket), payload)])


class UnknownBasket(store.SessionError):
    """The number is not one of the store's baskets (BASKETS, or else the database's)."""


def check_basket(settings: Settings, db: Database, basket: int) -> None:
    """The store's baskets: BASKETS when set, else those the database has heard of (a row in
    `baskets`: the basket came online, sent an update or had a session). UnknownBasket if not."""
    if settings.baskets is not None:
        if basket not in settings.baskets:
            raise UnknownBasket("basket %d is not one of this store's baskets (BASKETS=%s)"
                                % (basket, settings.baskets))
        return
    with db.read() as t:
        known = t.one("SELECT id FROM baskets WHERE id = ?", (basket,)) is not None
    if not known:
        raise UnknownBasket("basket %d is not known: it has never come online (set BASKETS to "
                            "list the store's baskets)" % basket)


def start(settings: Settings, db: Database, basket: int) -> int:
    """Starts a session on a free basket of the store (check_basket) and sends it `start`; if
    the broker cannot be reached the session is rolled back (outcome `failed`) and LinkError
    raised. SessionError: in use; UnknownBasket: not one of the store's baskets."""
    check_basket(settings, db, basket)
    sid = store.start_session(db, basket)
    try:
        notify(settings, basket, contract.START)
    except LinkError:
        store.end_session(db, basket, "failed")
        raise
    return sid


def end(settings: Settings, db: Database, basket: int) -> int:
    """Cancels the basket's session and sends it `end`. SessionError: not in use."""
    sid = store.end_session(db, basket)
    try:
        notify(settings, basket, contract.END)
    except LinkError as e:
        raise NotNotified("session %d cancelled, but the basket was not told: %s" % (sid, e), sid)
    return sid


class Unconfirmed(store.SessionError):
    """Checkout refused: the cart the basket holds now could not be confirmed as the one the
    database priced. Nothing was changed (no receipt, the session stays open)."""


def confirm_cart(basket: int, held: store.Held, update: bytes | None,
                 availability: bytes | None) -> str:
    """Pure: the digest of the cart a checkout may bill, from what the database holds (`held`)
    and the broker's retained `basket/<n>/update` and `.../availability` payloads (None: none
    retained). Unconfirmed, with one line saying why, unless the basket is not known offline
    and the broker's cart is the one the database priced."""
    why = "basket %d: cannot confirm the cart: " % basket
    if availability == b"offline" or (availability is None and held.online is False):
        raise Unconfirmed(why + "the basket is offline")
    if not update:
        raise Unconfirmed(why + "no cart at the broker")
    try:
        upd = contract.parse_update(basket, update)
    except contract.Rejected as e:
        raise Unconfirmed(why + "the broker's cart is not valid (%s)" % e.reason)
    if upd.digest != held.digest:
        n = contract.item_count(upd.items)
        raise Unconfirmed(why + "the basket's latest cart (%d item%s) is not priced yet; try "
                          "again in a moment" % (n, "" if n == 1 else "s"))
    return upd.digest


def confirmed_cart(settings: Settings, db: Database, basket: int) -> tuple[store.Held, str]:
    """What the database holds of the basket in use, and the digest of its cart once the
    broker's retained cart confirms it (confirm_cart). SessionError: not in use; Unconfirmed;
    LinkError: the broker could not be asked."""
    held = store.held(db, basket)
    if not held.in_use:
        raise store.SessionError("basket %d is not in use" % basket)
    topics = [contract.update_topic(basket), contract.availability_topic(basket)]
    retained = dict(read_retained(settings, topics, want=len(topics)))
    return held, confirm_cart(basket, held, retained.get(topics[0]), retained.get(topics[1]))


def checkout(settings: Settings, db: Database, basket: int) -> store.Receipt:
    """Confirms the cart against the broker (confirm_cart), then writes the receipt for
    exactly that cart, frees the basket and sends it `end`. SessionError: not in use;
    Unconfirmed: refused, nothing changed; LinkError: the broker could not be asked, nothing
    changed."""
    held, digest = confirmed_cart(settings, db, basket)
    receipt = store.checkout(db, basket, digest, held.session)
    try:
        notify(settings, basket, contract.END)
    except LinkError as e:
        raise NotNotified("receipt %d written, but the basket was not told: %s"
                          % (receipt.id, e), receipt)
    return receipt
