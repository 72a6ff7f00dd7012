# The update agent's decisions (otarun.py) in the loop (Runtime.step with test_runtime's
# scripted link and fake clock), the real ota.py, otaboot.py and otaget.py over a temporary
# OTA_DIR, with stand-ins for otaget's download and pruning (those are tested against a real
# server in tests/integration/test_ota_update.py): refusals, the running version, deferral while
# shopping, staging and the restart, retries, the trial's confirmation and its timeout, the
# health report's `ota` and the optional subscription.
import json
import os
import sys

from test_runtime import Captured, Cfg, Clock, FakeLink, with_clock

import mqtt_controller
from mqtt_controller import __version__, compat, health, ota, otaboot, otarun, runtime
from mqtt_controller.controller import SHOPPING, Controller

OTA = "basket/1/ota"
HEALTH = "basket/1/health"
KEY = "ab" * 32
SHA = "cd" * 32


class OtaCfg(Cfg):
    health_interval = 0
    ota_key = KEY
    ota_trial = 30

    def __init__(self, ota_dir, key=KEY):
        Cfg.__init__(self)
        self.ota_dir = ota_dir
        self.ota_key = key


class OtaLink(FakeLink):
    """FakeLink that also hands over messages on basket/1/ota (`ota_inbox`)."""

    def __init__(self, clock, script=()):
        FakeLink.__init__(self, clock, script=script)
        self.ota_inbox = []

    def service(self, readable=True):
        msgs = FakeLink.service(self, readable)
        msgs.extend([(OTA, p) for p in self.ota_inbox])
        self.ota_inbox = []
        return msgs


class FakeGet:
    """Stands in for otaget.py: `fail` is raised by the next fetch (once); otherwise the
    release is staged in state.json as the real one does."""

    def __init__(self):
        self.fetches = []  # (version, flavour)
        self.pruned = []
        self.fail = None
        self.ticks = 0

    def fetch(self, ota_dir, push, flavour, tick=None, running=None):
        self.fetches.append((push["version"], flavour))
        if tick is not None:
            tick()
            self.ticks += 1
        if self.fail is not None:
            e, self.fail = self.fail, None
            raise e
        otaboot.write_state(ota_dir, ota.staged(otaboot.read_state(ota_dir), push["version"]))

    def prune(self, ota_dir, keep):
        self.pruned.append(sorted(keep))


def fake_get():
    """otaget.py with its download and its pruning stood in for. The agent imports otaget
    for each step and MicroPython forgets it after: the stand-ins go in again before each turn
    that may need them."""
    from mqtt_controller import otaget

    otaget.fetch = GET[0].fetch
    otaget.prune = GET[0].prune


GET = [None]


def with_ota(test):
    """test(clock, d) with otarun's clock the fake one and a fresh OTA_DIR d."""
    def run(clock):
        real = otarun.ticks_ms
        otarun.ticks_ms = clock
        d = "/tmp/basket-ota-%d" % compat.random_below(10 ** 9)
        _rmtree(d)
        os.mkdir(d)
        GET[0] = FakeGet()
        try:
            test(clock, d)
        finally:
            otarun.ticks_ms = real
            _rmtree(d)
            sys.modules.pop("mqtt_controller.otaget", None)  # the next import: the real one
            try:
                delattr(mqtt_controller, "otaget")
            except (AttributeError, KeyError):  # MicroPython says KeyError
                pass
    return with_clock(run)


def _rmtree(path):
    try:
        names = os.listdir(path)
    except OSError:
        try:
            os.remove(path)
        except OSError:
            pass
        return
    for n in names:
        _rmtree(path + "/" + n)
    os.rmdir(path)


def push(version="v9", key=KEY, sha=SHA, sig=None, url="http://10.0.0.5:8080"):
    if sig is None:
        sig = ota.signature(1, version, sha, key)
    return ('{"version":"%s","manifest":"%s/releases/%s/manifest.txt","sha256":"%s",'
            '"sig":"%s"}' % (version, url, version, sha, sig)).encode()


