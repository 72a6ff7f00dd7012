# The basket's state machine, pure: commands and item events in; what to publish, persist and
# show out. The runtime asks `take_update()` / `take_dirty()` after each loop turn, so several
# events in one turn give one update. Log lines are queued in `notes` for the runtime to print.
from mqtt_controller import protocol
from mqtt_controller.cart import Cart, CartError, parse_item_line

IDLE = "idle"
SHOPPING = "shopping"
MAX_NOTES = 32


class Controller:
    def __init__(self, basket_id, state=IDLE, items=None, total=None):
        self.basket_id = basket_id
        self.state = state if state in (IDLE, SHOPPING) else IDLE
        self.cart = Cart(items if self.state == SHOPPING else None)
        self.total = total if protocol.is_int(total) and total >= 0 else None
        self.counters = {"commands": 0, "rejected_commands": 0, "items": 0,
                         "rejected_items": 0, "ignored_items": 0}
        self.notes = []  # (level, text) for the runtime's logger
        self._update = False
        self._dirty = False

    # -- inputs -------------------------------------------------------------------------------
    def command(self, payload):
        """Handles a payload from ${MQTT_TOPIC}/status; returns the command name or None."""
        try:
            cmd, arg = protocol.parse_command(payload, self.basket_id)
        except protocol.Rejected as e:
            self.reject_command(str(e))
            return None
        self.counters["commands"] += 1
        if cmd == protocol.START:
            if self.state == SHOPPING:
                self._note("info", "start while shopping: re-publishing the current cart")
            else:
                self.state = SHOPPING
                self.cart.clear()
                self.total = None
                self._dirty = True
                self._note("info", "session started")
            self._update = True
        elif cmd == protocol.END:
            if self.state == IDLE:
                self._note("info", "end while idle: ignored")
                return cmd
            self.state = IDLE
            self.cart.clear()
            self.total = None
            self._update = True
            self._dirty = True
            self._note("info", "session ended")
        else:
            self.total = arg
            self._dirty = True
            self._note("info", "TOTAL %s KRW" % group_thousands(arg))
        return cmd

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
            self._update = True
            self._dirty = True
        return changed

    def _reject_item(self, e):
        self.counters["rejected_items"] += 1
        self._note("warning", "item rejected (#%d): %s" % (self.counters["rejected_items"], e))

    def resync(self):
        """After a (re)connect the current cart is published again."""
        self._update = True

    # -- outputs ------------------------------------------------------------------------------
    def take_update(self):
        """The update payload to publish now, or None when nothing changed since the last one."""
        if not self._update:
            return None
        self._update = False
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
        """What a display shows: (state, basket_id, item_count, total or None)."""
        return (self.state, self.basket_id, self.cart.count(), self.total)

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
