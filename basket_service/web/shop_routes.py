"""The shopper's pages (docs/shopper.md): /shop/<n> (pair with the PIN, watch the cart live,
check out or cancel), the receipt page /shop/receipts/<key>, and the staff's side of the
counter provider (/api/payments). Guard lets /shop/ through without the dashboard's token: a
phone proves itself with the token pairing gave it, kept in an HttpOnly cookie scoped to its
basket's path, so a reload or a lost connection picks up where it was."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import segno
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.responses import Response

from basket_service import pairing, payments, sessions, store
from basket_service.db import DB_ERRORS
from basket_service.mqttlink import LinkError
from basket_service.shop import Refusal, Shop
from basket_service.web.events import sse_event
from basket_service.web.reader import Reader
from basket_service.web.schemas import ERRORS, BasketNo

log = logging.getLogger("basket_service.web")
STATIC = Path(__file__).resolve().parent.parent / "static"
COOKIE = "basket_shop"
COOKIE_MAX_AGE = 6 * 3600
STREAM_POLL_S = 0.5  # how often a phone's feed looks at its basket
PING_S = 15.0
MAX_STREAMS_PER_BASKET = 3  # a reload opens a new feed before the old one is seen closed
SWEEP_S = 1.0
# Product pictures are third-party shops' links the phone loads itself (never the service).
SHOP_CSP = ("default-src 'self'; img-src 'self' data: https:; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
REFUSED_STATUS = {pairing.WRONG_PIN: 403, pairing.LOCKED: 423, pairing.ALREADY_PAIRED: 409,
                  pairing.NOT_PAIRED: 403}


class PinIn(BaseModel):
    pin: str = Field(max_length=32, description="the PIN on the basket's display")


class CodeIn(BaseModel):
    code: str = Field(max_length=32, description="the checkout code the phone shows")


def _token(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache", "Content-Security-Policy": SHOP_CSP})


def add_shop(app: FastAPI, shop: Shop, reader: Reader) -> None:
    """The shopper's routes, the staff's checkout codes, and the sweep (a task of the app's
    lifespan: see start_sweep)."""
    streams: dict[int, int] = {}
    closing = threading.Event()  # set by close_feeds(): the server is stopping
    app.state.close_shop_feeds = closing.set

    @app.exception_handler(pairing.Refused)
    async def refused(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, pairing.Refused)
        return JSONResponse(e.doc(), REFUSED_STATUS.get(e.reason, 403))

    @app.exception_handler(Refusal)
    async def refusal(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, Refusal)
        return JSONResponse(e.doc(), e.status)

    @app.exception_handler(sessions.Unconfirmed)
    async def unconfirmed(request: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"refused": "unconfirmed", "detail": str(e)}, 409)

    @app.get("/shop/receipts/{key}", include_in_schema=False)
    def receipt_page(key: str) -> FileResponse:
        return _page("receipt.html")

    @app.get("/shop/receipts/{key}/doc", tags=["shop"])
    def receipt_doc(key: str) -> Any:
        """A receipt by its key (the receipt page's link: whoever holds it may read it)."""
        doc = reader.run(lambda db: store.receipt_by_key(db, key))
        if doc is None:
            return JSONResponse({"detail": "no such receipt"}, 404)
        return doc

    @app.get("/shop/receipts/{key}/qr.svg", include_in_schema=False)
    def receipt_qr(key: str, request: Request) -> Response:
        if reader.run(lambda db: store.receipt_by_key(db, key)) is None:
            return JSONResponse({"detail": "no such receipt"}, 404)
        url = "%s/shop/receipts/%s" % (base_url(shop, request), key)
        return Response(qr_svg(url), media_type="image/svg+xml")

    @app.get("/shop/{basket}", include_in_schema=False)
    def shop_page(basket: BasketNo) -> FileResponse:
        return _page("shop.html")

    @app.get("/shop/{basket}/api/state", tags=["shop"])
    def state(basket: BasketNo, request: Request) -> dict[str, Any]:
        """What this phone sees of the basket (its cart once paired)."""
        token = _token(request)
        return reader.run(lambda db: shop.view(db, basket, token))

    @app.post("/shop/{basket}/api/pair", tags=["shop"], responses=ERRORS)
    def pair(basket: BasketNo, body: PinIn, request: Request) -> JSONResponse:
        """Pairs this phone with the PIN the basket shows and starts its session."""
        token = shop.pair(basket, body.pin)
        doc = reader.run(lambda db: shop.view(db, basket, token))
        resp = JSONResponse(doc)
        resp.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE, path="/shop/%d" % basket,
                        httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
        return resp

    @app.post("/shop/{basket}/api/checkout", tags=["shop"], responses=ERRORS)
    def checkout(basket: BasketNo, request: Request) -> dict[str, Any]:
        """Pays for the cart: the payment (a checkout code to show at the counter, or paid at
        once) and, once paid, the receipt."""
        return shop.checkout(basket, _token(request))

    @app.post("/shop/{basket}/api/cancel", tags=["shop"], responses=ERRORS)
    def cancel(basket: BasketNo, request: Request) -> dict[str, Any]:
        """Ends the session; only with an empty cart."""
        return shop.cancel(basket, _token(request))

    @app.get("/shop/{basket}/api/events", tags=["shop"], response_class=StreamingResponse)
    async def events(basket: BasketNo, request: Request) -> Response:
        """This phone's live view: a `cart` event whenever what /api/state answers changes
        (the first one at once), `ping` every 15 s."""
        if streams.get(basket, 0) >= MAX_STREAMS_PER_BASKET:
            return JSONResponse({"detail": "too many live views of basket %d open" % basket},
                                429)
        token = _token(request)
        streams[basket] = streams.get(basket, 0) + 1

        async def feed() -> AsyncIterator[str]:
            last: object = None
            quiet = 0.0
            try:
                yield "retry: 1000\n\n"
                while not closing.is_set() and not await request.is_disconnected():
                    try:
                        doc = await asyncio.to_thread(
                            reader.run, lambda db: shop.view(db, basket, token))
                    except DB_ERRORS:
                        doc = {"basket": basket, "error": "database unavailable"}
                    if doc != last:
                        last, quiet = doc, 0.0
                        yield sse_event("cart", doc)
                    elif quiet >= PING_S:
                        quiet = 0.0
                        yield sse_event("ping", {})
                    await asyncio.sleep(STREAM_POLL_S)
                    quiet += STREAM_POLL_S
            finally:
                streams[basket] -= 1
                if not streams[basket]:
                    del streams[basket]

        return StreamingResponse(feed(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    @app.get("/api/payments", tags=["payments"])
    def pending_payments() -> list[dict[str, object]]:
        """The counter's checkouts waiting for staff (PAYMENT_PROVIDER=counter), oldest first."""
        return shop.pending()

    @app.post("/api/payments/confirm", tags=["payments"], responses=ERRORS)
    def confirm_payment(body: CodeIn) -> dict[str, Any]:
        """Staff took the money for this checkout code: the receipt."""
        try:
            return shop.confirm(body.code)
        except payments.UnknownPayment as e:
            return JSONResponse({"detail": str(e)}, 404)  # type: ignore[return-value]
        except payments.PaymentError as e:
            return JSONResponse({"detail": str(e)}, 409)  # type: ignore[return-value]


def base_url(shop: Shop, request: Request) -> str:
    """SHOP_URL, else the address the request came to."""
    return shop.settings.shop_url or str(request.base_url).rstrip("/")


def qr_svg(url: str, scale: int = 4) -> bytes:
    """A QR code of `url` as SVG (segno), dark modules on white, with its quiet zone."""
    buf = io.BytesIO()
    segno.make(url, error="m").save(buf, kind="svg", scale=scale, xmldecl=False)
    return buf.getvalue()


@contextlib.asynccontextmanager
async def sweeping(shop: Shop, reader: Reader) -> AsyncIterator[None]:
    """Runs shop.sweep every SWEEP_S seconds while the app runs; a broker or database that
    is away is logged once per outage and retried."""
    away: tuple[type[BaseException], ...] = (LinkError, *DB_ERRORS)

    async def loop() -> None:
        failing = ""
        while True:
            try:
                await asyncio.to_thread(reader.run, shop.sweep)
                if failing:
                    log.info("shop sweep: working again")
                failing = ""
            except away as e:
                if not failing:
                    log.warning("shop sweep: %s (retrying every %.0f s)", e, SWEEP_S)
                failing = str(e)
            except Exception:
                log.exception("shop sweep failed")
            await asyncio.sleep(SWEEP_S)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
