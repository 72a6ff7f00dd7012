"""The product catalogue: CSV loading (UTF-8, header with code,name,price,discount_percent;
optional stock, category, image_url; other columns ignored) and cart pricing, the discounted
unit price by rounding.unit_price (the discount rounded down, the price up). Pure apart from
reading the file."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from basket_service import rounding
from basket_service.contract import CODE_RE

REQUIRED = ("code", "name", "price", "discount_percent")
OPTIONAL = ("stock", "category", "image_url")
MAX_PRICE = 10**9  # won; keeps every total far inside a 64-bit integer
MAX_STOCK = 10**9  # stock may be negative (sold while at 0): -MAX_STOCK to MAX_STOCK
MAX_TEXT = 2000  # characters in category or image_url


class CatalogError(ValueError):
    """The catalogue file is unusable; the message names the file and line."""


@dataclass(frozen=True)
class Product:
    code: str
    name: str
    price: int
    discount_percent: int
    stock: int | None = None  # None: the file gives none (the database's rows always do)
    category: str = ""
    image_url: str = ""  # text only, never fetched by the service

    @property
    def unit_price(self) -> int:
        """The discounted unit price: the discount rounded down to the won, so the price
        rounded up (rounding.unit_price, the original backend's rule)."""
        return rounding.unit_price(self.price, self.discount_percent)


@dataclass(frozen=True)
class Line:
    code: str
    name: str
    count: int
    unit_price: int
    known: bool
    price: int = 0  # the shelf price before the discount (0 for an unknown code)
    discount_percent: int = 0
    image_url: str = ""

    @property
    def amount(self) -> int:
        return self.count * self.unit_price


@dataclass(frozen=True)
class Priced:
    lines: list[Line]
    total: int

    @property
    def unknown(self) -> list[str]:
        return [ln.code for ln in self.lines if not ln.known]


def _int(row: Mapping[str, str], col: str, where: str, lo: int, hi: int) -> int:
    raw = (row.get(col) or "").strip()
    try:
        value = int(raw)
    except ValueError:
        raise CatalogError("%s: %s must be an integer, got %r" % (where, col, raw))
    if not lo <= value <= hi:
        raise CatalogError("%s: %s must be %d-%d, got %d" % (where, col, lo, hi, value))
    return value


def _text(row: Mapping[str, str], col: str, where: str) -> str:
    value = (row.get(col) or "").strip()
    if len(value) > MAX_TEXT:
        raise CatalogError("%s: %s is longer than %d characters" % (where, col, MAX_TEXT))
    return value


def parse(text: str, source: str = "catalogue") -> dict[str, Product]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise CatalogError("%s: header lacks column(s) %s (needs %s)"
                           % (source, ",".join(missing), ",".join(REQUIRED)))
    reader.fieldnames = header
    products: dict[str, Product] = {}
    for row in reader:
        where = "%s line %d" % (source, reader.line_num)
        if None in row:
            raise CatalogError("%s: more fields than the header has" % where)
        code = (row.get("code") or "").strip()
        if not CODE_RE.match(code):
            raise CatalogError("%s: bad product code %r" % (where, code))
        if code in products:
            raise CatalogError("%s: duplicate product code %r" % (where, code))
        products[code] = Product(
            code=code,
            name=(row.get("name") or "").strip(),
            price=_int(row, "price", where, 0, MAX_PRICE),
            discount_percent=_int(row, "discount_percent", where, 0, 100),
            stock=(_int(row, "stock", where, -MAX_STOCK, MAX_STOCK)
                   if (row.get("stock") or "").strip() else None),
            category=_text(row, "category", where),
            image_url=_text(row, "image_url", where),
        )
    if not products:
        raise CatalogError("%s: no products" % source)
    return products


def load(path: Path) -> dict[str, Product]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CatalogError("%s: cannot read (%s)" % (path, e.strerror or e))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CatalogError("%s: not UTF-8 (byte %d)" % (path, e.start))
    return parse(text, str(path))


def price(items: Mapping[str, int], products: Mapping[str, Product]) -> Priced:
    """Prices a whole cart; unknown codes cost 0 and are flagged."""
    lines: list[Line] = []
    for code, count in sorted(items.items()):
        p = products.get(code)
        if p is None:
            lines.append(Line(code, "", count, 0, False))
        else:
            lines.append(Line(code, p.name, count, p.unit_price, True, p.price,
                              p.discount_percent, p.image_url))
    return Priced(lines, sum(ln.amount for ln in lines))


def from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, Product]:
    """Products from database rows (store.PRODUCT_COLUMNS: code, name, price,
    discount_percent, stock, category, image_url)."""
    return {r[0]: Product(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), str(r[5] or ""),
                          str(r[6] or "")) for r in rows}
