"""The original deployment's product table (data/products_original.csv, 4,554 rows in 14
categories) as rows, and the tag codes that make them a catalogue (issue 16). Pure apart from
reading the file; image URLs are kept as text and never fetched.

The CSV (UTF-8, a BOM tolerated): header `name,price,stock,category,image_url,discount_rate,
sales,tag,location,description,brand`; the first six of those and `sales` are required, the
rest may be missing or empty. `tag` holds the original's hash tags (`#간식과일 #복숭아`), not a tag
code: the rows carry none (only the sample catalogue's codes were ever written to RFID tags).

Tag codes (`coded()`): a row whose name is a product of the catalogue given as `known` (the
sample catalogue, data/catalog_sample.csv) keeps that product's code, so the original baskets'
tags still scan as what they are; every other row gets `P` + its 1-based position among the
file's rows in 5 digits (`P00011` is the 11th row). Deterministic for one file: the same file
always gives the same codes, but a row inserted above others moves theirs, so once imported the
codes belong to the database (the wiring imports by name and keeps the codes it gave). These
codes follow the contract (1-32 characters) but are longer than the 4 bytes an original EPC
holds: a basket scans them from the line source or from newly written tags.

The small sample catalogue stays the default; this one is an option (`serve --catalog
original`, original_catalog())."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from basket_service import catalog
from basket_service.catalog import MAX_PRICE, MAX_STOCK, Product
from basket_service.contract import CODE_RE

ROOT = Path(__file__).resolve().parent.parent
ORIGINAL = ROOT / "data" / "products_original.csv"
SAMPLE = ROOT / "data" / "catalog_sample.csv"

REQUIRED = ("name", "price", "stock", "category", "discount_rate", "sales")
OPTIONAL = ("image_url", "tag", "location", "description", "brand")
MAX_ROWS = 99_999  # what `P` + 5 digits can number
MAX_TEXT = 2000  # characters in any one field


class ProductsError(ValueError):
    """The product file is unusable; the message names the file and line."""


@dataclass(frozen=True)
class ProductRow:
    line: int  # where the row starts in its file (the header is line 1)
    name: str
    price: int  # won, the shelf price before any discount
    stock: int
    category: str
    discount_rate: int  # percent, 0-100
    sales: int
    image_url: str = ""  # text only: a third-party shop's picture, never fetched here
    hashtags: str = ""  # the CSV's `tag` column
    location: str = ""
    description: str = ""
    brand: str = ""


def _int(raw: str, col: str, where: str, lo: int, hi: int) -> int:
    text = raw.strip()
    try:
        value = int(text)
    except ValueError:
        raise ProductsError("%s: %s must be a whole number, got %r" % (where, col, text[:40]))
    if not lo <= value <= hi:
        raise ProductsError("%s: %s must be %d to %d, got %d" % (where, col, lo, hi, value))
    return value


def parse(text: str, source: str = "products") -> list[ProductRow]:
    """The rows of a product CSV, in file order. ProductsError naming the line at fault: a
    missing column, a field too many, a number that is not one or is out of range, an empty
    name or category, a name given twice, a field over 2,000 characters."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ProductsError("%s: empty file" % source)
    except csv.Error as e:
        raise ProductsError("%s line 1: %s" % (source, e))
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ProductsError("%s line 1: header lacks column(s) %s (needs %s)"
                            % (source, ",".join(missing), ",".join(REQUIRED)))
    col = {name: header.index(name) for name in REQUIRED + OPTIONAL if name in header}
    rows: list[ProductRow] = []
    names: dict[str, int] = {}
    start = reader.line_num + 1
    while True:
        where = "%s line %d" % (source, start)
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise ProductsError("%s: %s" % (where, e))
        if fields:  # csv gives [] for a blank line
            rows.append(_row(fields, header, col, start, where, names))
            if len(rows) > MAX_ROWS:
                raise ProductsError("%s: more than %d products" % (where, MAX_ROWS))
        start = reader.line_num + 1
    if not rows:
        raise ProductsError("%s: no products" % source)
    return rows


