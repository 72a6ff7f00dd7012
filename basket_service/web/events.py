"""The live feed: Hub reads the board and the fleet while a browser watches and sends each one
what changed as server-sent events (snapshot, basket, fleet, receipt, health, ping)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from basket_service import store
from basket_service.db import DB_ERRORS
from basket_service.web.reader import Reader, board_and_fleet, join_alerts, short

log = logging.getLogger("basket_service.web")

PING_SECONDS = 15.0
# The fleet (fleet.fleet: every report parsed, every alert computed) is read at most this
# often; the board in between carries the alerts of the last read. 2,000 baskets: 55-100 ms a
# read on a laptop, against 20-40 ms for the board.
FLEET_SECONDS = 1.0
QUEUE_LIMIT = 200  # events waiting for one slow browser; past that it is cut off and reconnects


def sse_event(name: str, data: object) -> str:
    """One server-sent event: `name` and its data as compact JSON."""
    return "event: %s\ndata: %s\n\n" % (name, json.dumps(data, ensure_ascii=False,
                                                          separators=(",", ":")))


class Hub:
    """Reads the board (and at most every FLEET_SECONDS the fleet) from the database while at
    least one browser watches (every `interval` seconds, and at once after poke()) and sends
    each browser what changed: `basket` (one basket's new state, its fleet alerts included),
    `fleet` (one basket's new fleet row: a health report came in, or an alert began or ended),
    `receipt` (a new receipt exists), `health` (database reachable or not). A browser that
    connects first gets the whole board as `snapshot` (the fleet page then reads /api/fleet)."""

    def __init__(self, reader: Reader, interval: float = 0.25) -> None:
        self.reader = reader
        self.interval = interval
        self.queues: set[asyncio.Queue[str | None]] = set()
        self.baskets: dict[object, dict[str, object]] = {}
        self.fleet: dict[object, dict[str, object]] = {}
        self._fleet_at: float | None = None  # the loop's clock at the last fleet read
        self.newest = 0
        self.health: dict[str, str] = {"database": "unknown"}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._busy: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._busy = asyncio.Lock()
        self._task = asyncio.create_task(self._run())

    def poke(self) -> None:
        """Look at the database now; callable from any thread (the service's worker calls it
        after every message it handled)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def close(self) -> None:
        """Ends every event stream (the browsers reconnect); callable from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._close)

    def _close(self) -> None:
        for q in list(self.queues):
            self._drop(q)
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if self.queues:
                try:
                    await self.refresh()
                except Exception:  # noqa: BLE001 - a bug here must not end the live feed
                    log.exception("dashboard: reading the board failed")
            try:
                await asyncio.wait_for(self._wake.wait(),
                                       self.interval if self.queues else None)
            except TimeoutError:
                pass
            self._wake.clear()

    async def refresh(self) -> None:
        assert self._busy is not None
        async with self._busy:
            try:
                clock = asyncio.get_running_loop().time()
                due = self._fleet_at is None or clock - self._fleet_at >= FLEET_SECONDS
                if due:
                    baskets, newest, fleet = await asyncio.to_thread(self.reader.run,
                                                                     board_and_fleet)
                    self._fleet_at = clock
                else:
                    plain, newest = await asyncio.to_thread(self.reader.run, store.board)
                    fleet = list(self.fleet.values())
                    baskets = join_alerts(plain, fleet, self.reader.settings.session_idle_min)
            except DB_ERRORS as e:
                self._set_health("unreachable: %s" % short(e))
                return
            self._set_health("ok")
            for doc in baskets:
                n = doc["basket"]
                if self.baskets.get(n) != doc:
                    self.baskets[n] = doc
                    self._send(sse_event("basket", doc))
            for row in fleet:
                n = row["basket"]
                if self.fleet.get(n) != row:
                    self.fleet[n] = row
                    self._send(sse_event("fleet", row))
            if newest != self.newest:
                self.newest = newest
                self._send(sse_event("receipt", {"newest_receipt": newest}))

    def _set_health(self, state: str) -> None:
        if self.health.get("database") != state:
            if state != "ok":
                log.warning("dashboard: database %s", state)
            self.health = {"database": state}
            self._send(sse_event("health", self.health))

    def _send(self, message: str) -> None:
        for q in list(self.queues):
            try:
                q.put_nowait(message)
            except asyncio.QueueFull:
                self._drop(q)

    def _drop(self, q: asyncio.Queue[str | None]) -> None:
        self.queues.discard(q)
        while True:  # make room for the end-of-stream mark
            try:
                q.get_nowait()
            except asyncio.QueueEmpty:
                break
        q.put_nowait(None)

    async def stream(self) -> AsyncIterator[str]:
        q: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_LIMIT)
        await self.refresh()
        # No await between the snapshot and joining: every later change reaches this queue.
        self.queues.add(q)
        if self._wake is not None:
            self._wake.set()
        try:
            yield "retry: 1000\n\n"
            yield sse_event("snapshot", {"baskets": list(self.baskets.values()),
                                      "newest_receipt": self.newest, "health": self.health})
            while True:
                try:
                    message = await asyncio.wait_for(q.get(), PING_SECONDS)
                except TimeoutError:
                    yield sse_event("ping", {})
                    continue
                if message is None:
                    return
                yield message
        finally:
            self.queues.discard(q)
