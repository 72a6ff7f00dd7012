"""The JSON API's shapes: response models and parameters (they make the OpenAPI description),
the errors each route may answer, and the ?day= rules (parse_day, day_bounds)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import BaseModel

FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)  # ?day= outside: 400


class LineOut(BaseModel):
    code: str
    name: str
    count: int
    unit_price: int
    amount: int
    known: bool


class CartLineOut(LineOut):
    """A line of a basket's cart on the board: also what a shopper's page shows."""
    price: int  # the shelf price before the discount (0 for an unknown code)
    discount_percent: int
    image_url: str  # a link the browser may load; never fetched by the service


class AlertOut(BaseModel):
    kind: str
    text: str


class BasketOut(BaseModel):
    basket: int
    online: bool | None
    state: Literal["idle", "shopping"]
    session: int | None
    session_started_at: str | None
    lines: list[CartLineOut]
    items: int
    total: int
    unknown: list[str]
    cart_updated_at: str | None
    availability_at: str | None
    changed_at: str | None
    alerts: list[AlertOut] = []


class ReaderOut(BaseModel):
    name: str
    state: str
    last_read_s: int | None


class OtaOut(BaseModel):
    """A basket's update progress, from its health report (docs/ota.md)."""
    state: str
    version: str | None
    error: str | None


class FleetOut(BaseModel):
    """One basket's row of the fleet table (basket_service.fleet.fleet): its latest health
    report (null before the first one), its configuration revisions and its alerts."""
    basket: int
    online: bool | None
    in_use: bool
    session: int | None
    version: str | None
    runtime: str | None
    uptime_s: int | None
    boot: str | None
    last_seen: str | None
    health_at: str | None
    interval_s: int | None
    rssi: int | None
    readers: list[ReaderOut]
    display: str | None
    battery_mv: int | None
    mem_free: int | None
    counters: dict[str, int]
    config_rev: int | None
    config_error: str | None
    desired_rev: int | None
    ota: OtaOut | None = None  # null: updates off on the basket, or no report yet
    pushed_version: str | None = None  # the release last pushed to it (`release push`)
    alerts: list[AlertOut]


class FleetEventOut(BaseModel):
    """A change of a basket's state, as the service recorded it (not every report)."""
    id: int
    basket: int
    at: str
    what: str
    old: str | None
    new: str | None


class ReceiptOut(BaseModel):
    receipt: int
    basket: int
    session: int | None
    created_at: str
    total: int
    unknown: list[str]
    payment_id: str | None = None  # the payment that paid it; null for a staff checkout
    key: str = ""  # the receipt's link key; "" for receipts older than migration 4
    lines: list[LineOut]


class StockRowOut(BaseModel):
    code: str
    name: str
    stock: int  # negative: sold while out of stock
    sales: int
    category: str


class StockOut(BaseModel):
    """The products at or below a stock level, lowest first (at most `limit`)."""
    below: int
    count: int  # how many products are at or below it, listed or not
    products: list[StockRowOut]


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


BelowParam = Annotated[str | None, Query(description="list products whose stock is this or "
                                                   "less, -10^9 to 10^9; default 5")]
MAX_STOCK = 10**9  # catalog.MAX_STOCK


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


def parse_below(text: str | None) -> int:
    """?below=: absent or empty is 5; anything but a whole number within the stock bounds is
    a BadRequest."""
    if text is None or not text.strip():
        return 5
    raw = text.strip()
    if not re.fullmatch(r"-?[0-9]{1,10}", raw) or not -MAX_STOCK <= int(raw) <= MAX_STOCK:
        raise BadRequest("below must be a whole number from %d to %d, got %r"
                         % (-MAX_STOCK, MAX_STOCK, text[:40]))
    return int(raw)


def day_bounds(day: date) -> tuple[str, str]:
    """The server's local day as [since, until) in the database's UTC text form."""
    since = datetime.combine(day, dtime.min).astimezone()
    until = datetime.combine(day + timedelta(days=1), dtime.min).astimezone()
    return tuple(d.astimezone(timezone.utc).isoformat(timespec="milliseconds")
                 for d in (since, until))  # type: ignore[return-value]
