"""The wire contract as seen from the service: topic names, update validation and the
status payloads it sends. Pure: no I/O. See /ARCHITECTURE (shared) for the contract."""

from __future__ import annotations

import hashlib
import hmac
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


def total_payload(basket: int, total: int, cart: str | None = None, unknown: int = 0) -> bytes:
    """The total command. `cart` is the digest (cart_digest) of the cart it priced, so the
    basket shows it only while it still holds that cart; without it (None) the payload is the
    original backend's, which the basket shows as it comes. `unknown`: how many of the cart's
    codes the catalogue does not know (sent only when some are: the display says "ask staff")."""
    body: dict[str, Any] = {"basketid": basket, "totalprice": total}
    if cart is not None:
        body["cart"] = cart
    if unknown:
        body["unknown"] = unknown
    return json.dumps({"msg": "total", "payload": body}, separators=(",", ":")).encode()


def pin_payload(basket: int, shown: dict[str, Any], thanks: bool = False) -> bytes:
    """What an idle basket's display shows about pairing (docs/shopper.md): `shown` is
    pairing.shown()'s {"pin": "482913"} or {"locked_until": "08:05"}; `thanks` after a
    shopper's checkout. The original controller logs it as unknown and changes nothing."""
    body: dict[str, Any] = {"basketid": basket}
    body.update({k: v for k, v in shown.items() if k in ("pin", "locked_until")})
    if thanks:
        body["thanks"] = True
    return json.dumps({"msg": "pin", "payload": body}, separators=(",", ":")).encode()


def item_count(items: dict[str, int]) -> int:
    return sum(items.values())


def health_topic(basket: int) -> str:
    return "%s/%d/health" % (BASE, basket)


def config_topic(basket: int) -> str:
    return "%s/%d/config" % (BASE, basket)


KINDS = ("update", "availability", "health")


def parse_topic(topic: str) -> tuple[int, str]:
    """basket/<n>/<kind> -> (n, kind); kind is 'update', 'availability' or 'health'."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != BASE or parts[2] not in KINDS:
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


# --- health (basket -> service) and remote configuration (service -> basket) ---------------
MAX_HEALTH = 512
MAX_CONFIG = 1024
READER_STATES = ("ok", "down")
DISPLAY_STATES = ("ok", "failed", "none")
# Keys a health report must carry, and their types (None: JSON null allowed).
_HEALTH_REQUIRED: dict[str, tuple[str, bool]] = {
    "id": ("int", False), "version": ("str", False), "uptime_s": ("int", False),
    "readers": ("list", False), "display": ("str", False), "counters": ("dict", False),
    "config_rev": ("int", False), "config_error": ("str", True), "interval_s": ("int", False),
}
# Keys it may leave out (read as null).
_HEALTH_OPTIONAL: dict[str, tuple[str, bool]] = {
    "runtime": ("str", True), "boot": ("str", True), "mem_free": ("int", True),
    "rssi": ("int", True), "battery_mv": ("int", True),
}
COUNTERS = ("commands", "items", "reconnects", "rejected_commands", "rejected_items")


def _typed(v: Any, kind: str) -> bool:
    if kind == "int":
        return _is_int(v)
    return isinstance(v, {"str": str, "list": list, "dict": dict}[kind])


def parse_health(basket: int, payload: bytes) -> dict[str, Any]:
    """A basket's health report (docs/fleet.md) as a dict with every known key (the optional
    ones null when left out; extra keys are kept). Rejected("bad_health", why) otherwise."""
    if len(payload) > MAX_HEALTH:
        raise Rejected("bad_health", "%d bytes (at most %d)" % (len(payload), MAX_HEALTH))
    try:
        doc = json.loads(payload.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise Rejected("bad_health", str(e) if isinstance(e, Rejected) else "not JSON")
    if not isinstance(doc, dict):
        raise Rejected("bad_health", "not a JSON object")
    for key in _HEALTH_REQUIRED:
        if key not in doc:
            raise Rejected("bad_health", "no %s" % key)
    for key, (kind, nullable) in (_HEALTH_REQUIRED | _HEALTH_OPTIONAL).items():
        v = doc.setdefault(key, None)
        if not (v is None and nullable) and not _typed(v, kind):
            raise Rejected("bad_health", "%s is not %s" % (key, "an integer" if kind == "int"
                                                            else "a JSON " + kind))
    if doc["id"] != basket:
        raise Rejected("bad_health", "id %d on basket %d's topic" % (doc["id"], basket))
    for key in ("uptime_s", "config_rev", "interval_s"):
        if doc[key] < 0:
            raise Rejected("bad_health", "%s is negative" % key)
    if doc["display"] not in DISPLAY_STATES:
        raise Rejected("bad_health", "display is not one of %s" % "/".join(DISPLAY_STATES))
    names = set()
    for r in doc["readers"]:
        if not (isinstance(r, dict) and isinstance(r.get("name"), str)
                and r.get("state") in READER_STATES
                and (r.get("last_read_s") is None or _is_int(r.get("last_read_s")))):
            raise Rejected("bad_health", "a reader is not {name, state ok/down, last_read_s}")
        if r["name"] in names:
            raise Rejected("bad_health", "reader %r twice" % r["name"][:40])
        names.add(r["name"])
    if not all(isinstance(k, str) and _is_int(v) for k, v in doc["counters"].items()):
        raise Rejected("bad_health", "counters are not whole numbers")
    if not valid_ota_report(doc.get("ota")):  # left out: kept out (an older basket's report)
        raise Rejected("bad_health", "ota is not null or {state, version, error}")
    return doc


# --- updates over the air (docs/ota.md) ---------------------------------------------------
MAX_OTA_PUSH = 1024
OTA_STATES = ("idle", "deferred", "downloading", "staged", "trial", "ok", "failed",
              "rolled_back")
VERSION_RE = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,31}\Z")  # not starting with `.`


def valid_version(v: object) -> bool:
    return isinstance(v, str) and VERSION_RE.match(v) is not None


def valid_ota_report(ota: object) -> bool:
    """A health report's `ota`: null (updates off) or {"state": one of OTA_STATES, "version":
    text or null, "error": text or null}; extra keys are allowed."""
    if ota is None:
        return True
    return (isinstance(ota, dict) and ota.get("state") in OTA_STATES
            and (ota.get("version") is None or isinstance(ota.get("version"), str))
            and (ota.get("error") is None or isinstance(ota.get("error"), str)))


def ota_topic(basket: int) -> str:
    return "%s/%d/ota" % (BASE, basket)


def ota_signature(basket: int, version: str, sha256_hex: str, key: str) -> str:
    """HMAC-SHA256 under the basket's own OTA_KEY (its text as UTF-8, not hex-decoded) over
    "<basket>\\n<version>\\n<manifest sha256 hex>", as 64 lowercase hex digits."""
    msg = ("%d\n%s\n%s" % (basket, version, sha256_hex)).encode()
    return hmac.new(key.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def ota_payload(basket: int, version: str, manifest_url: str, sha256_hex: str,
                key: str) -> bytes:
    """The retained push on basket/<n>/ota: compact JSON, keys sorted, at most 1024 bytes."""
    body = json.dumps({"manifest": manifest_url, "sha256": sha256_hex,
                       "sig": ota_signature(basket, version, sha256_hex, key),
                       "version": version}, sort_keys=True, separators=(",", ":")).encode()
    if len(body) > MAX_OTA_PUSH:
        raise ValueError("the push is %d bytes (at most %d): shorten RELEASE_URL"
                         % (len(body), MAX_OTA_PUSH))
    return body


def encode_doc(doc: dict[str, Any]) -> str:
    """Compact JSON with sorted keys (how health and config documents are stored)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Settings the service may change remotely: key -> (lowest, highest) for the whole numbers,
