# The health report: the encoder's exact bytes (the same under both interpreters), the 512-byte
# cut, the board helpers, and when the runtime publishes it (test_runtime's scripted link and
# fake clock): after every connect behind the update, every HEALTH_INTERVAL_S, at once on a
# watched change, never in a turn that brought a command.
import json

from test_runtime import Cfg, FakeLink, FakeSource, with_clock

from mqtt_controller import compat, health, runtime
from mqtt_controller.controller import Controller

HEALTH = "basket/1/health"
UPDATE = "basket/1/update"

STATE = {"battery_mv": None, "boot": "start", "config_error": None, "config_rev": 0,
         "counters": {"commands": 3, "items": 5, "reconnects": 1, "rejected_commands": 0,
                      "rejected_items": 0},
         "display": "ok", "id": 1, "interval_s": 60, "mem_free": None, "ota": None,
         "readers": [{"last_read_s": 12, "name": "/dev/ttyUSB0", "state": "ok"}], "rssi": None,
         "runtime": "cpython 3.11.7", "uptime_s": 3600, "version": "0.1.0"}


def test_the_report_is_compact_json_with_sorted_keys_the_same_bytes_everywhere():
    assert health.encode(STATE) == (
        b'{"battery_mv":null,"boot":"start","config_error":null,"config_rev":0,"counters":'
        b'{"commands":3,"items":5,"reconnects":1,"rejected_commands":0,"rejected_items":0},'
        b'"display":"ok","id":1,"interval_s":60,"mem_free":null,"ota":null,"readers":[{"last_read_s":12,'
        b'"name":"/dev/ttyUSB0","state":"ok"}],"rssi":null,"runtime":"cpython 3.11.7",'
        b'"uptime_s":3600,"version":"0.1.0"}')
    f = dict(STATE)
    f["config_error"] = 'RFID_POWER: must be "dBm"\n\\ \u00e9'
    data = health.encode(f)
    assert b'"config_error":"RFID_POWER: must be \\"dBm\\"\\u000a\\\\ \xc3\xa9"' in data, data
    assert json.loads(data)["config_error"] == f["config_error"]


def test_a_long_report_loses_readers_from_the_end_and_stays_valid_json():
    f = dict(STATE)
    f["readers"] = [{"last_read_s": None, "name": "/dev/serial/by-id/usb-reader-%02d" % i,
                     "state": "down"} for i in range(8)]
    full = health.encode(dict(f, readers=[]))
    data = health.encode(f)
    assert len(data) <= health.MAX_BYTES, len(data)
    doc = json.loads(data)
    n = len(doc["readers"])
    assert 0 < n < 8 and doc["readers"] == f["readers"][:n], doc["readers"]
    # n + 1 readers do not fit: the same cut; n - 1 fit whole.
    assert health.encode(dict(f, readers=f["readers"][:n + 1])) == data
    fewer = health.encode(dict(f, readers=f["readers"][:n - 1]))
    assert len(json.loads(fewer)["readers"]) == n - 1
    assert len(full) < len(data)
    # No readers left to cut: a long config_error is shortened, still valid JSON.
    f["config_error"] = "RFID_CYCLE_MS: " + "x\"" * 400
    data = health.encode(f)
    doc = json.loads(data)
    assert len(data) <= health.MAX_BYTES and doc["readers"] == [], len(data)
    assert doc["config_error"].startswith("RFID_CYCLE_MS: x") and \
        doc["config_error"].endswith("..."), doc["config_error"]


class FakeMachine:
    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5

    def __init__(self, cause):
        self.cause = cause

    def reset_cause(self):
        return self.cause


def test_board_values_reset_cause_in_words_and_the_battery_divider():
    words = [health.boot_cause(FakeMachine(n)) for n in (1, 2, 3, 4, 5, 9)]
    assert words == ["power_on", "hard_reset", "wdt_reset", "deepsleep_reset", "soft_reset",
                     "cause_9"], words
    assert health.boot_cause(object()) == "start"
    assert health.battery_mv(1850000, 2000) == 3700
    assert health.battery_mv(1000000, 1000) == 1000
    assert health.readers([("/dev/ttyUSB0", True, 12999), ("uart2", False, None)]) == [
        {"last_read_s": 12, "name": "/dev/ttyUSB0", "state": "ok"},
        {"last_read_s": None, "name": "uart2", "state": "down"}]


# -- the runtime's schedule ---------------------------------------------------------------------
class HealthCfg(Cfg):
    health_interval = 60


class FakeReaders(FakeSource):
    """An item source with readers: `up` says which are open; `bump()` is a reader opened or
    lost (status_changes moves on)."""

    def __init__(self, names):
        FakeSource.__init__(self)
        self.names = names
        self.up = [True] * len(names)
        self.status_changes = 0
        self.asked = 0

    def bump(self):
        self.status_changes += 1

    def status(self, now_ms):
        self.asked += 1
        return [(n, ok, 1500 if ok else None) for n, ok in zip(self.names, self.up)]


def health_started(clock, sources=None, display=None, cfg=None):
    link = FakeLink(clock)
    src = FakeReaders(["/dev/ttyUSB0", "/dev/ttyUSB1"])
    rt = runtime.Runtime(cfg or HealthCfg(), controller=Controller(1), client=link,
                         sources=sources or [src], display=display)
    rt.step(0)
    assert rt.connected
    return rt, link, src


def reports(link):
    return [json.loads(e[2]) for e in link.events if e[0] == "publish" and e[1] == HEALTH]


def topics(link):
    return [e[1] for e in link.events if e[0] == "publish"]


