# The one back-off policy (backoff.Backoff), and the item source that reopens with it.
import os

from mqtt_controller import backoff, compat, items
from mqtt_controller.backoff import Backoff


def test_doubling_to_the_cap_and_reset():
    b = Backoff(500, 16000)
    assert [b.next_delay() for _ in range(8)] == [500, 1000, 2000, 4000, 8000, 16000, 16000,
                                                 16000]
    assert b.failures == 8
    assert b.delay() == 16000 and b.failures == 8  # delay() does not move on
    b.reset()
    assert b.failures == 0 and b.next_delay() == 500
    assert Backoff(5000, 3000).next_delay() == 3000  # a first step above the cap is capped


def test_jitter_draws_from_the_upper_half_of_each_step():
    real = backoff.random_below
    try:
        asked = []
        backoff.random_below = lambda n: asked.append(n) or 0
        b = Backoff(1000, 30000, jitter=True)
        assert [b.next_delay() for _ in range(7)] == [500, 1000, 2000, 4000, 8000, 15000, 15000]
        assert asked == [501, 1001, 2001, 4001, 8001, 15001, 15001]
        backoff.random_below = lambda n: n - 1
        b.reset()
        assert [b.next_delay() for _ in range(7)] == [1000, 2000, 4000, 8000, 16000, 30000,
                                                     30000]
    finally:
        backoff.random_below = real
    b = Backoff(1000, 30000, jitter=True)
    for step in (1000, 2000, 4000):
        assert step // 2 <= b.next_delay() <= step  # the real random source


def test_a_link_that_stayed_up_long_enough_starts_over():
    b = Backoff(1000, 30000, stable_ms=10000)
    b.next_delay()
    b.next_delay()
    b.up(1000)
    b.down(1000 + 9999)  # too short: the back-off goes on
    assert b.next_delay() == 4000
    b.up(50000)
    b.down(60000)
    assert b.failures == 0 and b.next_delay() == 1000
    b.down(99999999)  # not up: nothing to judge
    assert b.failures == 1
    plain = Backoff(1000, 30000)  # no stable_ms: only reset() starts over
    plain.next_delay()
    plain.up(0)
    plain.down(10 ** 6)
    assert plain.failures == 1


class FlakyOpener:
    """An item source's opener: fails while `down` is true, then opens `path`."""

    def __init__(self, path):
        self.path = path
        self.down = True
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.down:
            raise OSError(2, "no such file")
        return open(self.path, "rb")


def test_an_item_source_reopens_with_the_devices_back_off():
    path = "/tmp/basket-items-%d" % compat.random_below(10 ** 9)
    with open(path, "w") as f:
        f.write("MLON\n")
    real = items.ticks_ms
    items.ticks_ms = lambda: 0
    try:
        opener = FlakyOpener(path)
        src = items.StreamSource(path, opener)
    finally:
        items.ticks_ms = real
    try:
        assert opener.calls == 1 and src.pollables() == []
        # Retried 0.5 s, 1 s, 2 s ... after each failure, 16 s at most (it was a fixed 5 s),
        # and the loop may sleep until then.
        t = 0
        for step in (500, 1000, 2000, 4000, 8000, 16000, 16000):
            assert src.next_ms(t) == step, (t, step)
            calls = opener.calls
            assert src.read(t + step - 1) == [] and opener.calls == calls
            t += step
            src.read(t)
            assert opener.calls == calls + 1
        opener.down = False
        t += 16000
        assert src.read(t) == [] and len(src.pollables()) == 1  # open: back-off reset
        assert src.backoff.failures == 0 and src.next_ms(t) is None
        lines = []
        for _ in range(5):  # MicroPython's reader takes what poll() shows: maybe some turns
            lines += src.read(t)
        assert lines == [b"MLON"], lines
    finally:
        src.close()
        os.remove(path)
