# The loop (Runtime.step) driven in-process with a scripted link, a fake clock and a poller that
# "sleeps" by moving the clock: pacing, convergence, persist-then-publish-then-ack, one update a
# turn, resync and back-off on the link, failing display and item source, restore, clean stop,
# and the verbs and turn hook a supervisor (board.py) uses.
import json
import os

from _util import MICROPYTHON, raises, skip

from mqtt_controller import backoff, board, compat, log, packet, protocol, runtime, startup
from mqtt_controller.controller import SHOPPING, Controller
from mqtt_controller.mqtt import MQTTClient

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
    """Sleeping in poll() is the clock moving on by the timeout; a registered object with a
    true `ready` (a ScriptedSock with bytes waiting) is ready at once instead."""

    def __init__(self, clock):
        self.clock = clock
        self.timeouts = []
        self.objs = []

    def register(self, obj, mask):
        self.objs.append(obj)

    def poll(self, timeout):
        self.timeouts.append(timeout)
        ready = [(o, 1) for o in self.objs if getattr(o, "ready", False)]
        if not ready:
            self.clock.t += timeout
        return ready


class FakeSelect:
    """Stands in for the select module in runtime: every poll() is the one FakePoller, with
    its registrations cleared (the runtime makes a new poller when its pollables change)."""

    POLLIN = 1

    def __init__(self, clock):
        self.poller = FakePoller(clock)

    def poll(self):
        self.poller.objs = []
        return self.poller


class FakeLink:
    """The client interface the runtime uses, scripted: `script` holds what the next connect()
    calls do (None: the broker takes it; an exception: raised), then each one succeeds;
    `inbox` holds the status payloads the next service() hands over, `fail` an exception it
    raises instead (the link breaks); `events` records what went out, in order."""

    def __init__(self, clock=None, state_file="", script=()):
        self.clock = clock
        self.state_file = state_file
        self.script = list(script)
        self.sock = None
        self.inflight = {}
        self.inbox = []
        self.fail = None
        self.events = []
        self.updates = []  # (time, payload, retain, qos, the state file's list when published)
        self.connects = []  # the time of every connect() call
        self.closes = 0
        self.on_service = None
        self.refused = []  # optional subscriptions the "broker" refused
        self.subscribed = []  # (topic, optional) of every subscribe()
        self._unacked = 0

    def set_last_will(self, topic, payload, retain=False, qos=0):
        pass

    def connect(self):
        self.connects.append(self.clock() if self.clock else 0)
        step = self.script.pop(0) if self.script else None
        if step is not None:
            raise step
        return False

    def subscribe(self, topic, qos=1, optional=False):
        self.subscribed.append((topic, optional))

    def take_refused(self):
        out, self.refused = self.refused, []
        return out

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
        if self.fail is not None:
            e, self.fail = self.fail, None
            raise e
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
        self.closes += 1

    def disconnect(self):
        self.events.append(("disconnect",))


class FakeSource:
    """`lines` go out at the next read(); `fail` is raised by it instead (once)."""

    def __init__(self):
        self.lines = []
        self.fail = None
        self.reads = 0

    def pollables(self):
        return []

    def read(self, now):
        self.reads += 1
        if self.fail is not None:
            e, self.fail = self.fail, None
            raise e
        lines, self.lines = self.lines, []
        return lines

    def next_ms(self, now):
        return None

    def set_active(self, shopping):
        pass

    def close(self):
        pass


def with_clock(test):
    """Runs test(clock) with runtime's (and board's) ticks_ms replaced by a fake clock and the
    back-off's jitter pinned to its low end (each delay half its step: 500, 1000, 2000 ms ...)."""
    def run():
        real = runtime.ticks_ms, board.ticks_ms, backoff.random_below, runtime.select
        clock = Clock()
        runtime.ticks_ms = board.ticks_ms = clock
        backoff.random_below = lambda n: 0
        runtime.select = FakeSelect(clock)
        try:
            test(clock)
        finally:
            runtime.ticks_ms, board.ticks_ms, backoff.random_below, runtime.select = real
    return run


def runtime_on(clock, link, controller=None, state_file="", sources=None, display=None):
    return runtime.Runtime(Cfg(state_file), controller=controller, client=link,
                           sources=sources, display=display)


