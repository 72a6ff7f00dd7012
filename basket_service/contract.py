"""The wire contract as seen from the service: topic names, update validation and the
status payloads it sends. Pure: no I/O. See /ARCHITECTURE (shared) for the contract."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

BASE = "basket"
MAX_PAYLOAD = 4096  # 64 codes of 32 chars with 3-digit counts fit in ~2.8 KB
MAX_CODES = 64
MAX_COUNT = 999
CODE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,32}\Z")
ID_RE = re.compile(r"[1-9][0-9]{0,8}\Z")  # canonical decimal: the status topic is built from it

START = b"start"
END = b"end"


class Rejected(ValueError):
    """An incoming message breaks the contract. `reason` is a short, countable label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Update:
    basket: int
    items: dict[str, int]
    payload: bytes

    @cached_property
    def cart(self) -> str:
        """The cart in one canonical form: equal carts give equal text, whatever the bytes."""
        return encode_cart(self.items)

    @cached_property
    def digest(self) -> str:
        return cart_digest(self.cart)


def cart_digest(cart: str) -> str:
    """The first 32 hex digits of SHA-256 over the canonical cart JSON (encode_cart)."""
    return hashlib.sha256(cart.encode()).hexdigest()[:32]


def encode_cart(items: dict[str, int]) -> str:
    return json.dumps(dict(sorted(items.items())), separators=(",", ":"))


def status_topic(basket: int) -> str:
    return "%s/%d/status" % (BASE, basket)


def update_topic(basket: int) -> str:
    return "%s/%d/update" % (BASE, basket)


def availability_topic(basket: int) -> str:
    return "%s/%d/availability" % (BASE, basket)


def total_payload(basket: int, total: int, cart: str | None = None) -> bytes:
    """The total command. `cart` is the digest (cart_digest) of the cart it priced, so the
    basket shows it only while it still holds that cart; without it (None) the payload is the
    original backend's, which the basket shows as it comes."""
    body: dict[str, Any] = {"basketid": basket, "totalprice": total}
    if cart is not None:
        body["cart"] = cart
    return json.dumps({"msg": "total", "payload": body}, separators=(",", ":")).encode()


def item_count(items: dict[str, int]) -> int:
    return sum(items.values())


def parse_topic(topic: str) -> tuple[int, str]:
    """basket/<n>/<kind> -> (n, kind); kind is 'update' or 'availability'."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != BASE or parts[2] not in ("update", "availability"):
        raise Rejected("bad_topic", topic[:80])
    if not ID_RE.match(parts[1]):
        raise Rejected("bad_topic_id", topic[:80])
    return int(parts[1]), parts[2]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise Rejected("bad_json", "duplicate key %r" % k[:40])
        out[k] = v
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_update(basket: int, payload: bytes) -> Update:
    if len(payload) > MAX_PAYLOAD:
        raise Rejected("oversized", "%d bytes" % len(payload))
    try:
        doc = json.loads(payload.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        if isinstance(e, Rejected):
            raise
        raise Rejected("bad_json")
    if not isinstance(doc, dict) or set(doc) != {"id", "list"}:
        raise Rejected("bad_shape", "want exactly id and list")
    if not _is_int(doc["id"]):
        raise Rejected("bad_shape", "id is not an integer")
    if doc["id"] != basket:
        raise Rejected("id_mismatch", "payload id %d on basket %d's topic" % (doc["id"], basket))
    cart = doc["list"]
    if not isinstance(cart, dict):
        raise Rejected("bad_shape", "list is not an object")
    if len(cart) > MAX_CODES:
        raise Rejected("too_many_codes", "%d codes" % len(cart))
    for code, count in cart.items():
        if not CODE_RE.match(code):
            raise Rejected("bad_code", repr(code[:40]))
        if not _is_int(count) or not 0 <= count <= MAX_COUNT:
            raise Rejected("bad_count", "%s=%r" % (code, count if _is_int(count) else type(count)))
    return Update(basket, dict(cart), payload)


def parse_availability(payload: bytes) -> bool:
    if payload == b"online":
        return True
    if payload == b"offline":
        return False
    raise Rejected("bad_availability", repr(payload[:20]))
