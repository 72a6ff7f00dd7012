# The wire contract, pure: status commands in, update payloads out. No I/O.
# Commands: `start` / `end` as text or {"msg":...}; totals as
# {"msg":"total","payload":{"basketid":<int>,"totalprice":<int>,"cart":"<hex>","unknown":<int>}}
# with keys in any case, `cart` optional (the digest of the cart priced; the original backend
# sends none), `unknown` optional (cart lines the catalogue does not know; absent: 0); the idle
# display's notice as {"msg":"pin","payload":{"basketid":<int>,"pin":"<4-8 digits>"}} or with
# "locked_until":"<1-16 printable ASCII>" instead of "pin", either with an optional "thanks":<bool>.
import binascii
import hashlib
import json

from mqtt_controller.compat import const

MAX_COMMAND = const(512)  # bytes; a status command is a few dozen
MAX_CODE_LEN = const(32)
MAX_DIGEST = const(64)  # characters of a total's `cart`; ours are 32

START = "start"
END = "end"
TOTAL = "total"
PIN = "pin"

_CODE_PUNCT = "_-."


class Rejected(ValueError):
    """A status command that changes nothing; the message says why."""


def valid_code(code):
    if not isinstance(code, str) or not 1 <= len(code) <= MAX_CODE_LEN:
        return False
    for ch in code:
        if not (("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9")
                or ch in _CODE_PUNCT):
            return False
    return True


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _lower_keys(d):
    out = {}
    for k in d:
        if isinstance(k, str):
            out[k.lower()] = d[k]
    return out


def short(payload, n=60):
    """A printable excerpt of a payload for log lines."""
    if isinstance(payload, (bytes, bytearray)):
        payload = bytes(payload[:n]).decode("utf-8", "replace")
    s = repr(payload[:n])
    return s + ("..." if len(payload) > n else "")


def _chars(v, lo, hi, first, last):
    # A string of lo..hi characters, each from first to last.
    if not isinstance(v, str) or not lo <= len(v) <= hi:
        return False
    for ch in v:
        if not first <= ch <= last:
            return False
    return True


def parse_command(payload, basket_id):
    """Returns (START, None), (END, None), (TOTAL, (price, cart, unknown)), cart the digest
    string the total names or None, unknown an int (0 when absent), or (PIN, (pin,
    locked_until, thanks)), exactly one of pin / locked_until a string, the other None;
    raises Rejected for anything else."""
    if len(payload) > MAX_COMMAND:
        raise Rejected("oversized command (%d bytes)" % len(payload))
    try:
        text = bytes(payload).decode("utf-8").strip()
    except (UnicodeError, ValueError):
        raise Rejected("command is not UTF-8")
    word = text.lower()
    if word == START or word == END:
        return word, None
    if not text.startswith("{"):
        raise Rejected("unknown command %s" % short(text))
    try:
        obj = json.loads(text)
    except Exception:  # ValueError on CPython; MicroPython may raise others on deep nesting
        raise Rejected("bad JSON %s" % short(text))
    if not isinstance(obj, dict):
        raise Rejected("JSON command is not an object")
    obj = _lower_keys(obj)
    msg = obj.get("msg")
    if not isinstance(msg, str):
        raise Rejected("JSON command without a \"msg\" string")
    msg = msg.strip().lower()
    if msg == START or msg == END:
        return msg, None
    if msg != TOTAL and msg != PIN:
        raise Rejected("unknown msg %s" % short(msg))
    body = obj.get("payload")
    if not isinstance(body, dict):
        raise Rejected("%s without a payload object" % msg)
    body = _lower_keys(body)
    bid = body.get("basketid")
    if not is_int(bid):
        raise Rejected("%s with a non-integer basketid" % msg)
    if bid != basket_id:
        raise Rejected("%s for basket %d, not this one (%d)" % (msg, bid, basket_id))
    if msg == PIN:
        pin = body.get("pin")
        until = body.get("locked_until")
        if ("pin" in body) == ("locked_until" in body):
            raise Rejected("pin without exactly one of pin, locked_until")
        if "pin" in body and not _chars(pin, 4, 8, "0", "9"):
            raise Rejected("pin that is not 4 to 8 digits")
        if "locked_until" in body and not _chars(until, 1, 16, " ", "~"):
            raise Rejected("pin with a bad locked_until (not 1-16 printable ASCII)")
        thanks = body.get("thanks", False)
        if not isinstance(thanks, bool):
            raise Rejected("pin with a non-boolean thanks")
        return PIN, (pin, until, thanks)
    price = body.get("totalprice")
    if not is_int(price):
        raise Rejected("total with a non-integer totalprice")
    if price < 0:
        raise Rejected("total with a negative totalprice (%d)" % price)
    cart = body.get("cart")
    if "cart" in body and (not isinstance(cart, str) or len(cart) > MAX_DIGEST):
        raise Rejected("total with a bad cart (not a string of at most %d characters)"
                       % MAX_DIGEST)
    unknown = body.get("unknown", 0)
    if not is_int(unknown) or unknown < 0:
        raise Rejected("total with a bad unknown (not a non-negative integer)")
    return TOTAL, (price, cart, unknown)


def encode_list(items):
    """The `list` of an update, compact with codes sorted: b'{"APPL":1,"MLON":2}', b'{}'."""
    codes = sorted(items)
    return ("{%s}" % ",".join(['"%s":%d' % (c, items[c]) for c in codes])).encode()


def encode_update(basket_id, items):
    """Compact update JSON with codes sorted, byte-identical on every interpreter."""
    return b'{"id":%d,"list":' % basket_id + encode_list(items) + b"}"


def cart_digest(items):
    """The cart a total names: the first 32 hex characters of SHA-256 over encode_list(items)."""
    return binascii.hexlify(hashlib.sha256(encode_list(items)).digest())[:32].decode()


def basket_id_from_topic(topic):
    """The trailing integer of a topic: basket/1 -> 1, basket/unit0001 -> 1; None if none."""
    i = len(topic)
    while i > 0 and "0" <= topic[i - 1] <= "9":
        i -= 1
    digits = topic[i:]
    if not digits or len(digits) > 9:
        return None
    return int(digits)


def valid_topic(topic):
    """A base topic to publish under: non-empty, no wildcards, no empty levels at the ends."""
    return (isinstance(topic, str) and 0 < len(topic) <= 200 and "+" not in topic
            and "#" not in topic and not topic.startswith("/") and not topic.endswith("/")
            and "\x00" not in topic)
