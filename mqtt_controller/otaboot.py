# The loader: which version of the package runs, from <OTA_DIR>/state.json (decide()), put
# first on sys.path before anything else of the package is imported. It is factory code and is
# never switched itself: it must still work when the version it loaded is broken. It loads at
# every start, so it holds only what a start needs (ota.py, the rest of the pure update code,
# re-exports the state helpers below and loads when a push comes).
import json
import os
import sys

from mqtt_controller import __version__ as FACTORY

STATE = "/state.json"
STATE_MAX = 4096  # bytes read; a bigger file is damaged
REASON_MAX = 160  # an error text kept in state.json (the health report shows it)
STRANDED = "the trial stopped before it connected (crash, hang or watchdog)"
_VERSION_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-"
_LAST_STATES = ("ok", "failed", "rolled_back")
_added = None  # the v/<V> folder switch() put first on sys.path


# -- state.json, pure: {"current", "previous", "trial": V or None (None: the factory code),
# "tries": starts of the trial, "last": {"state", "version" (None: a push too bad to name one),
# "error"} or None, "refused": sha256 of a bad push} --------------------------------------
def chars_only(text, chars):
    for c in text:
        if c not in chars:
            return False
    return True


def valid_version(v):
    return isinstance(v, str) and 0 < len(v) <= 32 and v[0] != "." \
        and chars_only(v, _VERSION_CHARS)


def hex64(v):
    return isinstance(v, str) and len(v) == 64 and chars_only(v, "0123456789abcdef")


def new_state():
    return {"current": None, "previous": None, "trial": None, "tries": 0, "last": None,
            "refused": None}


def record(state, version, error):
    """A `last` entry; a long error text is cut."""
    if error is not None:
        error = str(error)
        if len(error) > REASON_MAX:
            error = error[:REASON_MAX - 3] + "..."
    return {"state": state, "version": version, "error": error}


def clean_state(doc):
    """A state dict from whatever state.json held: every field of a bad type or shape is reset,
    so a hand-edited or damaged file can never name a path outside v/."""
    s = new_state()
    if not isinstance(doc, dict):
        return s
    for k in ("current", "previous", "trial"):
        if valid_version(doc.get(k)):
            s[k] = doc[k]
    tries = doc.get("tries")
    if type(tries) is int and tries >= 0:
        s["tries"] = tries
    elif s["trial"] is not None:
        s["tries"] = 1  # unknown: count the trial as started (rolled back, never re-run blind)
    last = doc.get("last")
    if isinstance(last, dict) and last.get("state") in _LAST_STATES \
            and (last.get("version") is None or valid_version(last.get("version"))) \
            and (last.get("error") is None or isinstance(last.get("error"), str)):
        s["last"] = record(last["state"], last["version"], last["error"])
    if hex64(doc.get("refused")):
        s["refused"] = doc["refused"]
    return s


def _same_state(a, b):
    for k in a:
        if a[k] != b.get(k):
            return False
    return len(a) == len(b)


def decide(state, exists=None):
    """The boot decision: (version to run or None for the factory code, new state, changed).
    exists(V) says whether v/<V> is there (None: every version is). A new trial is counted
    (tries = 1) before it runs, so a trial that dies before it is confirmed is rolled back at
    the next start; a missing version folder falls back to the previous, then the factory."""
    s = clean_state(state)
    changed = not _same_state(s, state) if isinstance(state, dict) else True

    def have(v):
        return v is not None and (exists is None or exists(v))

    trial = s["trial"]
    if trial is not None:
        if s["tries"] == 0 and have(trial):
            s["tries"] = 1
            return trial, s, True
        if s["tries"] == 0:
            reason = "v/%s is missing" % trial
        else:  # the reason the trial wrote before it stopped, else the likely one
            last = s["last"]
            keep = last is not None and last["version"] == trial and last["state"] != "ok" \
                and last["error"]
            reason = last["error"] if keep else STRANDED
        s = trial_failed(s, reason)
        changed = True
    cur = s["current"]
    if cur is not None and not have(cur):
        prev = s["previous"]
        s["current"] = prev if have(prev) else None
        s["previous"] = None
        s["last"] = record("failed", cur, "v/%s is missing" % cur)
        changed = True
    return s["current"], s, changed


def trial_failed(state, reason):
    """The trial is given up (reason: why); the next start runs current again."""
    s = dict(state)
    if s.get("trial") is not None:
        s["last"] = record("rolled_back", s["trial"], reason)
    s["trial"] = None
    s["tries"] = 0
    return s


# -- the loader -------------------------------------------------------------------------------
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
            return clean_state(json.loads(text))
        except Exception:  # ValueError (CPython) or others (MicroPython) for bad JSON
            break
    return new_state()


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
    """(version, path, on trial?) per decide(); persists the decision when it changed."""
    def exists(v):
        return _exists(version_dir(ota_dir, v) + "/mqtt_controller")

    state = read_state(ota_dir)
    version, new, changed = decide(state, exists)
    trial = version is not None and version == new["trial"]
    if changed and persist:
        try:
            write_state(ota_dir, new)
        except OSError as e:
            if trial:  # a start that is not counted could crash-loop: run current instead
                _say("ERROR", "cannot write %s%s (%s): %s not started on trial" % (
                    ota_dir, STATE, e, version))
                version, new, _ = decide(trial_failed(new, "state.json not writable"),
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
        write_state(ota_dir, trial_failed(state, reason))
    except OSError:
        pass  # tries = 1 is on disk: the next start rolls back all the same
    version, path, _ = _pick(ota_dir, True, say=False)
    _say("WARNING", "trial of %s failed at start (%s): rolled back to %s" % (
        state["trial"], reason, name(version)))
    return version, path


def fail_current(ota_dir, reason):
    """The current (confirmed) version does not start any more (its code: e.g. a damaged file):
    back to the previous version, then the factory code; (version, path) to run instead."""
    state = read_state(ota_dir)
    s = dict(state)
    s["last"] = record("failed", s["current"], reason)
    s["current"], s["previous"] = s["previous"], None
    try:
        write_state(ota_dir, s)
        version, path, _ = _pick(ota_dir, True, say=False)
    except OSError:  # nothing to record it in: this start runs the factory code
        version, path = None, None
    _say("WARNING", "%s failed at start (%s): falling back to %s" % (
        state["current"], reason, name(version)))
    return version, path


def start(ota_dir, build):
    """Switches to the version to run and returns build() (which imports the runtime and builds
    it there). A trial whose import or build raises is rolled back and build() runs again on
    the current version. So does a current version whose code fails (back to the previous one,
    then the factory code); a bad setting or CA file (ValueError, OSError) or a MemoryError is
    the same for every version and is raised as it comes, as is any error of the factory code."""
    version, path, trial = _pick(ota_dir, True) if ota_dir else (None, None, False)
    switch(path)
    while True:
        try:
            return build()
        except Exception as e:  # an ImportError, a SyntaxError, a NameError, a ConfigError ...
            code = not isinstance(e, (ValueError, OSError, MemoryError))
            if not trial and (version is None or not code):
                raise
            reason = "%s: %s" % (type(e).__name__, e)
        if trial:  # even a ConfigError of its own: the trial is given up
            version, path = fail_trial(ota_dir, reason)
            trial = False
        else:
            version, path = fail_current(ota_dir, reason)
        switch(path)