def basket(clock, d, controller=None, script=(), key=KEY, flavour="py"):
    link = OtaLink(clock, script)
    rt = runtime.Runtime(OtaCfg(d, key), controller=controller or Controller(1), client=link,
                         flavour=flavour)
    return rt, link


def reports(link):
    return [json.loads(e[2]) for e in link.events if e[0] == "publish" and e[1] == HEALTH]


def state(d):
    return otaboot.read_state(d)


def delivered(rt, link, payload):
    """The push arrives in one turn; the agent acts at the start of the next."""
    fake_get()
    link.ota_inbox.append(payload)
    rt.step(0)
    fake_get()
    rt.step(0)


# -- off, on, the subscription --------------------------------------------------------------------
@with_clock
def test_without_ota_dir_updates_are_off_and_the_report_says_null(clock):
    link = OtaLink(clock)
    rt = runtime.Runtime(Cfg(), controller=Controller(1), client=link)
    rt.step(0)
    assert rt.ota is None and rt.health_fields()["ota"] is None
    assert [t for t, _ in link.subscribed] == ["basket/1/status", "basket/1/config"]
    link.ota_inbox.append(push())  # a stray message on the topic changes nothing
    rt.step(0)
    assert rt.connected and rt.exit_code == 0


@with_ota
def test_with_ota_dir_it_subscribes_optionally_and_reports_idle(clock, d):
    rt, link = basket(clock, d)
    rt.step(0)
    assert (OTA, True) in link.subscribed
    assert rt.health_fields()["ota"] == {"error": None, "state": "idle", "version": None}
    cap = Captured("warning")
    try:
        link.refused = [OTA]  # a broker provisioned before updates
        link.inbox = [b"start"]
        rt.step(0)
    finally:
        cap.restore()
    assert rt.connected and rt.controller.state == SHOPPING
    assert rt.health_fields()["ota"]["error"] == "subscription to %s refused by the broker" % OTA
    assert rt.health_fields()["config_error"] is None  # the other optional topic is fine
    assert any("updates over the air is off" in t for _, t in cap.lines), cap.lines


@with_ota
def test_a_damaged_state_file_reports_what_the_contract_allows(clock, d):
    for text in ('{"last": {"state": "hacked", "version": 3}}', '{"last": [1]}', "{nope",
                 '{"last": {"state": "ok", "version": ["v"], "error": 5}}'):
        with open(d + "/state.json", "w") as f:
            f.write(text)
        rt, _ = basket(clock, d)
        got = rt.health_fields()["ota"]
        assert got in ({"error": None, "state": "idle", "version": None},
                       {"error": None, "state": "ok", "version": None}), (text, got)


# -- refusals -------------------------------------------------------------------------------------
@with_ota
def test_a_bad_push_is_refused_logged_counted_and_the_same_one_not_retried(clock, d):
    rt, link = basket(clock, d)
    rt.step(0)
    cases = [
        (push(sig="0" * 64), "bad signature"),
        (push(key="ef" * 32), "bad signature"),  # another basket's key
        (b'{"version":"v9"', "bad JSON"),
        (push(url="https://10.0.0.5"), "manifest URL must be http://"),
        (None, "push too big"),  # over the packet limit: only its start was kept
    ]
    cap = Captured("warning")
    try:
        for i, (payload, why) in enumerate(cases):
            delivered(rt, link, payload)
            assert rt.ota.refusals == i + 1
            assert rt.health_fields()["ota"] == {"error": why, "state": "failed",
                                                 "version": None}, why
            assert cap.text("warning")[-1] == "OTA: push refused (#%d): %s; staying on %s" % (
                i + 1, why, __version__)
        n = len(cap.lines)
        delivered(rt, link, None)  # the same again (the retained copy at a reconnect)
        assert len(cap.lines) == n and rt.ota.refusals == len(cases)
    finally:
        cap.restore()
    assert GET[0].fetches == [] and rt.exit_code == 0 and not rt.stopping
    assert state(d) == ota.new_state()  # a push that fails its checks leaves state.json alone
    # the reports said so, last of all the refusal
    assert reports(link)[-1]["ota"]["error"] == "push too big"


