# The loader (otaboot.py) on real folders under /tmp: state.json read and written atomically
# (a missing, damaged or half-renamed file never stops a start), the selection persisted before
# a trial runs, and switch()/start() importing a hand-made package from v/<V> in this process:
# a trial that raises at import is rolled back to the current version at once.
import json
import os
import sys

from mqtt_controller import __version__ as FACTORY
from mqtt_controller import compat, ota, otaboot


def _tmpdir(tag):
    d = "/tmp/basket-ota-%s-%d" % (tag, compat.random_below(10 ** 9))
    os.mkdir(d)
    return d


def _rmtree(p):
    try:
        is_dir = os.stat(p)[0] & 0x4000
    except OSError:
        return
    if is_dir:
        for name in os.listdir(p):
            _rmtree(p + "/" + name)
        os.rmdir(p)
    else:
        os.remove(p)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _read(path):
    with open(path) as f:
        return f.read()


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _version(d, v, init=None):
    """v/<v>/mqtt_controller/__init__.py saying __version__ = v (or `init` as its text)."""
    for p in (d + "/v", d + "/v/" + v, d + "/v/" + v + "/mqtt_controller"):
        if not _exists(p):
            os.mkdir(p)
    _write(d + "/v/%s/mqtt_controller/__init__.py" % v,
           init if init is not None else "__version__ = %r\n" % v)


def st(**kw):
    s = ota.new_state()
    s.update(kw)
    return s


def _state(d):
    return json.loads(_read(d + "/state.json"))


def test_a_missing_or_damaged_state_file_reads_as_new_and_never_raises():
    d = _tmpdir("read")
    try:
        assert otaboot.read_state(d + "/nowhere") == ota.new_state()
        assert otaboot.read_state(d) == ota.new_state()
        for text in ("{not json", "[1, 2]", "", "\x00\xff", '{"current": "../../x"}',
                     '{"current": "' + "a" * 5000 + '"}'):
            _write(d + "/state.json", text)
            assert otaboot.read_state(d) == ota.new_state(), text
    finally:
        _rmtree(d)


def test_the_state_file_is_replaced_through_a_temp_file_and_read_back():
    d = _tmpdir("write")
    try:
        s = st(current="2.0", previous="1.0", last={"state": "ok", "version": "2.0",
                                                     "error": None})
        otaboot.write_state(d, st(current="1.0"))
        otaboot.write_state(d, s)  # over an existing file
        assert _state(d) == s
        assert not _exists(d + "/state.json.tmp")
        assert otaboot.read_state(d) == s
        # a temp file a kill -9 left behind is not the state: the old file still is
        _write(d + "/state.json.tmp", '{"current": "9.9"')
        assert otaboot.read_state(d) == s
        otaboot.write_state(d, st(current="3.0"))
        assert _state(d)["current"] == "3.0"
    finally:
        _rmtree(d)


def test_a_rename_caught_half_way_on_fat_reads_the_complete_temp_file():
    d = _tmpdir("fat")
    try:  # FAT: the old state.json was removed, the temp file not yet renamed
        _write(d + "/state.json.tmp", json.dumps(st(current="2.0", trial="3.0")))
        assert otaboot.read_state(d) == st(current="2.0", trial="3.0")
    finally:
        _rmtree(d)


def test_select_counts_a_trial_before_it_runs_and_rolls_it_back_at_the_next_start():
    d = _tmpdir("select")
    try:
        assert otaboot.select("") == (None, None)
        assert otaboot.select(d) == (None, None)  # no state: factory, nothing written
        assert not _exists(d + "/state.json")
        _version(d, "2.0")
        _version(d, "3.0")
        otaboot.write_state(d, st(current="2.0", trial="3.0"))
        assert otaboot.select(d, persist=False) == ("3.0", d + "/v/3.0")  # only looks
        assert _state(d)["tries"] == 0
        assert otaboot.select(d) == ("3.0", d + "/v/3.0")
        assert _state(d) == st(current="2.0", trial="3.0", tries=1)
        # the trial never confirmed itself (a crash, a hang): the next start rolls back
        assert otaboot.select(d) == ("2.0", d + "/v/2.0")
        assert _state(d) == st(current="2.0", last={"state": "rolled_back", "version": "3.0",
                                                    "error": ota.STRANDED})
    finally:
        _rmtree(d)


def test_a_missing_version_folder_falls_back_to_previous_then_factory():
    d = _tmpdir("missing")
    try:
        _version(d, "1.0")
        otaboot.write_state(d, st(current="2.0", previous="1.0"))
        assert otaboot.select(d) == ("1.0", d + "/v/1.0")
        assert _state(d)["current"] == "1.0"
        _rmtree(d + "/v/1.0")
        assert otaboot.select(d) == (None, None)
        assert _state(d)["current"] is None
    finally:
        _rmtree(d)