def started(clock, controller=None, state_file="", display=None):
    link = FakeLink(clock, state_file)
    src = FakeSource()
    rt = runtime_on(clock, link, controller, state_file, [src], display)
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
    assert rt.controller.view() == (SHOPPING, 1, 1, 900, None)
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
            c = startup.restore(Cfg(path))
            if "total" in doc:  # a bad total alone: the cart is kept, the total dropped
                assert c.view() == (SHOPPING, 1, 2, None, None), doc
                continue
            assert c.view() == ("idle", 1, 0, None, None), doc
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


# -- persist, then publish, then acknowledge: the built-in client over a scripted socket --------
class ScriptedSock:
    """The broker's side of a link: `feed()` queues bytes for recv() (then EAGAIN); every send()
    is kept whole with the state file's content at that moment."""

    def __init__(self, state_file=""):
        self.state_file = state_file
        self.inbox = b""
        self.writes = []  # (bytes, the state file's document when they were sent)

    @property
    def ready(self):
        return bool(self.inbox)

    def feed(self, data):
        self.inbox += data

    def recv(self, n):
        if not self.inbox:
            raise OSError(11, "would block")
        chunk, self.inbox = self.inbox[:n], self.inbox[n:]
        return chunk

    def send(self, data):
        on_disk = None
        if self.state_file:
            try:
                with open(self.state_file) as f:
                    on_disk = json.loads(f.read())
            except OSError:
                pass
        self.writes.append((bytes(data), on_disk))
        return len(data)

    def close(self):
        pass


def make_client(script):
    """The built-in MQTTClient whose connect() plays `script` (umqtt.simple's make_client, the
    socket scripted): each entry a ScriptedSock (the broker took the CONNECT, a new session) or
    an exception (raised, as a refused or unreachable broker does)."""

    class Scripted(MQTTClient):
        def connect(self):
            self.close()
            step = script.pop(0)
            if isinstance(step, Exception):
                raise step
            self.sock = step
            return False

    return Scripted("basket-1", "127.0.0.1", keepalive=0)


def packets(data):
    """[(type, topic or pid, payload)] of the MQTT packets in one write."""
    out = []
    for first, body, _ in packet.Reader().feed(data):
        if first & 0xF0 == packet.PUBLISH:
            topic, payload = packet.parse_publish(first, body)[:2]
            out.append(("publish", topic, payload))
        else:
            out.append((first & 0xF0, packet.parse_pid(body, "ack"), None))
    return out


@with_clock
def test_a_command_is_persisted_then_its_update_sent_then_acknowledged_in_the_same_write(clock):
    d = _tmpdir("order")
    os.mkdir(d)
    path = d + "/state.json"
    sock = ScriptedSock(path)
    try:
        rt = runtime_on(clock, make_client([sock]), state_file=path, sources=[FakeSource()])
        rt.step(0)
        assert rt.connected
        n = len(sock.writes)
        sock.feed(packet.publish(STATUS, b"start", qos=1, pid=7))
        rt.step(0)
        new = sock.writes[n:]
        # One write: the update, then the PUBACK of the command that caused it; the state
        # file already held the cart when it went.
        assert len(new) == 1, new
        data, on_disk = new[0]
        assert packets(data) == [("publish", UPDATE, b'{"id":1,"list":{}}'),
                                 (packet.PUBACK, 7, None)], packets(data)
        assert on_disk is not None and on_disk["state"] == "shopping", on_disk
        # A command that changes nothing (a stale total) is acknowledged at the end of the turn.
        sock.feed(packet.publish(STATUS, total(5, "ab" * 16), qos=1, pid=8))
        rt.step(0)
        assert [packets(w[0]) for w in sock.writes[n + 1:]] == [[(packet.PUBACK, 8, None)]]
    finally:
        _rmtree(d)


# -- one update a turn ------------------------------------------------------------------------
@with_clock
def test_several_events_in_one_turn_give_one_state_write_and_one_update(clock):
    saves = []
    real_save = runtime.store.save
    runtime.store.save = lambda path, state: saves.append(state)
    try:
        rt, link, src = started(clock, state_file="/nonexistent/state.json")
        n, k = len(link.updates), len(saves)
        link.inbox.extend([b"start", b"end", b"start"])  # three commands in one read
        rt.step(0)
        assert [u[1] for u in link.updates[n:]] == [b'{"id":1,"list":{}}']
        assert len(saves) == k + 1
        clock.t += 1000
        n, k = len(link.updates), len(saves)
        src.lines.extend(["MLON", "MLON", "APPL", "-APPL", "SODA=3"])  # five items, one turn
        rt.step(0)
        assert [u[1] for u in link.updates[n:]] == [b'{"id":1,"list":{"MLON":2,"SODA":3}}']
        assert saves[k:] == [{"state": "shopping", "list": {"MLON": 2, "SODA": 3},
                              "total": None}], saves[k:]
    finally:
        runtime.store.save = real_save


