# The loop (Runtime.step) driven in-process with a scripted link, a fake clock and a poller that
# "sleeps" by moving the clock: pacing, convergence, persist-then-publish, restore, clean stop.
import json
import os

from _util import MICROPYTHON, skip

from mqtt_controller import compat, log, protocol, runtime
from mqtt_controller.controller import SHOPPING, Controller

STATUS = "basket/1/status"
UPDATE = "basket/1/update"


class Cfg:
    topic = "basket/1"
    basket_id = 1
    host = "127.0.0.1"
    port = 1883
    client_id = "basket-1"

    def __init__(self, state_file=""):
        self.state_file = state_file


class Clock:
    def __init__(self):
        self.t = 100000

    def __call__(self):
        return self.t


class FakePoller:
    """Sleeping in poll() is the clock moving on by the timeout; nothing is ever ready."""

    def __init__(self, clock):
        self.clock = clock
        self.timeouts = []

    def register(self, obj, mask):
        pass

    def poll(self, timeout):
        self.timeouts.append(timeout)
        self.clock.t += timeout
        return []


class FakeLink:
    """The client interface the runtime uses, scripted: `inbox` holds the status payloads the
    next service() hands over; `events` records what went out, in order."""

    def __init__(self, clock=None, state_file=""):
        self.clock = clock
        self.state_file = state_file
        self.sock = None
        self.inflight = {}
        self.inbox = []
        self.events = []
        self.updates = []  # (time, payload, retain, qos, the state file's list when published)
        self.on_service = None
        self._unacked = 0

    def set_last_will(self, topic, payload, retain=False, qos=0):
        pass

    def connect(self):
        return False

    def subscribe(self, topic, qos=1):
        pass

    def publish(self, topic, payload, retain=False, qos=0):
        self.events.append(("publish", topic, payload))
        if topic == UPDATE:
            on_disk = None
            if self.state_file:
                try:
                    with open(self.state_file) as f:
                        on_disk = json.loads(f.read())["list"]
                except OSError:
                    pass
            self.updates.append((self.clock() if self.clock else 0, payload, retain, qos,
                                 on_disk))

    def service(self, readable=True):
        if self.on_service is not None:  # called mid-read: before the messages are handed over
            self.on_service()
        msgs = [(STATUS, p) for p in self.inbox]
        self.inbox = []
        self._unacked += len(msgs)
        return msgs

    def send_acks(self):
        if self._unacked:
            self.events.append(("acks", self._unacked))
            self._unacked = 0

    def drop_acks(self):
        if self._unacked:
            self.events.append(("dropped", self._unacked))
            self._unacked = 0

    def next_ms(self):
        return None

    def poll(self, timeout_ms):
        return []

    def close(self):
        pass

    def disconnect(self):
        self.events.append(("disconnect",))


class FakeSource:
    def __init__(self):
        self.lines = []

    def pollables(self):
        return []

    def read(self, now):
        lines, self.lines = self.lines, []
        return lines

    def next_ms(self, now):
        return None

    def set_active(self, shopping):
        pass

    def close(self):
        pass


def with_clock(test):
    """Runs test(clock) with runtime's ticks_ms replaced by a fake clock."""
    def run():
        real = runtime.ticks_ms
        clock = Clock()
        runtime.ticks_ms = clock
        try:
            test(clock)
        finally:
            runtime.ticks_ms = real
    return run


def started(clock, controller=None, state_file=""):
    link = FakeLink(clock, state_file)
    src = FakeSource()
    rt = runtime.Runtime(Cfg(state_file), controller=controller, sources=[src], client=link)
    rt.poller = FakePoller(clock)
    rt.step(0)  # connects, publishes the (re)connect update
    assert rt.connected
    return rt, link, src


def total(price, cart=None):
    extra = ',"cart":"%s"' % cart if cart is not None else ""
    return ('{"msg":"total","payload":{"basketid":1,"totalprice":%d%s}}' % (price, extra)).encode()