@with_ota
def test_without_ota_key_every_push_is_refused(clock, d):
    rt, link = basket(clock, d, key=None)
    rt.step(0)
    cap = Captured("warning")
    try:
        delivered(rt, link, push())
    finally:
        cap.restore()
    assert rt.health_fields()["ota"] == {"error": "no OTA_KEY", "state": "failed",
                                         "version": None}
    assert GET[0].fetches == []


@with_ota
def test_a_push_of_the_running_version_is_ignored(clock, d):
    rt, link = basket(clock, d)
    rt.step(0)
    cap = Captured("info", "warning")
    try:
        delivered(rt, link, push(__version__))
    finally:
        cap.restore()
    assert GET[0].fetches == [] and cap.text("warning") == []
    assert "OTA: push of %s ignored: it runs already" % __version__ in cap.text("info")
    assert rt.health_fields()["ota"]["state"] == "idle"


@with_ota
def test_a_file_that_fails_verification_is_refused_and_remembered_across_restarts(clock, d):
    rt, link = basket(clock, d)
    rt.step(0)
    GET[0].fail = ota.OtaError("mqtt_controller/cart.py: wrong SHA-256")
    cap = Captured("info", "warning")
    try:
        delivered(rt, link, push("v9"))
        assert GET[0].fetches == [("v9", "py")]
        f = rt.health_fields()["ota"]
        assert f == {"error": "mqtt_controller/cart.py: wrong SHA-256",
                     "state": "failed", "version": "v9"}, f
        assert not rt.stopping and rt.exit_code == 0  # stays on its version
        s = state(d)
        assert s["trial"] is None and s["refused"] is not None
        assert s["last"] == {"state": "failed", "version": "v9", "error": f["error"]}
        # the report before the download said downloading
        assert [r["ota"]["state"] for r in reports(link)][-2:] == ["downloading", "failed"]
        delivered(rt, link, push("v9"))  # the retained copy again: not fetched again
        assert len(GET[0].fetches) == 1
        # a restart (a new agent over the same folder): still not fetched, the report says why
        rt2, link2 = basket(clock, d)
        assert rt2.health_fields()["ota"] == f
        rt2.step(0)
        delivered(rt2, link2, push("v9"))
        assert len(GET[0].fetches) == 1
        delivered(rt2, link2, push("v10"))  # another push is
        assert GET[0].fetches[-1] == ("v10", "py") and rt2.exit_code == 3
    finally:
        cap.restore()


@with_ota
def test_a_download_that_fails_on_the_network_is_tried_again_with_back_off(clock, d):
    rt, link = basket(clock, d)
    rt.step(0)
    GET[0].fail = OSError("HTTP 503 for /releases/v9/manifest.txt")
    cap = Captured("warning")
    try:
        delivered(rt, link, push("v9"))
    finally:
        cap.restore()
    assert rt.health_fields()["ota"] == {"error": "HTTP 503 for /releases/v9/manifest.txt",
                                         "state": "failed", "version": "v9"}
    assert state(d)["refused"] is None  # not a verification failure: not remembered
    t0 = clock.t
    for _ in range(3):
        fake_get()
        rt.step(600000)
    assert len(GET[0].fetches) == 2  # once more, after a minute (no busy wait in between)
    assert GET[0].fetches[-1] == ("v9", "py") and rt.exit_code == 3
    assert clock.t - t0 >= otarun.RETRY_FIRST_MS and 60000 in rt.poller.timeouts, \
        rt.poller.timeouts