def _row(fields: list[str], header: list[str], col: Mapping[str, int], line: int, where: str,
         names: dict[str, int]) -> ProductRow:
    if len(fields) != len(header):
        raise ProductsError("%s: %d fields, the header has %d" % (where, len(fields),
                                                                 len(header)))
    for n, value in enumerate(fields):
        if len(value) > MAX_TEXT:
            raise ProductsError("%s: %s is longer than %d characters" % (where, header[n],
                                                                         MAX_TEXT))

    def get(name: str) -> str:
        return fields[col[name]] if name in col else ""

    name = get("name").strip()
    if not name:
        raise ProductsError("%s: name is empty" % where)
    if name in names:
        raise ProductsError("%s: name %r already on line %d" % (where, name[:60], names[name]))
    names[name] = line
    category = get("category").strip()
    if not category:
        raise ProductsError("%s: category is empty" % where)
    return ProductRow(
        line=line, name=name,
        price=_int(get("price"), "price", where, 0, MAX_PRICE),
        stock=_int(get("stock"), "stock", where, -MAX_STOCK, MAX_STOCK),
        category=category,
        discount_rate=_int(get("discount_rate"), "discount_rate", where, 0, 100),
        sales=_int(get("sales"), "sales", where, 0, MAX_STOCK),
        image_url=get("image_url").strip(), hashtags=get("tag").strip(),
        location=get("location").strip(), description=get("description").strip(),
        brand=get("brand").strip())


def load(path: Path = ORIGINAL) -> list[ProductRow]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ProductsError("%s: cannot read (%s)" % (path, e.strerror or e))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProductsError("%s: not UTF-8 (byte %d)" % (path, e.start))
    return parse(text, str(path))


def tag_code(position: int) -> str:
    """The code of the row at this 1-based position: `P` + 5 digits."""
    if not 1 <= position <= MAX_ROWS:
        raise ValueError("position must be 1-%d, got %d" % (MAX_ROWS, position))
    return "P%05d" % position


def coded(rows: Iterable[ProductRow],
          known: Mapping[str, str] | None = None) -> dict[str, ProductRow]:
    """code -> row for every row (see the module's docstring): `known` maps a product name to
    the code it already has (names_to_codes of the sample catalogue). ProductsError when a
    known code is not a valid code or lands on a code already given."""
    known = known or {}
    out: dict[str, ProductRow] = {}
    for position, row in enumerate(rows, start=1):
        code = known.get(row.name) or tag_code(position)
        if not CODE_RE.match(code):
            raise ProductsError("line %d: bad product code %r for %r" % (row.line, code,
                                                                         row.name[:60]))
        if code in out:
            raise ProductsError("line %d: code %s already given to line %d"
                                % (row.line, code, out[code].line))
        out[code] = row
    return out


def names_to_codes(products: Mapping[str, Product]) -> dict[str, str]:
    """name -> code of a catalogue (catalog.load), for coded(known=...)."""
    return {p.name: p.code for p in products.values()}


def to_catalog(rows: Mapping[str, ProductRow]) -> dict[str, Product]:
    """The coded rows as the catalogue the service loads (`serve --catalog original`): code,
    name, price, discount, stock, category and image_url (the file's sales are not imported:
    the database counts what this system sells)."""
    return {code: Product(code, r.name, r.price, r.discount_rate, r.stock, r.category,
                          r.image_url) for code, r in rows.items()}


def original_catalog(path: Path = ORIGINAL, sample: Path = SAMPLE) -> dict[str, Product]:
    """The original product table as a catalogue, coded with the sample catalogue's codes for
    the names it has (`serve --catalog original`). ProductsError, or catalog.CatalogError for
    a bad sample, naming the file and line."""
    return to_catalog(coded(load(path), names_to_codes(catalog.load(sample))))