# or the allowed words. The same ranges as the controller's settings table
# (mqtt_controller/config.py; tests/service/test_fleet_units.py keeps them equal).
REMOTE_INTS: dict[str, tuple[int, int]] = {
    "RFID_POWER": (10, 30),
    "RFID_RSSI_MIN": (-128, 0),
    "RFID_PRESENCE": (1, 20),
    "RFID_ABSENCE": (1, 100),
    "RFID_CYCLE_MS": (50, 60000),
    "HEALTH_INTERVAL_S": (0, 86400),
}
REMOTE_CHOICES: dict[str, tuple[str, ...]] = {
    "LOG_LEVEL": ("debug", "info", "warning", "warn", "error"),
}
REMOTE_SAFE = tuple(sorted(set(REMOTE_INTS) | set(REMOTE_CHOICES)))


def remote_value(key: str, raw: str) -> int | str:
    """A KEY=VALUE of `config set`, checked: the value to send, or ValueError("KEY: why")."""
    if key in REMOTE_INTS:
        lo, hi = REMOTE_INTS[key]
        text = raw.strip()
        value = int(text) if re.fullmatch(r"[+-]?[0-9]{1,12}", text) else lo - 1
        if not lo <= value <= hi:
            raise ValueError("%s: must be a whole number from %d to %d, got %r"
                             % (key, lo, hi, raw[:20]))
        return value
    if key in REMOTE_CHOICES:
        word = raw.strip().lower()
        if word not in REMOTE_CHOICES[key]:
            raise ValueError("%s: must be one of %s, got %r" % (key, ", ".join(REMOTE_CHOICES[key]),
                                                                raw[:20]))
        return word
    raise ValueError("%s: cannot be set remotely (remote-safe keys: %s)"
                     % (key[:40], ", ".join(REMOTE_SAFE)))


def config_payload(rev: int, values: dict[str, int | str]) -> bytes:
    """The retained config message: {"rev":N,"set":{...}}, keys sorted, compact."""
    body = json.dumps({"rev": rev, "set": dict(sorted(values.items()))},
                      separators=(",", ":")).encode()
    if len(body) > MAX_CONFIG:
        raise ValueError("the config set is %d bytes (at most %d)" % (len(body), MAX_CONFIG))
    return body