class Captured:
    """Replaces some log functions for a while; collects (level, text)."""

    def __init__(self, *levels):
        self.lines = []
        self.saved = {}
        for lvl in levels:
            self.saved[lvl] = getattr(log, lvl)
            setattr(log, lvl, self._catcher(lvl))

    def _catcher(self, lvl):
        def catch(msg, *args):
            self.lines.append((lvl, msg % args if args else msg))
        return catch

    def restore(self):
        for lvl in self.saved:
            setattr(log, lvl, self.saved[lvl])

    def text(self, lvl):
        return [t for v, t in self.lines if v == lvl]


def _tmpdir(tag):
    return "/tmp/basket-rt-%s-%d" % (tag, compat.random_below(10 ** 9))


def _rmtree(d):
    try:
        for name in os.listdir(d):
            os.remove(d + "/" + name)
        os.rmdir(d)
    except OSError:
        pass


@with_clock
def test_item_updates_are_paced_to_five_a_second_commands_go_at_once(clock):
    rt, link, src = started(clock)
    link.inbox.append(b"start")
    rt.step(0)
    t0 = clock.t
    assert link.updates[-1][:2] == (t0, b'{"id":1,"list":{}}')
    n = len(link.updates)
    for _ in range(50):  # a burst of 50 items, 10 ms apart
        src.lines.append("MLON")
        rt.step(10)
    rt.step(60000)  # the one update after the burst comes without a new event ...
    assert rt.poller.timeouts[-1] <= 200, rt.poller.timeouts[-5:]  # ... and nothing busy-waits
    sent = link.updates[n:]
    times = [u[0] - t0 for u in sent]
    assert times == [200, 400, 600], times
    assert sent[-1][1] == b'{"id":1,"list":{"MLON":50}}'
    assert [u[2:4] for u in sent] == [(True, 1)] * 3
    assert all(b > 0 for b in rt.poller.timeouts[-3:])
    src.lines.append("APPL")
    rt.step(0)
    link.inbox.append(b"end")  # a command: at once, although an item update went 0 ms ago
    rt.step(0)
    assert link.updates[-1][:2] == (clock.t, b'{"id":1,"list":{}}')


@with_clock
def test_an_unanswered_update_is_republished_with_doubling_back_off(clock):
    rt, link, src = started(clock, Controller(1, SHOPPING, {"APPL": 1}))
    t0 = link.updates[-1][0]
    upd = b'{"id":1,"list":{"APPL":1}}'
    assert link.updates[-1][1] == upd
    for _ in range(8):
        rt.step(60000)
    times = [u[0] - t0 for u in link.updates[1:]]
    assert times == [3000, 9000, 21000, 45000, 93000, 153000, 213000, 273000], times
    assert all(u[1:4] == (upd, True, 1) for u in link.updates)
    n = len(link.updates)
    link.inbox.append(total(100, protocol.cart_digest({"MLON": 1})))  # another cart's: stale
    rt.step(60000)
    assert len(link.updates) == n + 1  # still not confirmed
    link.inbox.append(total(900, protocol.cart_digest({"APPL": 1})))
    rt.step(0)
    assert rt.controller.view() == (SHOPPING, 1, 1, 900)
    n = len(link.updates)
    for _ in range(5):
        rt.step(60000)
    assert len(link.updates) == n  # confirmed: quiet
    src.lines.append("APPL")  # a cart change starts from 3 s again
    rt.step(0)
    t1 = link.updates[-1][0]
    rt.step(60000)
    rt.step(60000)
    assert [u[0] - t1 for u in link.updates[-3:]] == [0, 3000, 9000]
    link.inbox.append(total(1800))  # no `cart` (the original backend): confirms as well
    rt.step(0)
    n = len(link.updates)
    rt.step(60000)
    rt.step(60000)
    assert len(link.updates) == n
    link.inbox.append(b"end")  # idle: nothing to confirm
    rt.step(0)
    n = len(link.updates)
    rt.step(60000)
    assert len(link.updates) == n