# -- the link: resync, back-off ---------------------------------------------------------------
@with_clock
def test_after_a_reconnect_the_cart_held_now_is_published_once(clock):
    rt, link, src = started(clock, Controller(1, SHOPPING, {"APPL": 1}))
    link.inbox.append(total(900))  # confirmed: no re-publishing in the way
    rt.step(0)
    n = len(link.updates)
    link.fail = OSError(104)
    rt.step(0)
    assert not rt.connected
    src.lines.extend(["MLON", "MLON"])  # shopping goes on offline: nothing is published
    rt.step(0)
    assert len(link.updates) == n
    rt.step(60000)  # sleeps the first back-off step (0.5 s) ...
    rt.step(60000)  # ... and reconnects
    assert rt.connected
    assert [u[1] for u in link.updates[n:]] == [b'{"id":1,"list":{"APPL":1,"MLON":2}}']
    rt.step(1000)
    assert len(link.updates) == n + 1  # once (a re-publish would come 3 s after it)
    # Idle, the reconnect publishes the empty list.
    link.inbox.append(b"end")
    rt.step(0)
    n = len(link.updates)
    link.fail = OSError(104)
    rt.step(0)
    rt.step(60000)
    rt.step(60000)
    assert rt.connected
    assert [u[1] for u in link.updates[n:]] == [b'{"id":1,"list":{}}']


@with_clock
def test_connect_attempts_back_off_doubling_with_jitter_to_the_cap(clock):
    refused = [OSError(111)] * 8
    link = FakeLink(clock, script=refused)
    rt = runtime_on(clock, link)
    cap = Captured("warning")
    try:
        for _ in range(9):
            rt.step(60000)
    finally:
        cap.restore()
    assert rt.connected and len(link.connects) == 9
    gaps = [b - a for a, b in zip(link.connects, link.connects[1:])]
    # jitter pinned low: half of 1 s, 2 s, 4 s ... capped at half of 30 s
    assert gaps == [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000], gaps
    warnings = cap.text("warning")
    assert warnings[0] == ("connect attempt 1 to 127.0.0.1:1883 failed: connection refused; "
                           "retrying in 0.5 s"), warnings
    assert warnings[7].startswith("connect attempt 8 to"), warnings
    # The jitter spans the upper half of each step: 1-2 s at the second.
    b = backoff.Backoff(runtime.BACKOFF_FIRST_MS, runtime.BACKOFF_CAP_MS, jitter=True)
    backoff.random_below = lambda n: n - 1
    assert [b.next_delay() for _ in range(7)] == [1000, 2000, 4000, 8000, 16000, 30000, 30000]


@with_clock
def test_a_link_that_stayed_up_resets_the_back_off_a_short_one_does_not(clock):
    link = FakeLink(clock, script=[OSError(111), OSError(111)])
    rt = runtime_on(clock, link)
    cap = Captured("warning")
    try:
        for _ in range(3):
            rt.step(60000)  # refused, refused (0.5 s, 1 s), then connected
        assert rt.connected
        clock.t += runtime.STABLE_MS - 1  # up just short of STABLE_MS
        link.fail = OSError(104)
        rt.step(0)
        t_lost = clock.t
        rt.step(60000)
        rt.step(60000)
        assert rt.connected and link.connects[-1] - t_lost == 2000  # the third step
        clock.t += runtime.STABLE_MS  # up long enough: the next loss starts from 0.5 s
        link.fail = OSError(104)
        rt.step(0)
        t_lost = clock.t
        rt.step(60000)
        rt.step(60000)
        assert rt.connected and link.connects[-1] - t_lost == 500
    finally:
        cap.restore()
    lost = [w for w in cap.text("warning") if w.startswith("link to")]
    assert lost == ["link to 127.0.0.1:1883 lost: connection reset; reconnecting in 2.0 s",
                    "link to 127.0.0.1:1883 lost: connection reset; reconnecting in 0.5 s"], lost


