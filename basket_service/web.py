"""The store dashboard: one page with every basket live (server-sent events), start / end /
checkout per basket, a receipts page with the day's totals, and the JSON API both pages use.
FastAPI on uvicorn. Reads go through store, operations through sessions (as the command line
does); the browser never sees broker or database settings."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import h11
import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from basket_service import sessions, store
from basket_service.config import ConfigError, Settings
from basket_service.db import DB_ERRORS, Database
from basket_service.mqttlink import LinkError

log = logging.getLogger("basket_service.web")
T = TypeVar("T")

STATIC = Path(__file__).with_name("static")
TOKEN_ENV = "DASHBOARD_TOKEN"
COOKIE = "basket_dashboard"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
PING_SECONDS = 15.0
QUEUE_LIMIT = 200  # events waiting for one slow browser; past that it is cut off and reconnects
HEADER_TIMEOUT = 10.0  # seconds a client has to send a whole request (head and body)
MAX_CONNECTIONS = 64  # open connections at once; one more is answered 503 and closed
MAX_FEEDS = 16  # live feeds (/api/events) at once, each holding a connection; more get 503
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)  # ?day= outside: 400


# --- access ---------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    host: str
    port: int
    token: str | None = None

    @property
    def url(self) -> str:
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d/" % (host, self.port)


def access_from_env(host: str, port: int, env: Mapping[str, str] | None = None) -> Access:
    """The bind address and token. Loopback needs no token (one set is still required);
    any other address refuses to start without DASHBOARD_TOKEN (ConfigError, exit 2)."""
    env = os.environ if env is None else env
    token = env.get(TOKEN_ENV) or None
    if token is not None and (len(token) < 16 or not token.isascii() or not token.isprintable()
                              or " " in token):
        raise ConfigError("%s must be at least 16 printable ASCII characters without spaces"
                          % TOKEN_ENV)
    if not is_loopback(host) and token is None:
        raise ConfigError("the dashboard binds to %s, which is not loopback: set %s (at least "
                          "16 characters) so only staff can use it, or bind to 127.0.0.1"
                          % (host, TOKEN_ENV))
    if not 0 <= port <= 65535:
        raise ConfigError("the dashboard port must be 0-65535, got %d" % port)
    return Access(host, port, token)


def _cookie_value(token: str) -> str:
    # The cookie carries a value derived from the token, never the token itself.
    return hmac.new(token.encode(), b"basket-dashboard-cookie", hashlib.sha256).hexdigest()


class Guard:
    """ASGI middleware in front of everything (pages, API, OpenAPI):
    - with a token: `Authorization: Bearer <token>`, or the cookie set by opening any page once
      with `?token=<token>`; anything else gets 401;
    - without one (loopback only): the Host header must name loopback, which stops a web page
      elsewhere from reaching the dashboard through DNS rebinding;
    - always: a POST whose Origin is another site is refused (no cross-site form posts)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token
        self.cookie = _cookie_value(token) if token else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not self.token and urlsplit("//" + host).hostname not in LOOPBACK_NAMES:
            await PlainTextResponse("unknown Host header", 400)(scope, receive, send)
            return
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD") and origin and urlsplit(origin).netloc != host:
            await _refuse(scope, 403, "cross-site request refused")(scope, receive, send)
            return
        if self.token and not self._allowed(headers):
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            given = query.pop("token", None)
            if given is not None and scope["method"] == "GET" and hmac.compare_digest(
                    given.encode(), self.token.encode()):
                # Swap the token in the address for a cookie, so it leaves the address bar.
                target = same_site_path(scope["path"]) + ("?" + urlencode(query) if query else "")
                resp = RedirectResponse(target, 303)
                resp.set_cookie(COOKIE, self.cookie, httponly=True, samesite="strict")
                await resp(scope, receive, send)
                return
            await _refuse(scope, 401, "a valid dashboard token is required")(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, headers: Headers) -> bool:
        assert self.token is not None
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(),
                                                              self.token.encode()):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), self.cookie.encode()):
                return True
        return False


def same_site_path(path: str) -> str:
    """Where a token login goes back to: always a path on this site. `//evil.example/`,
    `/\\evil.example` and `%2F%2Fevil` (decoded: `//evil`) would each make the browser leave,
    so leading slashes and backslashes fold into one and the rest is percent-encoded."""
    return "/" + quote(path.lstrip("/\\"), safe="/!$&'()*+,;=:@-._~")


def _refuse(scope: Scope, status: int, detail: str) -> Response:
    if scope["path"].startswith("/api/"):
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": detail}, status, headers=headers)
    hint = " (open the page with ?token=...)" if status == 401 else ""
    return PlainTextResponse(detail + hint, status)


