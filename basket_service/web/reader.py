"""The dashboard's database access: one connection for reads (Reader), a connection of its own
for each session operation (operate), and how an error is reported in one line (short)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from basket_service.config import Settings
from basket_service.db import Database, first_line

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


def short(e: BaseException) -> str:
    """A database error for an answer or the health event: its first line, cut at 200."""
    return first_line(e)[:200]