@with_clock
def test_a_report_follows_every_connect_after_online_and_the_update(clock):
    rt, link, src = health_started(clock)
    assert topics(link) == ["basket/1/availability", UPDATE, HEALTH], link.events
    doc = reports(link)[0]
    assert doc["id"] == 1 and doc["interval_s"] == 60 and doc["version"] == "0.1.0"
    assert doc["runtime"] == compat.RUNTIME and doc["boot"] == "start"
    assert doc["readers"] == [{"last_read_s": 1, "name": "/dev/ttyUSB0", "state": "ok"},
                              {"last_read_s": 1, "name": "/dev/ttyUSB1", "state": "ok"}]
    assert doc["counters"]["reconnects"] == 0 and doc["display"] == "none"
    assert doc["config_rev"] == 0 and doc["config_error"] is None
    assert (doc["mem_free"] is None) == (not compat.MICROPYTHON), doc["mem_free"]
    assert doc["rssi"] is None and doc["battery_mv"] is None
    link.fail = OSError(104)  # the link breaks; the reconnect brings another report
    rt.step(0)
    rt.step(60000)
    rt.step(60000)
    assert rt.connected
    assert topics(link)[-3:] == ["basket/1/availability", UPDATE, HEALTH], link.events
    assert reports(link)[-1]["counters"]["reconnects"] == 1


@with_clock
def test_reports_come_every_interval_and_interval_zero_turns_them_off(clock):
    rt, link, src = health_started(clock)
    t0 = clock.t
    for _ in range(3):
        rt.step(600000)  # the loop sleeps until the next report at most (MAX_WAIT_MS 60 s)
    docs = reports(link)
    assert len(docs) == 4, docs
    assert [d["uptime_s"] for d in docs] == [0, 60, 120, 180]
    assert clock.t - t0 == 180000
    rt.set_health_interval(0)
    for _ in range(3):
        rt.step(60000)
    assert len(reports(link)) == 4
    rt.set_health_interval(5)  # live, from the remote configuration: 5 s after the last one
    rt.step(60000)
    assert len(reports(link)) == 5 and reports(link)[-1]["interval_s"] == 5
    assert rt.poller.timeouts[-1] == 0  # 180 s since the last: due at once


@with_clock
def test_a_report_never_goes_in_a_turn_that_brought_a_command(clock):
    rt, link, src = health_started(clock)
    rt.health_changed()  # due now ...
    link.inbox.append(b"start")  # ... but a command comes in the same turn
    rt.step(0)
    assert topics(link)[-1] == UPDATE, link.events  # the update, its ack; no report yet
    assert link.events[-1] == ("acks", 1), link.events
    rt.step(60000)  # the next quiet turn, at once
    assert topics(link)[-1] == HEALTH and rt.poller.timeouts[-1] == 0, rt.poller.timeouts
    assert reports(link)[-1]["counters"]["commands"] == 1
    # An item-driven update waiting for its pacing slot goes first as well.
    n = len(topics(link))
    src.lines.append("MLON")
    rt.health_changed()
    rt.step(0)
    assert len(topics(link)) == n  # the update waits 200 ms for its slot: so does the report
    t = clock.t
    rt.step(60000)
    assert topics(link)[n:] == [UPDATE, HEALTH] and clock.t - t == 200, topics(link)[n:]


@with_clock
def test_a_reader_going_down_or_back_is_reported_at_once_and_compared_only_on_news(clock):
    rt, link, src = health_started(clock)
    n = len(reports(link))
    asked = src.asked
    for _ in range(5):
        rt.step(1000)  # nothing changed: status() is not asked for
    assert src.asked == asked and len(reports(link)) == n
    src.up[1] = False
    src.bump()
    rt.step(1000)  # the turn that notices it ...
    rt.step(1000)
    docs = reports(link)
    assert len(docs) == n + 1, docs
    assert docs[-1]["readers"][1] == {"last_read_s": None, "name": "/dev/ttyUSB1",
                                      "state": "down"}
    src.bump()  # a change counted, the same states (lost and back in one turn): no report
    rt.step(1000)
    rt.step(1000)
    assert len(reports(link)) == n + 1
    src.up[1] = True
    src.bump()
    rt.step(1000)
    assert reports(link)[-1]["readers"][1]["state"] == "ok"


class BrokenDisplay:
    def render(self, view):
        raise OSError(5, "I2C bus error")


class RemoteStub:
    rev = 7
    error = "RFID_POWER: must be a transmit power in dBm from 10 to 30 (got 99)"


@with_clock
def test_a_failed_display_and_the_remote_config_show_in_the_report(clock):
    real = runtime.log.error
    runtime.log.error = lambda *a: None
    try:
        rt, link, src = health_started(clock, display=BrokenDisplay())
    finally:
        runtime.log.error = real
    rt.step(0)
    assert reports(link)[-1]["display"] == "failed"
    rt.remote = RemoteStub()
    rt.health_changed()
    rt.step(0)
    doc = reports(link)[-1]
    assert doc["config_rev"] == 7 and doc["config_error"] == RemoteStub.error, doc
    assert sorted(rt.health_fields()) == sorted(STATE)  # the contract's keys, no more
    # The board's values come through set_health_extras; a failing probe changes nothing.
    rt.set_health_extras(lambda: {"rssi": -61, "boot": "wdt_reset", "battery_mv": 3700,
                                  "id": 99})
    f = rt.health_fields()
    assert (f["rssi"], f["boot"], f["battery_mv"], f["id"]) == (-61, "wdt_reset", 3700, 1), f

    def broken():
        raise OSError("ADC gone")

    rt.set_health_extras(broken)
    f = rt.health_fields()
    assert (f["rssi"], f["boot"], f["battery_mv"]) == (None, "start", None)