# -- a failing display, a failing item source: the basket keeps going --------------------------
class BrokenDisplay:
    def __init__(self):
        self.calls = 0

    def render(self, view):
        self.calls += 1
        raise OSError(5, "I2C bus error")


@with_clock
def test_a_failing_display_is_switched_off_and_the_basket_keeps_going(clock):
    disp = BrokenDisplay()
    cap = Captured("error")
    try:
        rt, link, src = started(clock, display=disp)
        link.inbox.append(b"start")
        rt.step(0)
        for code in ("MLON", "APPL"):
            src.lines.append(code)
            rt.step(1000)
    finally:
        cap.restore()
    assert disp.calls == 1  # tried once, then left alone
    assert cap.text("error") == ["display failed, switching it off: %r"
                                 % (OSError(5, "I2C bus error"),)], cap.lines
    assert link.updates[-1][1] == b'{"id":1,"list":{"APPL":1,"MLON":1}}'


@with_clock
def test_a_failing_item_source_is_logged_and_the_basket_keeps_going(clock):
    other = FakeSource()
    link = FakeLink(clock)
    src = FakeSource()
    rt = runtime_on(clock, link, sources=[src, other])
    cap = Captured("error")
    try:
        rt.step(0)
        link.inbox.append(b"start")
        rt.step(0)
        src.fail = RuntimeError("driver bug")
        other.lines.append("MLON")  # the other source in the same turn still counts
        link.inbox.append(b"start")  # and so does a command
        rt.step(1000)
        src.lines.append("APPL")  # the failing source's next read works again
        rt.step(1000)
    finally:
        cap.restore()
    assert cap.text("error") == ["item source failed: %r" % (RuntimeError("driver bug"),)]
    assert link.updates[-1][1] == b'{"id":1,"list":{"APPL":1,"MLON":1}}'
    assert src.reads == 4


# -- the verbs and the turn hook a supervisor uses ---------------------------------------------
@with_clock
def test_hold_stops_connect_attempts_until_connect_now_which_goes_at_once(clock):
    link = FakeLink(clock, script=[OSError(111)] * 3)
    rt = runtime_on(clock, link)
    cap = Captured("warning")
    try:
        rt.step(60000)
        rt.step(60000)
        rt.step(60000)  # three refusals: the next attempt is 2 s away
        assert len(link.connects) == 3
        rt.hold()
        rt.step(60000)
        rt.step(60000)
        assert len(link.connects) == 3  # held: no attempt, and the sleep is not cut short
        assert rt.poller.timeouts[-2:] == [60000, 60000], rt.poller.timeouts
        t = clock.t
        rt.connect_now()
        rt.step(60000)
        assert rt.connected and link.connects[-1] == t  # at once
        # connect_now() started the back-off over: a lost link waits the first step.
        link.fail = OSError(104)
        rt.step(0)
        rt.step(60000)
        assert rt.poller.timeouts[-1] == 500, rt.poller.timeouts
    finally:
        cap.restore()


@with_clock
def test_drop_link_closes_without_disconnect_and_reconnects_unless_held(clock):
    cap = Captured("warning")
    try:
        rt, link, src = started(clock)
        closes = link.closes
        rt.drop_link("Wi-Fi lost (beacon timeout)")
        assert not rt.connected and link.closes == closes + 1
        assert ("disconnect",) not in link.events  # the broker sends the will
        rt.drop_link("again")  # not connected: nothing happens
        assert link.closes == closes + 1
        t = clock.t
        rt.step(60000)
        rt.step(60000)
        assert rt.connected and link.connects[-1] - t == 500
        rt.hold()
        rt.drop_link("Wi-Fi lost (beacon timeout)")
        n = len(link.connects)
        rt.step(60000)
        rt.step(60000)
        assert not rt.connected and len(link.connects) == n
    finally:
        cap.restore()
    assert cap.text("warning") == [
        "link to 127.0.0.1:1883 lost: Wi-Fi lost (beacon timeout); reconnecting in 0.5 s",
        "link to 127.0.0.1:1883 lost: Wi-Fi lost (beacon timeout); connects on hold"]


@with_clock
def test_turn_hooks_run_first_each_turn_and_bound_the_sleep(clock):
    link = FakeLink(clock)
    rt = runtime_on(clock, link)
    seen = []

    def hook(now):
        seen.append(now)
        if len(seen) == 1:
            rt.hold()  # runs before the connect check: the first turn does not connect
        return 700

    rt.add_turn_hook(hook)
    rt.add_turn_hook(lambda now: None)  # no wish
    rt.step(60000)
    assert link.connects == [] and seen == [100000]
    assert rt.poller.timeouts == [700]
    rt.connect_now()
    rt.step(60000)
    assert rt.connected and seen == [100000, 100700]


