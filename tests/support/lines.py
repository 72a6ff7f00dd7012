"""A child process's output, read line by line by a thread as it comes (each line with its
arrival time), so tests wait on what it printed without polling a file."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable


class LineLog:
    def __init__(self, stream: Iterable[bytes] | Iterable[str]) -> None:
        self.entries: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.ended = False  # the stream reached its end: no line will come any more
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: Iterable[bytes] | Iterable[str]) -> None:
        for raw in stream:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            with self.cond:
                self.entries.append((time.monotonic(), text.rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.entries)

    def lines(self, start: int = 0) -> list[str]:
        with self.cond:
            return [s for _, s in self.entries[start:]]

    def text(self, last: int | None = None) -> str:
        lines = self.lines()
        return "\n".join(lines if last is None else lines[-last:])

    def find(self, pattern: str, start: int = 0) -> list[tuple[float, str]]:
        rx = re.compile(pattern)
        with self.cond:
            return [(t, s) for t, s in self.entries[start:] if rx.search(s)]

    def wait(self, pattern: str, timeout: float,
             start: int = 0) -> tuple[float, str, re.Match[str]] | None:
        """The first line at or after index `start` matching the regex, as (arrival time, line,
        match); None when none came within `timeout` s or the stream ended without one."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.entries):
                    t, s = self.entries[i]
                    i += 1
                    m = rx.search(s)
                    if m:
                        return t, s, m
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    return None
                self.cond.wait(min(left, 0.1))