# --- response headers -----------------------------------------------------------------------
CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin")]
NO_STORE_PATHS = ("/api/", "/openapi.json")
REDIRECTS = (301, 302, 303, 307, 308)


def secure_headers(path: str, status: int,
                   headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Every response: no framing (X-Frame-Options, CSP frame-ancestors), scripts and styles
    only from the dashboard itself, no MIME sniffing, no Referer; API answers, errors and
    redirects are never stored. A route's own CSP (the /docs page) is kept."""
    no_store = path.startswith(NO_STORE_PATHS) or status >= 400 or status in REDIRECTS
    names = {k.lower() for k, _ in headers}
    out = [(k, v) for k, v in headers if not (no_store and k.lower() == b"cache-control")]
    if b"content-security-policy" not in names:
        out.append((b"content-security-policy", CSP.encode()))
    if no_store or b"cache-control" not in names:
        out.append((b"cache-control", b"no-store" if no_store else b"no-cache"))
    return out + [h for h in SECURITY_HEADERS if h[0] not in names]


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


def docs_page(openapi_url: str, title: str) -> HTMLResponse:
    """FastAPI's Swagger UI page (scripts from cdn.jsdelivr.net, as FastAPI serves it) with a
    CSP that allows that CDN and exactly its one inline script, by hash."""
    page = get_swagger_ui_html(openapi_url=openapi_url, title=title)
    body = bytes(page.body)
    inline = body.split(b"<script>", 1)[1].split(b"</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(inline).digest()).decode()
    cdn = "https://cdn.jsdelivr.net"
    csp = ("default-src 'self'; script-src %s 'sha256-%s'; style-src %s 'unsafe-inline'; "
           "img-src 'self' data: "
           "https://fastapi.tiangolo.com; object-src 'none'; base-uri 'none'; "
           "form-action 'self'; frame-ancestors 'none'" % (cdn, digest, cdn))
    return HTMLResponse(body, headers={"Content-Security-Policy": csp})


# --- database access ------------------------------------------------------------------------
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


def _operate(settings: Settings, op: Callable[[Database], T]) -> T:
    """A session operation on a connection of its own: it may wait seconds for the broker and
    must not hold up the reads meanwhile."""
    db = Database(settings)
    try:
        return op(db)
    finally:
        db.close()


def _short(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


# --- live updates ---------------------------------------------------------------------------
def _event(name: str, data: object) -> str:
    return "event: %s\ndata: %s\n\n" % (name, json.dumps(data, ensure_ascii=False,
                                                          separators=(",", ":")))


class Hub:
    """Reads the board from the database while at least one browser watches (every `interval`
    seconds, and at once after poke()) and sends each browser what changed: `basket` (one
    basket's new state), `receipt` (a new receipt exists), `health` (database reachable or
    not). A browser that connects first gets the whole board as `snapshot`."""

    def __init__(self, reader: Reader, interval: float = 0.25) -> None:
        self.reader = reader
        self.interval = interval
        self.queues: set[asyncio.Queue[str | None]] = set()
        self.baskets: dict[object, dict[str, object]] = {}
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
                baskets, newest = await asyncio.to_thread(self.reader.run, store.board)
            except DB_ERRORS as e:
                self._set_health("unreachable: %s" % _short(e))
                return
            self._set_health("ok")
            for doc in baskets:
                n = doc["basket"]
                if self.baskets.get(n) != doc:
                    self.baskets[n] = doc
                    self._send(_event("basket", doc))
            if newest != self.newest:
                self.newest = newest
                self._send(_event("receipt", {"newest_receipt": newest}))

    def _set_health(self, state: str) -> None:
        if self.health.get("database") != state:
            if state != "ok":
                log.warning("dashboard: database %s", state)
            self.health = {"database": state}
            self._send(_event("health", self.health))

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
            yield _event("snapshot", {"baskets": list(self.baskets.values()),
                                      "newest_receipt": self.newest, "health": self.health})
            while True:
                try:
                    message = await asyncio.wait_for(q.get(), PING_SECONDS)
                except TimeoutError:
                    yield _event("ping", {})
                    continue
                if message is None:
                    return
                yield message
        finally:
            self.queues.discard(q)


# --- API models (they make the OpenAPI description) -----------------------------------------
class LineOut(BaseModel):
    code: str
    name: str
    count: int
    unit_price: int
    amount: int
    known: bool


class BasketOut(BaseModel):
    basket: int
    online: bool | None
    state: Literal["idle", "shopping"]
    session: int | None
    session_started_at: str | None
    lines: list[LineOut]
    items: int
    total: int
    unknown: list[str]
    cart_updated_at: str | None
    availability_at: str | None
    changed_at: str | None


class ReceiptOut(BaseModel):
    receipt: int
    basket: int
    session: int | None
    created_at: str
    total: int
    unknown: list[str]
    lines: list[LineOut]


class DayOut(BaseModel):
    day: date
    since: str
    until: str
    count: int
    total: int
    receipts: list[ReceiptOut]


class SessionOut(BaseModel):
    basket: int
    session: int
    state: Literal["idle", "shopping"]


class ErrorOut(BaseModel):
    detail: str


class NotNotifiedOut(BaseModel):
    detail: str
    session: int | None = None
    receipt: ReceiptOut | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "the basket's state does not allow it"},
    502: {"model": NotNotifiedOut, "description": "the broker could not be reached"},
    503: {"model": ErrorOut, "description": "the database could not be reached"},
}

DayParam = Annotated[str | None, Query(description="YYYY-MM-DD (1970-01-01 to 9998-12-31), "
                                                 "the server's local day; default today")]
LimitParam = Annotated[int, Query(ge=1, le=5000)]
BasketNo = Annotated[int, PathParam(ge=1, le=999_999_999, description="basket number")]


class BadRequest(ValueError):
    """A query parameter the API refuses with 400 and this message."""


def parse_day(text: str | None) -> date:
    """?day=: empty or absent is today (the server's local day); anything but a YYYY-MM-DD
    date from FIRST_DAY to LAST_DAY is a BadRequest (the end of the day must still be a date,
    and no receipt is older than 1970)."""
    if not text:
        return datetime.now().astimezone().date()
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None or not FIRST_DAY <= day <= LAST_DAY:
        raise BadRequest("day must be a date YYYY-MM-DD from %s to %s, got %r"
                         % (FIRST_DAY, LAST_DAY, text[:40]))
    return day


def day_bounds(day: date) -> tuple[str, str]:
    """The server's local day as [since, until) in the database's UTC text form."""
    since = datetime.combine(day, dtime.min).astimezone()
    until = datetime.combine(day + timedelta(days=1), dtime.min).astimezone()
    return tuple(d.astimezone(timezone.utc).isoformat(timespec="milliseconds")
                 for d in (since, until))  # type: ignore[return-value]


# --- the application ------------------------------------------------------------------------
def create_app(settings: Settings, *, token: str | None = None,
               hub_interval: float = 0.25) -> FastAPI:
    reader = Reader(settings)
    hub = Hub(reader, hub_interval)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        yield
        hub.close()
        await asyncio.to_thread(reader.close)

    app = DashboardApp(title="Smart basket dashboard", version="1",
                       description="Every basket live, session operations and receipts. "
                                   "See docs/service.md.", lifespan=lifespan,
                       docs_url=None, redoc_url=None)
    app.state.hub = hub
    app.state.reader = reader

    async def db_down(request: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": "database unavailable: %s" % _short(e)}, 503)

    for error in DB_ERRORS:
        app.add_exception_handler(error, db_down)  # type: ignore[arg-type]

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, 400)

    @app.exception_handler(sessions.UnknownBasket)
    async def unknown_basket(request: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, 404)

    @app.exception_handler(store.SessionError)
    async def conflict(request: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, 409)

    @app.exception_handler(LinkError)
    async def broker_down(request: Request, e: Exception) -> JSONResponse:
        body: dict[str, Any] = {"detail": str(e)}
        if isinstance(e, sessions.NotNotified):
            if isinstance(e.result, store.Receipt):
                body["receipt"] = store.receipt_doc(e.result)
            else:
                body["session"] = e.result
        hub.poke()
        return JSONResponse(body, 502)

    # --- pages
    def page(name: str) -> FileResponse:
        return FileResponse(STATIC / name, media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return page("dashboard.html")

    @app.get("/receipts", include_in_schema=False)
    def receipts_page() -> FileResponse:
        return page("receipts.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return docs_page("/openapi.json", app.title + " - API")

    # --- reads
    @app.get("/api/baskets", response_model=list[BasketOut], tags=["baskets"],
             responses={503: ERRORS[503]})
    def list_baskets() -> list[dict[str, object]]:
        """Every basket the service knows, with its cart priced line by line."""
        return reader.run(store.board)[0]

    @app.get("/api/baskets/{basket}", response_model=BasketOut, tags=["baskets"],
             responses={404: {"model": ErrorOut}, 503: ERRORS[503]})
    def one_basket(basket: BasketNo) -> object:
        for doc in reader.run(store.board)[0]:
            if doc["basket"] == basket:
                return doc
        return JSONResponse({"detail": "basket %d is not known yet" % basket}, 404)

    @app.get("/api/receipts", response_model=DayOut, tags=["receipts"],
             responses={400: {"model": ErrorOut}, 503: ERRORS[503]})
    def day_receipts(day: DayParam = None, limit: LimitParam = 500) -> dict[str, object]:
        """One day's receipts (newest first), how many, and their sum."""
        when = parse_day(day)
        since, until = day_bounds(when)

        def read(db: Database) -> tuple[list[dict[str, object]], tuple[int, int]]:
            return (store.receipts(db, limit, since, until),
                    store.receipt_totals(db, since, until))

        rows, (count, total) = reader.run(read)
        return {"day": when, "since": since, "until": until, "count": count, "total": total,
                "receipts": rows}

    @app.get("/api/events", tags=["live"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "server-sent events: snapshot, basket, receipt, "
                                             "health, ping"}})
    async def events() -> StreamingResponse:
        """The live feed the page listens to (see docs/service.md)."""
        return StreamingResponse(hub.stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    @app.get("/api/health", tags=["live"])
    def health() -> dict[str, str]:
        reader.run(store.receipt_totals)
        return {"status": "ok", "database": "ok"}

    # --- operations: the same functions as the command line
    def done(result: T) -> T:
        hub.poke()
        return result

    @app.post("/api/baskets/{basket}/start", response_model=SessionOut, tags=["sessions"],
              responses={**ERRORS, 404: {"model": ErrorOut,
                                         "description": "not one of the store's baskets"}})
    def start(basket: BasketNo) -> dict[str, object]:
        """Starts a session on a free basket of the store and sends it `start`."""
        sid = _operate(settings, lambda db: sessions.start(settings, db, basket))
        return done({"basket": basket, "session": sid, "state": "shopping"})

    @app.post("/api/baskets/{basket}/end", response_model=SessionOut, tags=["sessions"],
              responses=ERRORS)
    def end(basket: BasketNo) -> dict[str, object]:
        """Cancels the basket's session (no receipt) and sends it `end`."""
        sid = _operate(settings, lambda db: sessions.end(settings, db, basket))
        return done({"basket": basket, "session": sid, "state": "idle"})

    @app.post("/api/baskets/{basket}/checkout", response_model=ReceiptOut, tags=["sessions"],
              responses=ERRORS)
    def checkout(basket: BasketNo) -> dict[str, object]:
        """Writes the receipt from the current cart, frees the basket and sends it `end`."""
        receipt = _operate(settings, lambda db: sessions.checkout(settings, db, basket))
        return done(store.receipt_doc(receipt))

    app.add_middleware(Guard, token=token)
    return app


# --- running it -----------------------------------------------------------------------------
def listen(access: Access) -> socket.socket:
    """Binds the listening socket first, so a taken port is a clear error before anything runs."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(access.host, access.port,
                                                          type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        raise DashboardError("cannot listen on %s:%d: %s"
                             % (access.host, access.port, e.strerror or e))
    return sock


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


class DashboardError(RuntimeError):
    """The dashboard cannot run (e.g. its port is taken); the message is safe to show."""


class Dashboard:
    """uvicorn in a thread of its own, so it runs beside the service's loop in `serve --http`
    and the same way alone in `web`. stop() ends the event streams, then the server."""

    def __init__(self, settings: Settings, access: Access) -> None:
        self.access = access
        self.sock = listen(access)
        port = self.sock.getsockname()[1]
        self.access = Access(access.host, port, access.token)
        self.app = create_app(settings, token=access.token)
        self.hub: Hub = self.app.state.hub
        # uvicorn's own start/stop chatter only with LOG_LEVEL=DEBUG; its errors always.
        quiet = logging.getLogger().getEffectiveLevel() > logging.DEBUG
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on",
                                http=SlowClientGuard, ws="none", timeout_graceful_shutdown=2,
                                log_level=logging.WARNING if quiet else logging.DEBUG)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="dashboard", daemon=True)
        self.failed = threading.Event()
        self.stopped = threading.Event()

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException:
            log.exception("dashboard stopped on an error")
            self.failed.set()
        finally:
            self.stopped.set()

    def start(self) -> Dashboard:
        self.thread.start()
        note = " (token required: open it once with ?token=<%s>)" % TOKEN_ENV \
            if self.access.token else ""
        log.info("dashboard on %s%s", self.access.url, note)
        return self

    def stop(self) -> None:
        self.hub.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