@with_ota
def test_an_ota_step_that_fails_unexpectedly_never_stops_the_basket(clock, d):
    rt, link = basket(clock, d)
    rt.step(0)
    from mqtt_controller import otaget

    def broken(*args):
        raise MemoryError("memory allocation failed")

    real = otaget.check
    cap = Captured("error", "info")
    try:
        otaget.check = broken  # e.g. a board short of heap for otaget.py
        link.ota_inbox.append(push("v9"))
        rt.step(0)
        assert rt.connected and rt.health_fields()["ota"] == {
            "error": "MemoryError: memory allocation failed", "state": "failed",
            "version": None}
        assert "OTA: check failed: MemoryError: memory allocation failed" in cap.text("error")
        otaget.check = broken  # (MicroPython forgot the module after the step)
        link.ota_inbox.append(push("v9"))  # the retained copy again: not tried again
        rt.step(0)
        assert len(cap.text("error")) == 1
        otaget.check = real  # (CPython keeps the module: its check back)
        link.ota_inbox.append(push("v10"))
        rt.step(0)
        assert rt.ota.push is not None
        from mqtt_controller import otaget

        otaget.update = broken
        rt.step(0)  # the download step fails: tried again after the back-off
        assert rt.health_fields()["ota"]["state"] == "failed"
        assert rt.ota.retry_due is not None and not rt.stopping
        assert "OTA: update failed: MemoryError: memory allocation failed" in cap.text("error")
    finally:
        cap.restore()
        otaget.check = real


# -- deferral, staging, restart -------------------------------------------------------------------
@with_ota
def test_a_push_during_a_session_waits_for_end_then_stages_and_restarts(clock, d):
    rt, link = basket(clock, d, Controller(1, SHOPPING, {"APPL": 2}), flavour="mpy")
    rt.step(0)
    cap = Captured("info")
    try:
        delivered(rt, link, push("v9"))
        for _ in range(3):
            fake_get()
            rt.step(60000)
        assert GET[0].fetches == [] and rt.controller.state == SHOPPING
        assert rt.health_fields()["ota"] == {"error": None, "state": "deferred",
                                             "version": "v9"}
        assert reports(link)[-1]["ota"]["state"] == "deferred"
        assert "OTA: v9 waits for the session's end" in cap.text("info")
        fake_get()
        link.inbox.append(b"end")
        rt.step(0)  # the session ends, its update goes out ...
        assert link.updates[-1][1] == b'{"id":1,"list":{}}'
        fake_get()
        rt.step(0)  # ... and the next turn downloads
    finally:
        cap.restore()
    assert GET[0].fetches == [("v9", "mpy")] and GET[0].ticks == 1
    assert [r["ota"]["state"] for r in reports(link)][-2:] == ["downloading", "staged"]
    assert rt.stopping and rt.exit_code == 3
    s = state(d)
    assert s["trial"] == "v9" and s["tries"] == 0


@with_ota
def test_an_empty_push_withdraws_one_that_waits(clock, d):
    rt, link = basket(clock, d, Controller(1, SHOPPING, {"APPL": 2}))
    rt.step(0)
    cap = Captured("info")
    try:
        delivered(rt, link, push("v9"))
        assert rt.health_fields()["ota"]["state"] == "deferred"
        delivered(rt, link, b"")
        link.inbox.append(b"end")
        rt.step(0)
        fake_get()
        rt.step(0)
    finally:
        cap.restore()
    assert GET[0].fetches == [] and not rt.stopping
    assert rt.health_fields()["ota"]["state"] == "idle"


@with_ota
def test_the_download_keeps_the_other_turn_hooks_running(clock, d):
    rt, link = basket(clock, d)
    fed = []
    rt.add_turn_hook(fed.append)  # a board's watchdog feed
    rt.step(0)
    n = len(fed)
    delivered(rt, link, push("v9"))
    assert GET[0].ticks == 1 and len(fed) == n + 3  # two turns, and one tick in the download


# -- the trial ------------------------------------------------------------------------------------
def on_trial(d, tries=1):
    s = ota.new_state()
    s["current"] = "v1"
    s["trial"] = __version__
    s["tries"] = tries
    otaboot.write_state(d, s)


@with_ota
def test_a_trial_that_connects_is_confirmed_and_the_old_folders_go(clock, d):
    on_trial(d)
    rt, link = basket(clock, d)
    assert rt.health_fields()["ota"] == {"error": None, "state": "trial",
                                         "version": __version__}
    fake_get()
    rt.step(0)  # connects
    fake_get()
    rt.step(0)
    s = state(d)
    assert (s["current"], s["previous"], s["trial"]) == (__version__, "v1", None), s
    assert s["last"] == {"state": "ok", "version": __version__, "error": None}
    assert GET[0].pruned == [sorted([__version__, "v1"])]
    assert rt.health_fields()["ota"] == {"error": None, "state": "ok", "version": __version__}
    assert reports(link)[-1]["ota"]["state"] == "ok"
    assert not rt.stopping
    # the next start is no trial: it reports the last result
    rt2, _ = basket(clock, d)
    assert rt2.health_fields()["ota"] == {"error": None, "state": "ok", "version": __version__}