def test_a_trial_that_cannot_be_counted_is_not_started():
    d = _tmpdir("readonly")
    try:
        _version(d, "2.0")
        _version(d, "3.0")
        otaboot.write_state(d, st(current="2.0", trial="3.0"))
        os.mkdir(d + "/state.json.tmp")  # the write of tries = 1 fails
        assert otaboot.select(d) == ("2.0", d + "/v/2.0")
        assert _state(d) == st(current="2.0", trial="3.0")  # left for a start that can count it
    finally:
        _rmtree(d)


class Modules:
    """Puts sys.path and this process's mqtt_controller modules back after a switch()."""

    def __enter__(self):
        self.path = list(sys.path)
        self.mods = {}
        for k in list(sys.modules):
            if k == "mqtt_controller" or k.startswith("mqtt_controller."):
                self.mods[k] = sys.modules[k]
        return self

    def __exit__(self, *exc):
        otaboot.switch(None)
        sys.path[:] = self.path
        for k, m in self.mods.items():
            sys.modules[k] = m
        return False


def _loaded_version():
    import mqtt_controller

    return mqtt_controller.__version__


def test_switch_loads_the_package_from_the_version_folder_and_back():
    d = _tmpdir("switch")
    try:
        _version(d, "2.0")
        _version(d, "3.0")
        with Modules():
            otaboot.switch(d + "/v/2.0")
            assert _loaded_version() == "2.0"
            assert sys.path[0] == d + "/v/2.0"
            otaboot.switch(d + "/v/3.0")  # nothing of 2.0 is left on the path
            assert _loaded_version() == "3.0"
            assert d + "/v/2.0" not in sys.path
            otaboot.switch(None)
            assert _loaded_version() == FACTORY
            assert d + "/v/3.0" not in sys.path
    finally:
        _rmtree(d)


def test_start_rolls_a_trial_that_raises_at_import_back_in_this_process():
    d = _tmpdir("start")
    try:
        _version(d, "2.0")
        _version(d, "3.0", init="raise RuntimeError('v3 is broken')\n")
        otaboot.write_state(d, st(current="2.0", trial="3.0"))
        with Modules():
            assert otaboot.start(d, _loaded_version) == "2.0"
        assert _state(d) == st(current="2.0", last={
            "state": "rolled_back", "version": "3.0",
            "error": "RuntimeError: v3 is broken"})
        with Modules():  # the next start runs 2.0 again, nothing pending
            assert otaboot.start(d, _loaded_version) == "2.0"
    finally:
        _rmtree(d)


def test_start_runs_a_good_trial_and_falls_back_from_a_current_version_that_fails():
    d = _tmpdir("start-ok")
    try:
        _version(d, "2.0", init="raise ImportError('2.0 is broken too')\n")
        _version(d, "3.0")
        otaboot.write_state(d, st(current="2.0", trial="3.0"))
        with Modules():
            assert otaboot.start(d, _loaded_version) == "3.0"
        assert _state(d)["tries"] == 1
        # a current version whose code fails: back to the previous one, then the factory code
        _version(d, "1.0")
        otaboot.write_state(d, st(current="2.0", previous="1.0"))
        with Modules():
            assert otaboot.start(d, _loaded_version) == "1.0"
        failed = {"state": "failed", "version": "2.0",
                  "error": "ImportError: 2.0 is broken too"}
        assert _state(d) == st(current="1.0", last=failed)
        otaboot.write_state(d, st(current="2.0"))
        with Modules():
            assert otaboot.start(d, _loaded_version) == FACTORY
        assert _state(d) == st(last=failed)

        # a bad setting is the same for every version: raised, nothing changed
        def bad_setting():
            _loaded_version()
            raise ValueError("MQTT_PORT: must be a number")

        otaboot.write_state(d, st(current="3.0"))
        with Modules():
            try:
                otaboot.start(d, bad_setting)
            except ValueError as e:
                assert "MQTT_PORT" in str(e)
            else:
                raise AssertionError("a configuration error was swallowed")
        assert _state(d) == st(current="3.0")
        # a trial failing with nothing to fall back on but the factory code
        otaboot.write_state(d, st(trial="2.0"))
        with Modules():
            assert otaboot.start(d, _loaded_version) == FACTORY
        assert _state(d)["last"]["state"] == "rolled_back"
    finally:
        _rmtree(d)


def test_fail_trial_records_the_reason_and_names_what_runs_instead():
    d = _tmpdir("fail")
    try:
        _version(d, "2.0")
        _version(d, "3.0")
        otaboot.write_state(d, st(current="2.0", trial="3.0", tries=1))
        assert otaboot.fail_trial(d, "SyntaxError: invalid syntax") == ("2.0", d + "/v/2.0")
        assert _state(d) == st(current="2.0", last={
            "state": "rolled_back", "version": "3.0", "error": "SyntaxError: invalid syntax"})
    finally:
        _rmtree(d)