@with_clock
def test_run_stops_cleanly_or_hands_a_crash_over_before_any_shutdown(clock):
    rt = runtime_on(clock, FakeLink(clock))
    turns = []
    rt.add_turn_hook(turns.append)  # no wish: the sleep is run()'s max_wait_ms
    rt.add_turn_hook(lambda now: rt.stop() if len(turns) == 3 else None)
    rt.run(5000)
    # (the first turn's update after the connect is due at once)
    assert len(turns) == 3 and rt.poller.timeouts == [0, 5000, 5000], rt.poller.timeouts
    assert rt.client.events[-1] == ("disconnect",)  # offline, then a clean DISCONNECT

    def broken(rt):
        def hook(now):
            if rt.connected:  # the second turn
                raise RuntimeError("Wi-Fi driver fault")
        rt.add_turn_hook(hook)
        return rt

    link2 = FakeLink(clock)
    rt2 = broken(runtime_on(clock, link2))
    crashes = []
    e = raises(RuntimeError, rt2.run, None, crashes.append)
    assert crashes == [e]
    assert ("disconnect",) not in link2.events  # the board resets: no clean stop first
    link3 = FakeLink(clock)
    rt3 = broken(runtime_on(clock, link3))
    raises(RuntimeError, rt3.run)  # without on_crash: the clean stop, then the exception
    assert link3.events[-1] == ("disconnect",), link3.events


# -- board.WifiWatch on those verbs ----------------------------------------------------------
class FakeWifiSettings:
    ssid = "shop-floor"
    timeout_ms = 5000


class FakeWifi:
    def __init__(self, up):
        self.up = up
        self.s = FakeWifiSettings()
        self.starts = 0

    def isconnected(self):
        return self.up

    def start(self):
        self.starts += 1

    def address(self):
        return "10.0.0.2"

    def reason(self):
        return "beacon timeout"


@with_clock
def test_the_wifi_watch_holds_the_broker_while_wifi_is_down(clock):
    link = FakeLink(clock)
    rt = runtime_on(clock, link)
    wifi = FakeWifi(up=False)
    cap = Captured("warning", "info")
    try:
        watch = board.WifiWatch(wifi, rt)
        rt.add_turn_hook(watch.turn)
        for _ in range(5):
            rt.step(60000)
        assert link.connects == [] and wifi.starts == 2  # a join, then another after 5 s
        assert max(rt.poller.timeouts) <= board.WIFI_CHECK_MS
        wifi.up = True
        t = clock.t
        rt.step(60000)
        assert rt.connected and link.connects == [t]  # at the check, at once
        wifi.up = False
        for _ in range(2):
            rt.step(60000)
        assert not rt.connected and ("disconnect",) not in link.events
        for _ in range(10):
            rt.step(60000)
        assert len(link.connects) == 1 and wifi.starts > 3  # rejoining, the broker held
        wifi.up = True
        for _ in range(2):
            rt.step(60000)
        assert rt.connected and len(link.connects) == 2
    finally:
        cap.restore()
    assert ("link to 127.0.0.1:1883 lost: Wi-Fi lost (beacon timeout); connects on hold"
            in cap.text("warning")), cap.lines


@with_clock
def test_a_refused_config_subscription_leaves_the_basket_running(clock):
    # A broker provisioned before remote configuration refuses basket/1/config (SUBACK 0x80):
    # the basket keeps its link and its commands; the health report's config_error says why.
    link = FakeLink(clock)
    rt = runtime_on(clock, link)
    cap = Captured("warning")
    try:
        rt.step(0)
        assert rt.connected
        assert ("basket/1/status", False) in link.subscribed
        assert ("basket/1/config", True) in link.subscribed  # optional
        link.refused = ["basket/1/config"]
        link.inbox = [b"start"]
        rt.step(0)
        assert rt.connected and link.closes == 0
        assert rt.controller.state == "shopping"
        assert rt.health_fields()["config_error"] == \
            "subscription to basket/1/config refused by the broker"
        assert any("remote configuration is off" in t for _, t in cap.lines), cap.lines
    finally:
        cap.restore()
