"""The dashboard's database access: one connection for reads (Reader), a connection of its own
for each session operation (operate), what the pages read (board: the baskets with their fleet
alerts; fleet_rows: the fleet table), and how an error is reported in one line (short)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from basket_service import fleet, store
from basket_service.config import Settings
from basket_service.db import Database, first_line
from basket_service.shop import abandoned, idle_cutoff

T = TypeVar("T")


class Reader:
    """The dashboard's own connection for reads, used by one thread at a time; after an error
    it is dropped and the next read connects again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.db: Database | None = None

    def run(self, op: Callable[[Database], T]) -> T:
        with self.lock:
            if self.db is None:
                self.db = Database(self.settings)
            try:
                return op(self.db)
            except BaseException:
                self.db.close()
                self.db = None
                raise

    def close(self) -> None:
        with self.lock:
            if self.db is not None:
                self.db.close()
                self.db = None


def operate(settings: Settings, op: Callable[[Database], T]) -> T:
    """A session operation on a connection of its own: it may wait seconds for the broker and
    must not hold up the reads meanwhile."""
    db = Database(settings)
    try:
        return op(db)
    finally:
        db.close()


def fleet_rows(db: Database) -> list[dict[str, object]]:
    """The fleet table (basket_service.fleet.fleet) as of now, one row per basket; the alert
    thresholds come from HEALTH_MIN_FREE / HEALTH_MIN_BATTERY_MV."""
    return fleet.fleet(db)


def fleet_history(db: Database, basket: int, limit: int) -> list[dict[str, object]]:
    """One basket's recorded state changes, newest first."""
    return fleet.history(db, basket, limit)


def join_alerts(baskets: list[dict[str, object]], rows: list[dict[str, object]],
                idle_min: int = 30) -> list[dict[str, object]]:
    """Each basket's document with `alerts` from its fleet row (none without one), and
    `abandoned_cart` for a session with goods untouched for SESSION_IDLE_MIN (docs/shopper.md)."""
    by_basket = {r["basket"]: r.get("alerts") or [] for r in rows}
    before = idle_cutoff(idle_min * 60.0)
    out = []
    for doc in baskets:
        alerts = list(by_basket.get(doc["basket"], []))  # type: ignore[call-overload]
        if abandoned(doc, before):
            alerts.append({"kind": "abandoned_cart", "text": "cart left with goods for %d min "
                           "or more" % idle_min})
        out.append({**doc, "alerts": alerts})
    return out


def board(db: Database) -> tuple[list[dict[str, object]], int]:
    """store.board with each basket's fleet alerts (the cards' badge), and the newest receipt."""
    baskets, newest = store.board(db)
    return join_alerts(baskets, fleet_rows(db), db.settings.session_idle_min), newest


def board_and_fleet(db: Database) -> tuple[list[dict[str, object]], int,
                                           list[dict[str, object]]]:
    """What the live feed compares: the board (with alerts), the newest receipt and the fleet
    rows, the fleet read once for both."""
    baskets, newest = store.board(db)
    rows = fleet_rows(db)
    return join_alerts(baskets, rows, db.settings.session_idle_min), newest, rows


def short(e: BaseException) -> str:
    """A database error for an answer or the health event: its first line, cut at 200."""
    return first_line(e)[:200]
