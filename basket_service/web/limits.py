"""Bounds on what clients may hold: the live feeds open at once (DashboardApp, which also puts
the security headers on every response) and, below the app, uvicorn's HTTP/1.1 connections
(SlowClientGuard: a deadline for each request, a cap on open connections)."""

from __future__ import annotations

import asyncio
import logging
import time

import h11
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from basket_service.web.headers import secure_headers

log = logging.getLogger("basket_service.web")

HEADER_TIMEOUT = 10.0  # seconds a client has to send a whole request (head and body)
MAX_CONNECTIONS = 64  # open connections at once; one more is answered 503 and closed
MAX_FEEDS = 16  # live feeds (/api/events) at once, each holding a connection; more get 503


class DashboardApp(FastAPI):
    """FastAPI with the security headers put on every response, including the 500s that
    Starlette's outermost middleware writes, and a bound on the live feeds held open."""

    live_feeds = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        path = scope["path"]

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": secure_headers(
                    path, message["status"], list(message.get("headers", [])))}
            await send(message)

        if path != "/api/events":
            await super().__call__(scope, receive, send_secured)
        elif self.live_feeds >= MAX_FEEDS:
            await JSONResponse({"detail": "too many live feeds open (%d); close a dashboard "
                                "tab" % MAX_FEEDS}, 503)(scope, receive, send_secured)
        else:
            self.live_feeds += 1
            try:
                await super().__call__(scope, receive, send_secured)
            finally:
                self.live_feeds -= 1



def raw_response(status: int, reason: str, text: str) -> bytes:
    """A whole HTTP/1.1 answer, for the connection layer below the app; it closes."""
    body = text.encode()
    head = [b"HTTP/1.1 %d %s" % (status, reason.encode()),
            b"content-type: text/plain; charset=utf-8",
            b"content-length: %d" % len(body), b"connection: close"]
    head += [k + b": " + v for k, v in secure_headers("/", status, [])]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class SlowClientGuard(H11Protocol):
    """uvicorn's HTTP/1.1 connection with two bounds it lacks: a client gets `header_timeout`
    seconds to send a whole request (on a new connection and again after every answer), or
    the connection is closed; and past `max_connections` open connections a new one is
    answered 503 and closed at once. So slow or idle clients cannot pile up sockets."""

    header_timeout = HEADER_TIMEOUT
    max_connections = MAX_CONNECTIONS
    refused = 0  # connections answered 503 since the start
    _warned = -1e9
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refused()
            transport.write(raw_response(503, "Service Unavailable",
                                         "too many connections, try again"))
            transport.close()
            return
        self._arm()

    @classmethod
    def _refused(cls) -> None:
        """Counts refused connections and logs them at most every 10 s."""
        cls.refused += 1
        now = time.monotonic()
        if now - cls._warned >= 10.0:
            cls._warned = now
            log.warning("dashboard: more than %d connections open; refused %d so far",
                        cls.max_connections, cls.refused)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(self.header_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        # IDLE: (part of) a request head; SEND_BODY: a body still coming. Once the request is
        # in, the answer may take as long as it takes (the live feed is one long answer).
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        self.transport.write(raw_response(400, "Bad Request", msg))
        self.transport.close()
