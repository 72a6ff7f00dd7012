# Remote configuration (remote.py, config.remote_values): parse, the all-or-nothing check with
# config.py's table, rev ordering, whole sets, the saved copy, RFID tuning live (both
# interpreters).
import os

from _util import raises

from mqtt_controller import compat, config, log, remote, rfid, yrm100

STOP = yrm100.cmd_stop()
POLL = yrm100.cmd_multi_poll(rfid.POLL_COUNT)


class FakeSource:
    def __init__(self):
        self.applied = []

    def apply_settings(self, values):
        self.applied.append(dict(values))


class FakeRt:
    def __init__(self, cfg):
        self.cfg = cfg
        self.sources = [FakeSource()]
        self.changed = 0
        self.intervals = []

    def health_changed(self):
        self.changed += 1

    def set_health_interval(self, s):
        self.intervals.append(s)


def cfg_for(state_file="", **env):
    env.setdefault("BASKET_ID", "1")
    env.setdefault("ITEM_SOURCE", "rfid:/dev/null")
    env["CART_STATE_FILE"] = state_file
    level = log.level
    try:
        return config.load(env.get)
    finally:
        log.level = level


def msg(rev, values):
    # compact JSON by hand: the payload a service sends
    items = []
    for k in sorted(values):
        v = values[k]
        items.append('"%s":%s' % (k, ('"%s"' % v) if isinstance(v, str) else str(v)))
    return ('{"rev":%d,"set":{%s}}' % (rev, ",".join(items))).encode()


def quiet(fn):
    """Runs fn with the log level kept (a set may change it) and warnings muted."""
    def run():
        level = log.level
        log.level = log.ERROR + 1
        try:
            fn()
        finally:
            log.level = level
    return run


def test_parse_good_and_bad():
    assert remote.parse(b'{"rev":3,"set":{"RFID_RSSI_MIN":-65}}') == (3, {"RFID_RSSI_MIN": -65})
    assert remote.parse(b'{"set":{},"rev":1}') == (1, {})
    cases = [(b"{", "bad JSON"), (b"\xff\xfe", "bad JSON"), (b"[1]", "must be"),
             (b'{"rev":1}', "must be"), (b'{"rev":0,"set":{}}', "rev must be"),
             (b'{"rev":-2,"set":{}}', "rev must be"), (b'{"rev":"2","set":{}}', "rev must be"),
             (b'{"rev":true,"set":{}}', "rev must be"), (b'{"rev":1.5,"set":{}}', "rev must be"),
             (b'{"rev":1,"set":[]}', "set must be"),
             (b'{"rev":1,"set":{"LOG_LEVEL":"' + b"x" * 1024 + b'"}}', "config over 1024 bytes"),
             (None, "config over 1024 bytes")]
    for payload, why in cases:
        e = raises(ValueError, remote.parse, payload)
        assert str(e).startswith(why), (payload, str(e))


def test_the_check_uses_the_start_up_rules_and_converts():
    got = config.remote_values({"RFID_POWER": "20.5", "RFID_RSSI_MIN": "-65", "LOG_LEVEL": "DEBUG",
                                "RFID_PRESENCE": 2, "RFID_ABSENCE": 3, "RFID_CYCLE_MS": 250})
    assert got == {"RFID_POWER": 2050, "RFID_RSSI_MIN": -65, "LOG_LEVEL": "debug",
                   "RFID_PRESENCE": 2, "RFID_ABSENCE": 3, "RFID_CYCLE_MS": 250}
    bad = [({"RFID_RSSI_MIN": -200}, "RFID_RSSI_MIN: must be a whole number from -128 to 0"),
           ({"RFID_POWER": 31}, "RFID_POWER: must be a transmit power in dBm from 10 to 30"),
           ({"RFID_PRESENCE": 0}, "RFID_PRESENCE: must be a whole number from 1 to 20"),
           ({"RFID_CYCLE_MS": "fast"}, "RFID_CYCLE_MS: must be a whole number"),
           ({"LOG_LEVEL": "loud"}, "LOG_LEVEL: must be debug, info, warning, warn or error"),
           ({"LOG_LEVEL": True}, "LOG_LEVEL: must be text or a whole number"),
           ({"RFID_RSSI_MIN": -60.5}, "RFID_RSSI_MIN: must be text or a whole number"),
           ({"RFID_RSSI_MIN": None}, "RFID_RSSI_MIN: must be text or a whole number"),
           ({"RFID_RSSI_MIN": [-60]}, "RFID_RSSI_MIN: must be text or a whole number")]
    for values, why in bad:
        e = raises(config.ConfigError, config.remote_values, values)
        assert str(e).startswith(why), (values, str(e))


