"""The dashboard application: its pages, the JSON API both pages use, and the error answers.
Reads go through store, operations through sessions (as the command line does); the browser
never sees broker or database settings."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from basket_service import payments, releases, sessions, store
from basket_service.config import Settings
from basket_service.db import DB_ERRORS, Database
from basket_service.mqttlink import LinkError
from basket_service.shop import Shop
from basket_service.web.access import Guard
from basket_service.web.events import Hub
from basket_service.web.headers import docs_page
from basket_service.web.limits import DashboardApp
from basket_service.web.reader import Reader, board, fleet_history, fleet_rows, operate, short
from basket_service.web.schemas import (
    ERRORS,
    BadRequest,
    BasketNo,
    BasketOut,
    BelowParam,
    DayOut,
    DayParam,
    ErrorOut,
    FleetEventOut,
    FleetOut,
    LimitParam,
    ReceiptOut,
    SessionOut,
    StockOut,
    day_bounds,
    parse_below,
    parse_day,
)
from basket_service.web.shop_routes import add_shop, sweeping

T = TypeVar("T")
STATIC = Path(__file__).resolve().parent.parent / "static"


def create_app(settings: Settings, *, token: str | None = None,
               hub_interval: float = 0.25) -> FastAPI:
    """The whole dashboard: Guard in front, then the pages, the reads, the live feed and the
    session operations, and the shopper's pages (shop_routes); app.state holds its Hub and
    Reader."""
    reader = Reader(settings)
    hub = Hub(reader, hub_interval)
    shop = Shop(settings, payments.provider(settings.payment_provider, time.time))
    shop_reader = Reader(settings)  # the phones' feeds and the sweep, beside the board's reads

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        async with sweeping(shop, shop_reader):
            yield
        hub.close()
        await asyncio.to_thread(reader.close)
        await asyncio.to_thread(shop_reader.close)

    app = DashboardApp(title="Smart basket dashboard", version="1",
                       description="Every basket live, session operations and receipts. "
                                   "See docs/service.md.", lifespan=lifespan,
                       docs_url=None, redoc_url=None)
    app.state.hub = hub
    app.state.reader = reader
    add_error_answers(app, hub)
    add_pages(app)
    add_reads(app, reader, hub)
    add_operations(app, settings, hub)
    add_releases(app, settings)
    add_shop(app, shop, shop_reader)
    app.add_middleware(Guard, token=token)
    return app


def add_error_answers(app: FastAPI, hub: Hub) -> None:
    """What each refusal looks like: 400 a bad parameter, 404 an unknown basket, 409 a state
    that does not allow it, 502 the broker (the database change stands), 503 the database."""

    async def db_down(request: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": "database unavailable: %s" % short(e)}, 503)

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


def add_pages(app: FastAPI) -> None:
    """The three pages, their scripts and styles, and the API docs page."""

    def page(name: str) -> FileResponse:
        return FileResponse(STATIC / name, media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return page("dashboard.html")

    @app.get("/receipts", include_in_schema=False)
    def receipts_page() -> FileResponse:
        return page("receipts.html")

    @app.get("/fleet", include_in_schema=False)
    def fleet_page() -> FileResponse:
        return page("fleet.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return docs_page("/openapi.json", app.title + " - API")


def add_reads(app: FastAPI, reader: Reader, hub: Hub) -> None:
    """The board, one basket, the fleet, a day's receipts, low stock, the live feed and the
    health check."""

    @app.get("/api/baskets", response_model=list[BasketOut], tags=["baskets"],
             responses={503: ERRORS[503]})
    def list_baskets() -> list[dict[str, object]]:
        """Every basket the service knows, with its cart priced line by line and its fleet
        alerts."""
        return reader.run(board)[0]

    @app.get("/api/baskets/{basket}", response_model=BasketOut, tags=["baskets"],
             responses={404: {"model": ErrorOut}, 503: ERRORS[503]})
    def one_basket(basket: BasketNo) -> object:
        for doc in reader.run(board)[0]:
            if doc["basket"] == basket:
                return doc
        return JSONResponse({"detail": "basket %d is not known yet" % basket}, 404)

    @app.get("/api/fleet", response_model=list[FleetOut], tags=["fleet"],
             responses={503: ERRORS[503]})
    def fleet_table() -> list[dict[str, object]]:
        """Every basket's latest health report, configuration revisions and alerts, in basket
        order (the fleet page and `basket_service health` show the same)."""
        return reader.run(fleet_rows)

    @app.get("/api/fleet/{basket}/events", response_model=list[FleetEventOut], tags=["fleet"],
             responses={503: ERRORS[503]})
    def fleet_events(basket: BasketNo, limit: LimitParam = 500) -> list[dict[str, object]]:
        """One basket's recorded state changes (a reader down or back, the display, the
        version, a configuration rejected, online/offline), newest first."""
        return reader.run(lambda db: fleet_history(db, basket, limit))

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

    @app.get("/api/stock", response_model=StockOut, tags=["stock"],
             responses={400: {"model": ErrorOut}, 503: ERRORS[503]})
    def low_stock(below: BelowParam = None, limit: LimitParam = 500) -> dict[str, object]:
        """The products whose stock is `below` or less, lowest first: out of stock at 0,
        oversold when negative (a checkout never refuses a product for its stock)."""
        level = parse_below(below)

        def read(db: Database) -> tuple[list[dict[str, object]], int]:
            return store.stock_levels(db, level, limit), store.stock_count(db, level)

        rows, count = reader.run(read)
        return {"below": level, "count": count, "products": rows}

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


def add_operations(app: FastAPI, settings: Settings, hub: Hub) -> None:
    """Start, end and checkout: the same functions as the command line, each on a database
    connection of its own; the live feed looks again once one is done."""

    def done(result: T) -> T:
        hub.poke()
        return result

    @app.post("/api/baskets/{basket}/start", response_model=SessionOut, tags=["sessions"],
              responses={**ERRORS, 404: {"model": ErrorOut,
                                         "description": "not one of the store's baskets"}})
    def start(basket: BasketNo) -> dict[str, object]:
        """Starts a session on a free basket of the store and sends it `start`."""
        sid = operate(settings, lambda db: sessions.start(settings, db, basket))
        return done({"basket": basket, "session": sid, "state": "shopping"})

    @app.post("/api/baskets/{basket}/end", response_model=SessionOut, tags=["sessions"],
              responses=ERRORS)
    def end(basket: BasketNo) -> dict[str, object]:
        """Cancels the basket's session (no receipt) and sends it `end`."""
        sid = operate(settings, lambda db: sessions.end(settings, db, basket))
        return done({"basket": basket, "session": sid, "state": "idle"})

    @app.post("/api/baskets/{basket}/checkout", response_model=ReceiptOut, tags=["sessions"],
              responses=ERRORS)
    def checkout(basket: BasketNo) -> dict[str, object]:
        """Writes the receipt from the current cart, frees the basket and sends it `end`."""
        receipt = operate(settings, lambda db: sessions.checkout(settings, db, basket))
        return done(store.receipt_doc(receipt))


def add_releases(app: FastAPI, settings: Settings) -> None:
    """The releases the baskets fetch (docs/ota.md): read-only, without the dashboard's token
    (Guard lets GET and HEAD of /releases/ through; a basket has no token, and a release's
    integrity rests on its signed hashes, not on who may read it). Only a known release's
    manifest and the files it lists are served; anything else is 404."""

    def not_found() -> Response:
        return PlainTextResponse("no such release file", 404)

    @app.api_route("/releases/{version}/{rest:path}", methods=["GET", "HEAD"],
                   include_in_schema=False)
    def release_file(version: str, rest: str) -> Response:
        path = releases.served_file(settings.release_dir, version, rest)
        if path is None:
            return not_found()
        return FileResponse(path, media_type=releases.content_type(path.name),
                            headers={"Cache-Control": "no-cache"})

    @app.api_route("/releases/{rest:path}", methods=["GET", "HEAD"], include_in_schema=False)
    def no_release_file(rest: str) -> Response:
        return not_found()  # e.g. /releases/V: a 404, never a redirect to /releases/V/
