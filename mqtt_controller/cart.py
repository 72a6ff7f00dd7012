# The cart, pure: bounded counts per product code, and the item line protocol
# (`CODE` adds one, `-CODE` removes one, `CODE=N` sets the count). No I/O.
from mqtt_controller.compat import const
from mqtt_controller.protocol import valid_code

MAX_CODES = const(64)
MAX_COUNT = const(999)
MAX_LINE = const(64)

ADD = "add"
REMOVE = "remove"
SET = "set"


class CartError(ValueError):
    """An item event that was rejected; the cart is unchanged."""


def parse_item_line(line):
    """Returns (op, code, n) or None for a blank line; raises CartError for a bad one."""
    if isinstance(line, (bytes, bytearray)):
        try:
            line = bytes(line).decode("utf-8")
        except (UnicodeError, ValueError):
            raise CartError("item line is not UTF-8")
    if len(line) > MAX_LINE:
        raise CartError("item line too long (%d chars)" % len(line))
    line = line.strip()
    if not line:
        return None
    if line.startswith("-"):
        op, code, n = REMOVE, line[1:], 1
    elif "=" in line:
        code, _, num = line.partition("=")
        op, n = SET, _count(num)
    else:
        op, code, n = ADD, line, 1
    # A leading "-" is the remove operator, so no code in a line may start with one.
    if not valid_code(code) or code.startswith("-"):
        raise CartError("bad product code %r" % code[:40])
    return op, code, n


def _count(num):
    # A whole number 0-999 written with digits only: "-1", "1e3", "+5", " 7x" all reject the line.
    if not num or len(num) > 3:
        raise CartError("count must be a whole number from 0 to %d, got %r" % (MAX_COUNT, num[:10]))
    for ch in num:
        if not "0" <= ch <= "9":
            raise CartError("count must be a whole number from 0 to %d, got %r" % (MAX_COUNT, num))
    return int(num)


class Cart:
    def __init__(self, items=None):
        self.items = {}
        if items:
            self.replace(items)

    def replace(self, items):
        """Loads a whole cart, checking every entry; raises CartError and keeps the old one."""
        if not isinstance(items, dict) or len(items) > MAX_CODES:
            raise CartError("cart is not a mapping of at most %d codes" % MAX_CODES)
        new = {}
        for code in items:
            n = items[code]
            if not valid_code(code) or not isinstance(n, int) or isinstance(n, bool) \
                    or not 0 <= n <= MAX_COUNT:
                raise CartError("bad cart entry %r" % code)
            if n:
                new[code] = n
        self.items = new

    def apply(self, op, code, n=1):
        """Applies one event; returns True when the cart changed, raises CartError when refused."""
        have = self.items.get(code, 0)
        if op == ADD:
            want = have + n
        elif op == REMOVE:
            want = have - n if have > n else 0
        elif op == SET:
            want = n
        else:
            raise CartError("unknown operation %r" % op)
        if want > MAX_COUNT:
            raise CartError("%s would exceed %d items" % (code, MAX_COUNT))
        if want == have:
            return False
        if want == 0:
            del self.items[code]
        else:
            if not have and len(self.items) >= MAX_CODES:
                raise CartError("cart is full (%d product codes)" % MAX_CODES)
            self.items[code] = want
        return True

    def clear(self):
        changed = bool(self.items)
        self.items = {}
        return changed

    def count(self):
        return sum(self.items.values())

    def snapshot(self):
        return dict(self.items)