def test_unsafe_and_unknown_keys_are_refused_by_name():
    for key in ("MQTT_HOST", "MQTT_PASSWORD", "MQTT_PASS", "MQTT_USER", "MQTT_TOPIC",
                "MQTT_CLIENT_ID", "MQTT_PORT", "BASKET_ID", "CART_STATE_FILE", "ITEM_SOURCE",
                "RFID_REGION", "WIFI_PASSWORD"):
        e = raises(config.ConfigError, config.remote_values, {key: "x", "LOG_LEVEL": "info"})
        assert str(e) == "%s: may not be set remotely" % key, str(e)
    e = raises(config.ConfigError, config.remote_values, {"RSSI": -60})
    assert str(e) == "RSSI: unknown setting"
    # several bad keys: the first in sorted order, the same on both interpreters
    e = raises(config.ConfigError, config.remote_values,
               {"RFID_RSSI_MIN": 5, "MQTT_HOST": "evil", "LOG_LEVEL": "x"})
    assert str(e).startswith("LOG_LEVEL: ")


def test_the_remote_keys_are_all_in_the_table():
    rows = [r[0] for r in config.CONTROLLER + config.RFID]
    for key in config.REMOTE:
        if key == "HEALTH_INTERVAL_S" and key not in rows:
            continue  # added with the health report
        assert key in rows, key
    for key in ("MQTT_HOST", "MQTT_PASSWORD", "MQTT_TOPIC", "MQTT_CLIENT_ID"):
        assert key not in config.REMOTE


@quiet
def test_a_bad_set_changes_nothing_and_names_the_problem():
    rt = FakeRt(cfg_for())
    r = remote.Remote()
    r.message(msg(4, {"RFID_RSSI_MIN": -65}), rt)
    assert (r.rev, r.error, rt.changed) == (4, None, 1)
    applied = list(rt.sources[0].applied)
    level = log.level
    for payload, why in [
            (msg(5, {"LOG_LEVEL": "error", "RFID_RSSI_MIN": -200}),
             "RFID_RSSI_MIN: must be a whole number from -128 to 0 (got -200)"),
            (msg(5, {"LOG_LEVEL": "error", "MQTT_HOST": "evil.example"}),
             "MQTT_HOST: may not be set remotely"),
            (b'{"rev":5,"set":', "bad JSON"),
            (b'{"rev":0,"set":{}}', "rev must be a whole number >= 1")]:
        r.message(payload, rt)
        assert r.error == why, r.error
        assert (r.rev, r.set, log.level) == (4, {"RFID_RSSI_MIN": -65}, level)
    assert rt.sources[0].applied == applied  # nothing applied, not even LOG_LEVEL
    assert rt.changed == 5
    # a good set clears the error
    r.message(msg(5, {"RFID_RSSI_MIN": -60}), rt)
    assert (r.rev, r.error, rt.changed) == (5, None, 6)
    assert rt.sources[0].applied[-1]["RFID_RSSI_MIN"] == -60


@quiet
def test_a_rev_not_above_the_applied_one_is_ignored():
    rt = FakeRt(cfg_for())
    r = remote.Remote()
    r.message(msg(2, {"RFID_RSSI_MIN": -65}), rt)
    for rev in (2, 1):
        r.message(msg(rev, {"RFID_RSSI_MIN": -40}), rt)
        assert (r.rev, r.set, r.error) == (2, {"RFID_RSSI_MIN": -65}, None)
    r.message(msg(1, {"MQTT_HOST": "x"}), rt)  # old: not even checked
    assert r.error is None and rt.changed == 1
    assert [a["RFID_RSSI_MIN"] for a in rt.sources[0].applied] == [-65]
    r.message(b"", rt)  # the retained copy cleared: the applied set stays
    assert r.rev == 2
    r.message(msg(3, {"RFID_RSSI_MIN": -40}), rt)
    assert r.rev == 3 and rt.sources[0].applied[-1]["RFID_RSSI_MIN"] == -40


@quiet
def test_sets_are_whole_a_key_left_out_goes_back_to_the_local_value():
    rt = FakeRt(cfg_for(RFID_RSSI_MIN="-50", LOG_LEVEL="warning"))
    r = remote.Remote()
    r.message(msg(1, {"RFID_RSSI_MIN": -65, "RFID_POWER": 20}), rt)
    last = rt.sources[0].applied[-1]
    assert (last["RFID_RSSI_MIN"], last["RFID_POWER"], last["RFID_CYCLE_MS"]) == (-65, 2000, 500)
    r.message(msg(2, {"LOG_LEVEL": "debug"}), rt)
    last = rt.sources[0].applied[-1]
    assert (last["RFID_RSSI_MIN"], last["RFID_POWER"]) == (-50, 2600)
    assert log.level == log.DEBUG
    r.message(msg(3, {}), rt)
    assert log.level == log.WARNING


