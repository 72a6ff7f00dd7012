# The one back-off policy: how long to wait before the next try of whatever keeps failing (the
# broker link, an RFID reader, an item source, a state write, an unanswered update). Pure: the
# caller owns the clock and the timers; this only says how long.
from mqtt_controller.compat import random_below, ticks_diff

# A local device that vanished (an RFID reader, an item source's path): 0.5 s doubling to 16 s.
REOPEN_FIRST_MS = 500
REOPEN_CAP_MS = 16000


class Backoff:
    """Delays first_ms, 2 * first_ms, 4 * first_ms ... capped at cap_ms. With jitter each delay
    is drawn from the upper half of its step (0.5-1 s for a 1 s step), so baskets that lost the
    same broker do not come back in step. With stable_ms, a link that stayed up that long starts
    again from first_ms when it is lost (up() when it comes up, down() when it goes)."""

    def __init__(self, first_ms, cap_ms, jitter=False, stable_ms=None):
        self.first_ms = min(first_ms, cap_ms)
        self.cap_ms = cap_ms
        self.jitter = jitter
        self.stable_ms = stable_ms
        self.failures = 0  # steps taken since the last reset
        self._step = self.first_ms
        self._up_at = None

    def delay(self):
        """The delay before the next try, without moving on a step."""
        d = self._step
        if self.jitter:
            d = d // 2 + random_below(d // 2 + 1)
        return d

    def next_delay(self):
        """delay(), then one step on (the call after each failure)."""
        d = self.delay()
        self.failures += 1
        self._step = min(self._step * 2, self.cap_ms)
        return d

    def reset(self):
        """After a success: the next delay is first_ms again."""
        self.failures = 0
        self._step = self.first_ms

    def up(self, now_ms):
        """The link came up at now_ms (ticks)."""
        self._up_at = now_ms

    def down(self, now_ms):
        """The link went down at now_ms: a link that stayed up stable_ms resets the back-off."""
        if (self._up_at is not None and self.stable_ms is not None
                and ticks_diff(now_ms, self._up_at) >= self.stable_ms):
            self.reset()
        self._up_at = None