@with_ota
def test_a_trial_that_does_not_connect_in_time_is_rolled_back_and_restarts(clock, d):
    on_trial(d)
    refused = OSError(111)
    rt, link = basket(clock, d, script=[refused] * 100)
    t0 = clock.t
    cap = Captured("error", "warning")
    try:
        for _ in range(100):
            rt.step(60000)
            if rt.stopping:
                break
    finally:
        cap.restore()
    assert rt.stopping and rt.exit_code == 3 and not rt.connected
    assert clock.t - t0 == 30000  # the trial's deadline bounded the sleeps, to the ms
    assert len(rt.poller.timeouts) < 20, rt.poller.timeouts  # no busy waiting
    s = state(d)
    assert (s["current"], s["trial"], s["tries"]) == ("v1", None, 0), s
    assert s["last"] == {"state": "rolled_back", "version": __version__,
                         "error": "not connected within 30 s"}
    assert "OTA: trial of %s failed: not connected within 30 s; restarting into the previous " \
        "version" % __version__ in cap.text("error")


@with_ota
def test_a_rolled_back_version_is_not_fetched_again(clock, d):
    s = ota.new_state()
    s["trial"] = "v9"
    s["tries"] = 1
    s = ota.trial_failed(s, "ImportError: no module")
    otaboot.write_state(d, s)
    rt, link = basket(clock, d)
    assert rt.health_fields()["ota"] == {"error": "ImportError: no module",
                                         "state": "rolled_back", "version": "v9"}
    rt.step(0)
    cap = Captured("info")
    try:
        delivered(rt, link, push("v9"))  # the retained push that brought it
    finally:
        cap.restore()
    assert GET[0].fetches == [] and "OTA: push of v9 ignored: it was rolled back" in \
        cap.text("info")
    assert rt.health_fields()["ota"]["state"] == "rolled_back"


# -- the report -----------------------------------------------------------------------------------
def test_the_ota_field_fits_the_512_byte_report():
    f = runtime_fields()
    f["ota"] = {"error": "x" * ota.REASON_MAX, "state": "rolled_back", "version": "v" * 32}
    data = health.encode(f)
    doc = json.loads(data)
    assert len(data) <= health.MAX_BYTES, len(data)
    assert doc["ota"]["state"] == "rolled_back" and doc["ota"]["version"] == "v" * 32
    assert doc["ota"]["error"].startswith("xxxx") and doc["ota"]["error"].endswith("...")
    # a usual one fits whole (a board's report, one reader)
    f["ota"]["error"] = "mqtt_controller/umqtt_adapter.mpy: 1234 bytes, not 1243"
    f["version"] = f["ota"]["version"] = "2026.12.24"
    f["readers"] = [{"last_read_s": 1234, "name": "uart2", "state": "ok"}]
    f["counters"] = {"commands": 12345, "items": 54321, "reconnects": 123,
                     "rejected_commands": 12, "rejected_items": 34}
    doc = json.loads(health.encode(f))
    assert doc["ota"] == f["ota"] and doc["readers"] == f["readers"], doc


def runtime_fields():
    """A report with every figure at a large value (a board's)."""
    clock = Clock()
    rt = runtime.Runtime(Cfg(), controller=Controller(1), client=OtaLink(clock))
    f = rt.health_fields()
    f.update({"battery_mv": 4200, "boot": "deepsleep_reset", "config_rev": 99999,
              "mem_free": 1234567, "rssi": -70, "runtime": "micropython 1.28.0",
              "uptime_s": 99999999, "version": "v" * 32})
    f["counters"] = dict((k, 99999999) for k in f["counters"])
    return f