def _tmp(tag):
    return "/tmp/basket-remote-%s-%d.state.json" % (tag, compat.random_below(10 ** 9))


def _rm(*paths):
    for p in paths:
        try:
            os.remove(p)
        except OSError:
            pass


@quiet
def test_an_applied_set_is_kept_and_laid_over_the_settings_at_the_next_start():
    state = _tmp("keep")
    path = state + ".config.json"
    try:
        cfg = cfg_for(state)
        assert remote.path_for(cfg) == path
        assert remote.path_for(cfg_for("")) is None
        rt = FakeRt(cfg)
        r = remote.Remote(path)
        r.message(msg(7, {"RFID_RSSI_MIN": -65, "RFID_CYCLE_MS": 300, "LOG_LEVEL": "error"}), rt)
        r.message(msg(8, {"MQTT_HOST": "evil"}), rt)  # refused: not kept
        cfg = cfg_for(state)  # a restart
        assert cfg.settings["RFID_RSSI_MIN"] == -58
        again = remote.Remote(path)
        again.start(cfg)
        assert (again.rev, again.error) == (7, None)
        assert again.set == {"RFID_RSSI_MIN": -65, "RFID_CYCLE_MS": 300, "LOG_LEVEL": "error"}
        assert (cfg.settings["RFID_RSSI_MIN"], cfg.settings["RFID_CYCLE_MS"]) == (-65, 300)
        assert cfg.log_level == "error" and log.level == log.ERROR
        # the same rev from the broker's retained copy: ignored
        rt = FakeRt(cfg)
        again.message(msg(7, {"RFID_RSSI_MIN": -65}), rt)
        assert rt.sources[0].applied == [] and rt.changed == 0
    finally:
        _rm(path, path + ".tmp")


@quiet
def test_a_saved_set_that_no_longer_passes_is_ignored_with_the_error_set():
    state = _tmp("stale")
    path = state + ".config.json"
    try:
        for text, why in [('{"rev": 3, "set": {"RFID_RSSI_MIN": -300}}', "RFID_RSSI_MIN: "),
                          ('{"rev": 3, "set": {"MQTT_HOST": "x"}}', "MQTT_HOST: "),
                          ("{not json", "bad JSON")]:
            with open(path, "w") as f:
                f.write(text)
            cfg = cfg_for(state)
            r = remote.Remote(path)
            r.start(cfg)
            assert r.rev == 0 and r.error.startswith(why), r.error
            assert cfg.settings["RFID_RSSI_MIN"] == -58
    finally:
        _rm(path)


class FakePort:
    def __init__(self):
        self.name = "p"
        self.written = []

    def open(self):
        pass

    def write(self, data):
        self.written.append(data)

    def read(self):
        return b""

    def pollable(self):
        return self

    def close(self):
        pass


def test_rfid_tuning_applies_live_and_a_new_power_goes_to_the_reader():
    p = FakePort()
    src = rfid.RfidSource([p], 2600, None, -58, 1, 2, 500, now_ms=0)
    src.set_active(True, now_ms=0)
    src.read(1000)  # the set-up commands go, one per CMD_GAP_MS
    src.read(2000)
    src.read(3000)
    assert p.written == [STOP, yrm100.cmd_set_power(2600), POLL]
    src.apply_settings({"RFID_RSSI_MIN": -65, "RFID_PRESENCE": 2, "RFID_ABSENCE": 4,
                        "RFID_CYCLE_MS": 250, "RFID_POWER": 2600}, now_ms=4000)
    t = src.tracker
    assert (t.rssi_min, t.presence, t.absence, src.cycle_ms) == (-65, 2, 4, 250)
    assert len(p.written) == 3  # the same power: nothing sent
    src.apply_settings({"RFID_POWER": 2000}, now_ms=5000)
    for now in (6000, 7000, 8000):
        src.read(now)
    assert p.written[3:] == [STOP, yrm100.cmd_set_power(2000), POLL]
    src._lost(src.readers[0], 9000, OSError(5))
    for now in (20000, 21000, 22000):  # reopened: the new power in its set-up
        src.read(now)
    assert yrm100.cmd_set_power(2000) in p.written[6:]
    assert yrm100.cmd_set_power(2600) not in p.written[6:]