@with_clock
def test_no_update_goes_out_before_its_state_is_on_disk(clock):
    d = _tmpdir("save")
    path = d + "/state.json"  # its directory is missing: every write fails, as on a full disk
    cap = Captured("error", "info")
    try:
        rt, link, src = started(clock, state_file=path)
        n = len(link.updates)
        link.inbox.append(b"start")
        rt.step(0)
        for code in ("MLON", "MLON", "APPL"):
            src.lines.append(code)
            rt.step(0)
        for _ in range(4):  # retried after 1 s, 2 s, 4 s, 8 s; no busy waiting
            rt.step(60000)
        assert len(link.updates) == n, link.updates
        assert rt.poller.timeouts[-4:] == [1000, 2000, 4000, 8000], rt.poller.timeouts
        errors = cap.text("error")
        assert len(errors) == 1 and "cannot write state file" in errors[0], errors
        os.mkdir(d)  # the disk is back
        rt.step(60000)
        assert rt.poller.timeouts[-1] == 16000
        assert [u[1] for u in link.updates[n:]] == [b'{"id":1,"list":{"APPL":1,"MLON":2}}']
        # Every update went out with its cart already in the file.
        for u in link.updates[n:]:
            assert u[4] == {"APPL": 1, "MLON": 2}, u
        assert any("after 5 failed attempt(s)" in t for t in cap.text("info")), cap.lines
        src.lines.append("PCH4")
        rt.step(60000)
        assert link.updates[-1][4] == {"APPL": 1, "MLON": 2, "PCH4": 1}
        assert link.updates[-1][1] == b'{"id":1,"list":{"APPL":1,"MLON":2,"PCH4":1}}'
    finally:
        cap.restore()
        _rmtree(d)


def test_state_file_with_out_of_range_entries_starts_idle_with_a_warning():
    d = _tmpdir("restore")
    os.mkdir(d)
    path = d + "/state.json"
    many = {}
    for i in range(100):
        many["C%d" % i] = 1
    bad = [{"state": "shopping", "list": {"bad code!": 1}},
           {"state": "shopping", "list": {"MLON": 5000}},
           {"state": "shopping", "list": {"MLON": -3}},
           {"state": "shopping", "list": many},
           {"state": "shopping", "list": {"MLON": "2"}},
           {"state": "shopping", "list": {"MLON": True}},
           {"state": "shopping", "list": {"MLON": 1.5}},
           {"state": "shopping", "list": {"MLON": None}},
           {"state": "shopping", "list": {"MLON": 2}, "total": "lots"}]
    cap = Captured("warning", "info")
    try:
        for doc in bad:
            with open(path, "w") as f:
                f.write(json.dumps(doc))
            c = runtime.restore(Cfg(path))
            if "total" in doc:  # a bad total alone: the cart is kept, the total dropped
                assert c.view() == (SHOPPING, 1, 2, None), doc
                continue
            assert c.view() == ("idle", 1, 0, None), doc
        warnings = cap.text("warning")
        assert len(warnings) == len(bad) - 1, cap.lines
        assert all("starting idle" in w for w in warnings), warnings
    finally:
        cap.restore()
        _rmtree(d)


def test_a_signal_mid_read_stops_after_the_turn_and_acknowledges():
    if MICROPYTHON:
        skip("MicroPython has no signal module (Ctrl-C raises KeyboardInterrupt)")
    import signal
    import threading
    import time

    link = FakeLink()
    rt = runtime.Runtime(Cfg(), controller=Controller(1), client=link)

    def signal_mid_read():  # the SIGTERM lands while the client is reading a command
        link.on_service = None
        link.inbox.append(b"start")
        os.kill(os.getpid(), signal.SIGTERM)

    link.on_service = signal_mid_read
    before = signal.getsignal(signal.SIGTERM)
    rt.run()
    # The command read in that turn was handled, its update sent, then acknowledged; then
    # offline and a clean DISCONNECT.
    ev = [e for e in link.events if e[0] != "publish" or e[1] != "basket/1/availability"
          or e[2] == b"offline"]
    assert ev[-4:] == [("publish", UPDATE, b'{"id":1,"list":{}}'), ("acks", 1),
                       ("publish", "basket/1/availability", b"offline"), ("disconnect",)], ev
    assert signal.getsignal(signal.SIGTERM) == before  # handed back

    # A signal while the loop sleeps in poll() wakes it at once (the wakeup pipe).
    link2 = FakeLink()
    rt2 = runtime.Runtime(Cfg(), controller=Controller(1), client=link2)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t = time.monotonic()
    rt2.run()  # sleeps up to MAX_WAIT_MS (60 s) unless woken
    took = time.monotonic() - t
    timer.join()
    assert took < 2.0, took
    assert link2.events[-1] == ("disconnect",)
