"""A child process's output, read line by line by a thread as it comes (each line with its
arrival time), so tests wait on what it printed without polling a file.

A mark is a line index: `mark()` is the number of lines so far, and `start=mark` means "lines
printed after the mark". For a pipe (`follow_pipe`) the mark also takes in what the child has
written but the thread has not read yet, so a line printed before `mark()` is never after it.
One log can follow several streams in turn (a process started again): the lines accumulate."""

from __future__ import annotations

import fcntl
import os
import re
import select
import termios
import threading
import time
from collections.abc import Iterable
from typing import IO, NamedTuple


class Line(NamedTuple):
    at: float  # time.monotonic() when it arrived
    text: str
    match: re.Match[str]
    pos: int  # its line index (start=pos + 1: the lines after it)


class LineLog:
    def __init__(self, stream: Iterable[bytes] | Iterable[str] | None = None) -> None:
        self.entries: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.ended = True  # the stream reached its end: no line will come any more
        self.thread: threading.Thread | None = None
        self._fd: int | None = None
        self._partial = b""
        if stream is not None:
            self.follow(stream)

    def follow(self, stream: Iterable[bytes] | Iterable[str]) -> None:
        """Reads `stream` (lines) in a thread until its end."""
        self._start(self._read, stream)

    def follow_pipe(self, pipe: IO[bytes]) -> None:
        """Reads a pipe's file descriptor in a thread until its end; `mark()` drains it first."""
        with self.cond:
            self._fd = pipe.fileno()
            self._partial = b""
        self._start(self._read_fd, pipe)

    def _start(self, target: object, arg: object) -> None:
        self.ended = False
        self.thread = threading.Thread(target=target, args=(arg,), daemon=True)  # type: ignore[arg-type]
        self.thread.start()

    def join(self, timeout: float = 5.0) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def _add(self, text: str) -> None:
        self.entries.append((time.monotonic(), text.rstrip("\r\n")))
        self.cond.notify_all()

    def _read(self, stream: Iterable[bytes] | Iterable[str]) -> None:
        for raw in stream:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            with self.cond:
                self._add(text)
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def _drain(self) -> bool:
        """Under the lock: takes in whatever the pipe holds now; False at its end."""
        fd = self._fd
        if fd is None:
            return False
        while True:
            try:
                buf = bytearray(4)
                fcntl.ioctl(fd, termios.FIONREAD, buf)
                pending = int.from_bytes(buf, "little")
            except OSError:
                pending = 0
            if not pending:
                r, _, _ = select.select([fd], [], [], 0)
                if not r:
                    return True  # nothing to read now
            data = os.read(fd, max(pending, 65536))
            if not data:
                if self._partial:
                    self._add(self._partial.decode("utf-8", "replace"))
                    self._partial = b""
                return False
            chunks = (self._partial + data).split(b"\n")
            self._partial = chunks.pop()
            for chunk in chunks:
                self._add(chunk.decode("utf-8", "replace"))
            if len(data) < max(pending, 65536):
                return True

    def _read_fd(self, pipe: IO[bytes]) -> None:
        fd = pipe.fileno()
        while True:
            try:
                select.select([fd], [], [])
            except (OSError, ValueError):
                break
            with self.cond:
                if self._fd != fd or not self._drain():
                    break
        with self.cond:
            if self._fd == fd:
                self._fd = None
                self.ended = True
            self.cond.notify_all()
        pipe.close()

    def mark(self) -> int:
        with self.cond:
            self._drain()
            return len(self.entries)

    def lines(self, start: int = 0) -> list[str]:
        with self.cond:
            return [s for _, s in self.entries[start:]]

    def text(self, last: int | None = None, start: int = 0) -> str:
        lines = self.lines(start)
        return "\n".join(lines if last is None else lines[-last:])

    def find(self, pattern: str, start: int = 0) -> list[tuple[float, str]]:
        rx = re.compile(pattern)
        with self.cond:
            return [(t, s) for t, s in self.entries[start:] if rx.search(s)]

    def wait(self, pattern: str, timeout: float, start: int = 0) -> Line | None:
        """The first line at or after index `start` matching the regex; None when none came
        within `timeout` s or the stream ended without one."""
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
                        return Line(t, s, m, i - 1)
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    return None
                self.cond.wait(min(left, 0.1))
