# The basket's state machine, pure: commands and item events in; what to publish, persist and
# show out. The runtime asks `pending_update()` / `take_update()` / `take_dirty()` after each
# loop turn, so several events in one turn give one update (and the runtime paces item-driven
# ones). Log lines are queued in `notes` for the runtime to print.
from mqtt_controller import protocol
from mqtt_controller.cart import Cart, CartError, parse_item_line

IDLE = "idle"
SHOPPING = "shopping"
MAX_NOTES = 32

# pending_update(): nothing to publish, an item-driven update (the runtime may pace it), or one
# caused by a command or a reconnect (goes at once).
NONE = 0
PACED = 1
NOW = 2


class Controller:
    def __init__(self, basket_id, state=IDLE, items=None, total=None):
        self.basket_id = basket_id
        self.state = state if state in (IDLE, SHOPPING) else IDLE
        self.cart = Cart(items if self.state == SHOPPING else None)  # raises CartError
        # The total shown: only ever one for the cart held now (a restored one was saved with
        # its cart: any cart change clears it), never while idle.
        self.total = None
        if self.state == SHOPPING and protocol.is_int(total) and total >= 0:
            self.total = total
        # True once a total for the current cart arrived (a total without `cart` counts too):
        # until then the runtime re-publishes the update now and then.
        self.confirmed = self.total is not None
        self.unknown = 0  # cart lines the shown total's catalogue does not know (not persisted)
        # The idle display's notice from a pin command, e.g. "ready | PIN 482913" (never
        # persisted: the service sends it again when the basket comes online).
        self.notice = None
        self.counters = {"commands": 0, "rejected_commands": 0, "items": 0,
                         "rejected_items": 0, "ignored_items": 0, "stale_totals": 0}
        self.notes = []  # (level, text) for the runtime's logger
        self._update = NONE
        self._dirty = False
        self._digest = None  # cart_digest() of the cart, computed when first asked for

    # -- inputs -------------------------------------------------------------------------------
    def command(self, payload):
        """Handles a payload from ${MQTT_TOPIC}/status; returns the command name or None."""
        try:
            cmd, arg = protocol.parse_command(payload, self.basket_id)
        except protocol.Rejected as e:
            self.reject_command(str(e))
            return None
        self.counters["commands"] += 1
        if cmd == protocol.PIN:
            if self.state == SHOPPING:
                self._note("info", "pin while shopping: ignored")
            else:
                self.notice = "%s | %s" % ("thank you" if arg[2] else "ready",
                                           "PIN " + arg[0] if arg[0] else
                                           "locked until " + arg[1])
                self._note("info", "pin: display notice set")
            return cmd
        if cmd != protocol.TOTAL:
            self.notice = None  # start, end: a PIN is used up (the service sends a new one)
        if cmd == protocol.START:
            if self.state == SHOPPING:
                self._note("info", "start while shopping: re-publishing the current cart")
            else:
                self.state = SHOPPING
                self.cart.clear()
                self._cart_changed()
                self._note("info", "session started")
            self._update = NOW
        elif cmd == protocol.END:
            if self.state == IDLE:
                self._note("info", "end while idle: ignored")
                return cmd
            self.state = IDLE
            self.cart.clear()
            self._cart_changed()
            self._update = NOW
            self._note("info", "session ended")
        else:
            self._total(arg[0], arg[1], arg[2])
        return cmd

    def _total(self, price, cart, unknown):
        if self.state != SHOPPING:
            self._note("info", "total %s KRW while idle: not shown" % group_thousands(price))
            return
        if cart is not None and cart != self.digest():
            self.counters["stale_totals"] += 1
            self._note("info", "stale total %s KRW for cart %s ignored (#%d): this cart is %s"
                       % (group_thousands(price), protocol.short(cart, 32),
                          self.counters["stale_totals"], self.digest()))
            return
        self.confirmed = True
        self.unknown = unknown
        if price != self.total:
            self.total = price
            self._dirty = True
        self._note("info", "TOTAL %s KRW" % group_thousands(price))

    def digest(self):
        """cart_digest() of the cart held now; computed once per cart change."""
        if self._digest is None:
            self._digest = protocol.cart_digest(self.cart.items)
        return self._digest

    def _cart_changed(self):
        # The total shown was for the old cart: hidden until one for this cart arrives.
        self.total = None
        self.unknown = 0
        self.confirmed = False
        self._digest = None
        self._dirty = True

    def reject_command(self, why):
        self.counters["rejected_commands"] += 1
        self._note("warning", "status rejected (#%d): %s" % (self.counters["rejected_commands"],
                                                             why))

    def item(self, line):
        """One item event in the line protocol (`CODE`, `-CODE`, `CODE=N`); True if it applied."""
        try:
            parsed = parse_item_line(line)
        except CartError as e:
            self._reject_item(e)
            return False
        if parsed is None:
            return False
        if self.state != SHOPPING:
            self.counters["ignored_items"] += 1
            self._note("info", "item %r ignored: no session (send start first)" % parsed[1])
            return False
        op, code, n = parsed
        try:
            changed = self.cart.apply(op, code, n)
        except CartError as e:
            self._reject_item(e)
            return False
        self.counters["items"] += 1
        if changed:
            self._cart_changed()
            if self._update == NONE:
                self._update = PACED
        return changed

    def _reject_item(self, e):
        self.counters["rejected_items"] += 1
        self._note("warning", "item rejected (#%d): %s" % (self.counters["rejected_items"], e))

    def resync(self):
        """After a (re)connect the current cart is published again, at once."""
        self._update = NOW

    # -- outputs ------------------------------------------------------------------------------
    def pending_update(self):
        """NONE, PACED (only items changed the cart since the last update) or NOW."""
        return self._update

    def take_update(self):
        """The update payload to publish, or None when nothing changed since the last one."""
        if self._update == NONE:
            return None
        self._update = NONE
        return protocol.encode_update(self.basket_id, self.cart.items)

    def take_dirty(self):
        """The state to persist, or None when it did not change since the last call."""
        if not self._dirty:
            return None
        self._dirty = False
        return self.snapshot()

    def snapshot(self):
        return {"state": self.state, "list": self.cart.snapshot(), "total": self.total}

    def view(self):
        """What a display shows: (state, basket_id, item_count, total or None, notice or None);
        the total is one for the cart held now, and None while idle. The notice: while idle the
        pin command's "ready | PIN 482913", "thank you | locked until 08:05" ...; while
        shopping "ask staff" when the shown total has lines the catalogue does not know."""
        if self.state == IDLE:
            notice = self.notice
        else:
            notice = "ask staff" if self.unknown else None
        return (self.state, self.basket_id, self.cart.count(), self.total, notice)

    def take_notes(self):
        notes = self.notes
        self.notes = []
        return notes

    def _note(self, level, text):
        if len(self.notes) < MAX_NOTES:
            self.notes.append((level, text))


def group_thousands(n):
    """15000 -> "15,000" (MicroPython's format() has no "," option)."""
    s = str(abs(n))
    out = ""
    while len(s) > 3:
        out = "," + s[-3:] + out
        s = s[:-3]
    return ("-" if n < 0 else "") + s + out
