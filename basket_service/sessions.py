"""Session operations shared by the command line and the dashboard: each changes the database
through store and then tells the basket over MQTT (`start` / `end` on basket/<n>/status)."""

from __future__ import annotations

from basket_service import contract, store
from basket_service.config import Settings
from basket_service.db import Database
from basket_service.mqttlink import LinkError, publish_once


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


def checkout(settings: Settings, db: Database, basket: int) -> store.Receipt:
    """Writes the receipt, frees the basket and sends it `end`. SessionError: not in use."""
    receipt = store.checkout(db, basket)
    try:
        notify(settings, basket, contract.END)
    except LinkError as e:
        raise NotNotified("receipt %d written, but the basket was not told: %s"
                          % (receipt.id, e), receipt)
    return receipt
