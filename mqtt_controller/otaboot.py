# The loader: which version of the package runs, from <OTA_DIR>/state.json (ota.decide), put
# first on sys.path before anything else of the package is imported. It is factory code and is
# never switched itself: it must still work when the version it loaded is broken.
import json
import os
import sys

from mqtt_controller import __version__ as FACTORY
from mqtt_controller import ota  # the factory's: fail_trial() must not import the broken trial

STATE = "/state.json"
STATE_MAX = 4096  # bytes read; a bigger file is damaged
_added = None  # the v/<V> folder switch() put first on sys.path


def _say(level, msg):
    # The loader runs before log.py (which it may replace): the same line format, by hand.
    try:
        sys.stderr.write("%s ota: %s\n" % (level, msg))
    except (AttributeError, OSError):
        print("%s ota: %s" % (level, msg))


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def name(version):
    return "factory %s" % FACTORY if version is None else version


def version_dir(ota_dir, version):
    return "%s/v/%s" % (ota_dir, version)


def read_state(ota_dir):
    """The selection; new_state() for a missing or damaged file, never raises. A missing
    state.json beside a state.json.tmp is FAT's rename caught half-way (write_state removed
    the old file after the temp file was complete), so the temp file is taken then."""
    for path in (ota_dir + STATE, ota_dir + STATE + ".tmp"):
        try:
            with open(path) as f:
                text = f.read(STATE_MAX)
        except OSError:
            continue
        try:
            return ota.clean_state(json.loads(text))
        except Exception:  # ValueError (CPython) or others (MicroPython) for bad JSON
            break
    return ota.new_state()


def write_state(ota_dir, state):
    """Replaces state.json atomically: temp file, then rename; raises OSError."""
    path = ota_dir + STATE
    with open(path + ".tmp", "w") as f:
        f.write(json.dumps(state))
        f.flush()
        if hasattr(os, "fsync"):  # CPython: on the disk before the rename; MicroPython: close()
            os.fsync(f.fileno())
    try:
        os.rename(path + ".tmp", path)
    except OSError:  # FAT will not rename over a file (read_state covers the gap)
        os.remove(path)
        os.rename(path + ".tmp", path)


def _pick(ota_dir, persist, say=True):
    """(version, path, on trial?) per ota.decide; persists the decision when it changed."""
    def exists(v):
        return _exists(version_dir(ota_dir, v) + "/mqtt_controller")

    state = read_state(ota_dir)
    version, new, changed = ota.decide(state, exists)
    trial = version is not None and version == new["trial"]
    if changed and persist:
        try:
            write_state(ota_dir, new)
        except OSError as e:
            if trial:  # a start that is not counted could crash-loop: run current instead
                _say("ERROR", "cannot write %s%s (%s): %s not started on trial" % (
                    ota_dir, STATE, e, version))
                version, new, _ = ota.decide(ota.trial_failed(new, "state.json not writable"),
                                             exists)
                trial = False
    if persist and say:
        last = new["last"]
        if changed and last is not None and last["state"] != "ok" and last != state["last"]:
            _say("WARNING", "%s %s: %s" % (last["version"], last["state"].replace("_", " "),
                                           last["error"]))
        _say("INFO", "starting %s%s" % (name(version), " on trial" if trial else ""))
    return version, None if version is None else version_dir(ota_dir, version), trial


def select(ota_dir, persist=True):
    """(version, path) to run: (None, None) for the factory code (and when ota_dir is "").
    A trial is counted before it runs. persist=False only looks (--version)."""
    if not ota_dir:
        return None, None
    return _pick(ota_dir, persist)[:2]


def switch(path):
    """Puts path (a v/<V> folder, None: the factory code) first on sys.path and forgets every
    mqtt_controller module, so the next import loads them all from there: nothing of the old
    version stays in use. Nothing happens when path is already in place."""
    global _added
    if path == _added:
        return
    if _added in sys.path:
        sys.path.remove(_added)
    if path is not None:
        sys.path.insert(0, path)
    _added = path
    for mod in list(sys.modules):
        if mod == "mqtt_controller" or mod.startswith("mqtt_controller."):
            del sys.modules[mod]


def fail_trial(ota_dir, reason):
    """The trial could not even start (reason: the exception's text): rolled back in this
    process; (version, path) to run instead."""
    state = read_state(ota_dir)
    try:
        write_state(ota_dir, ota.trial_failed(state, reason))
    except OSError:
        pass  # tries = 1 is on disk: the next start rolls back all the same
    version, path, _ = _pick(ota_dir, True, say=False)
    _say("WARNING", "trial of %s failed at start (%s): rolled back to %s" % (
        state["trial"], reason, name(version)))
    return version, path


def start(ota_dir, build):
    """Switches to the version to run and returns build() (which imports the runtime and builds
    it there). A trial whose import or build raises is rolled back and build() runs again on
    the current version; errors of a version not on trial are raised as they come."""
    version, path, trial = _pick(ota_dir, True) if ota_dir else (None, None, False)
    switch(path)
    if not trial:
        return build()
    try:
        return build()
    except Exception as e:  # an ImportError, a SyntaxError, a ConfigError of its own ...
        reason = "%s: %s" % (type(e).__name__, e)
    switch(fail_trial(ota_dir, reason)[1])
    return build()
