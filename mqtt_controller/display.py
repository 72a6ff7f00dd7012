# Displays: render(view) with view = (state, basket_id, item_count, total or None).
# The console display prints one line per change; hardware displays plug in by DISPLAY spec.


def format_view(view):
    from mqtt_controller.controller import group_thousands

    state, basket_id, count, total = view
    if state != "shopping":
        text = "basket %d | idle" % basket_id
    else:
        text = "basket %d | %d item%s" % (basket_id, count, "" if count == 1 else "s")
    if total is not None:
        text += " | TOTAL %s KRW" % group_thousands(total)
    return text


class ConsoleDisplay:
    def __init__(self):
        self.last = None

    def render(self, view):
        if view != self.last:
            self.last = view
            print("[display] " + format_view(view))

    def close(self):
        pass


def open_display(spec):
    if spec in ("", "console"):
        return ConsoleDisplay()
    if spec == "none":
        return None
    raise ValueError("DISPLAY must be console or none (got %r)" % spec)
