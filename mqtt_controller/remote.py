# Remote configuration: the service's retained `<topic>/config`, {"rev":N,"set":{"KEY":value}}.
# Only config.REMOTE keys, checked by config.py's table as at start-up, all or nothing. A set
# whose rev is above the applied one is applied live (log level, RFID tuning, health interval)
# and saved; a bad one changes nothing and is kept in `error` for the health report. The saved
# set is laid over the local settings at the next start, before the readers open.
# config.py is imported only for a check and released again (it is start-up code).
import json

from mqtt_controller import compat, log, store

MAX_BYTES = 1024
RFID_KEYS = ("RFID_POWER", "RFID_RSSI_MIN", "RFID_PRESENCE", "RFID_ABSENCE", "RFID_CYCLE_MS")
BOARD_FILE = "remote_config.json"


def path_for(cfg):
    """Where a host keeps the applied set: beside the state file (None: not kept)."""
    state = getattr(cfg, "state_file", None)
    return state + ".config.json" if state else None


def parse(payload, limit=MAX_BYTES):
    """(rev, set) from a config payload; ValueError with the reason ("bad JSON", ...)."""
    if payload is None or len(payload) > limit:
        raise ValueError("config over %d bytes" % limit)
    try:
        doc = json.loads(payload)
    except Exception:  # ValueError, UnicodeError, MicroPython's own
        raise ValueError("bad JSON")
    if not isinstance(doc, dict) or "rev" not in doc or "set" not in doc:
        raise ValueError("must be {\"rev\":N,\"set\":{...}}")
    rev = doc["rev"]
    if isinstance(rev, bool) or not isinstance(rev, int) or rev < 1:
        raise ValueError("rev must be a whole number >= 1")
    if not isinstance(doc["set"], dict):
        raise ValueError("set must be an object")
    return rev, doc["set"]


def check(values):
    """The converted values of a set (config.remote_values), or ValueError "KEY: ..."."""
    from mqtt_controller import config

    try:
        return config.remote_values(values)
    finally:
        compat.release("config")


class Remote:
    def __init__(self, path=None):
        self.path = path  # where the applied set is kept (None: nowhere)
        self.rev = 0  # the applied rev (0: none)
        self.set = {}  # the applied set, as received
        self.checked = {}  # the same, converted (config.remote_values)
        self.error = None  # why the last set was refused (None: it was not)
        self.base = None  # the local values of the remote keys, taken before any remote one

    def start(self, cfg):
        """Lays the saved set over cfg (before the readers open): start-up, config.py is
        loaded anyway. A saved set that no longer passes is ignored (warning, error set)."""
        saved = self._load()
        if saved is None:
            return
        from mqtt_controller import config

        try:
            self.base = config.remote_base(cfg)
            try:
                rev, values = parse(saved, 4 * MAX_BYTES)
                checked = config.remote_values(values)
            except ValueError as e:
                self.error = str(e)
                log.warning("saved remote config %s ignored: %s", self.path, e)
                return
            config.apply_remote(cfg, checked)
        finally:
            compat.release("config")
        self.rev = rev
        self.set = values
        self.checked = checked
        log.info("remote config rev %d applied from %s", rev, self.path)

    def _load(self):
        if not self.path:
            return None
        try:
            with open(self.path) as f:
                return f.read()
        except OSError:
            return None

    def message(self, payload, rt):
        """A `<topic>/config` message: applied, refused or ignored (an old rev, an empty
        payload: the retained copy cleared, the applied set stays). rt: the Runtime."""
        if payload is not None and not len(payload):
            log.info("remote config cleared on the broker; rev %d stays", self.rev)
            return
        try:
            rev, values = parse(payload)
        except ValueError as e:
            return self._refuse(str(e), rt)
        if rev <= self.rev:
            log.info("remote config rev %d ignored: rev %d is applied", rev, self.rev)
            return
        if self.base is None:
            from mqtt_controller import config

            self.base = config.remote_base(rt.cfg)
        try:
            checked = check(values)
        except ValueError as e:
            return self._refuse(str(e), rt)
        self.apply(rt, checked)
        self.rev = rev
        self.set = values
        self.checked = checked
        self.error = None
        self._save()
        log.info("remote config rev %d applied: %s", rev, ", ".join(sorted(values)) or "-")
        _changed(rt)

    def unavailable(self, why, rt):
        """Remote configuration cannot reach this basket (the broker refused its topic): the
        health report says why."""
        self.error = why
        _changed(rt)

    def _refuse(self, why, rt):
        self.error = why
        log.warning("remote config refused (rev %d stays): %s", self.rev, why)
        _changed(rt)

    def apply(self, rt, checked):
        """The whole set live: the local value for each remote key the set leaves out."""
        eff = dict(self.base or {})
        eff.update(checked)
        if "LOG_LEVEL" in eff:
            log.set_level(eff["LOG_LEVEL"])
        rfid = {}
        for key in RFID_KEYS:
            if key in eff:
                rfid[key] = eff[key]
        for src in rt.sources:
            fn = getattr(src, "apply_settings", None)
            if fn is not None and rfid:
                fn(rfid)
        fn = getattr(rt, "set_health_interval", None)
        if fn is not None and "HEALTH_INTERVAL_S" in eff:
            fn(eff["HEALTH_INTERVAL_S"])

    def _save(self):
        if not self.path:
            return
        try:
            store.save(self.path, {"rev": self.rev, "set": self.set})
        except OSError as e:
            log.error("cannot write remote config %s: %s; applied until the next start",
                      self.path, e)


def _changed(rt):
    fn = getattr(rt, "health_changed", None)
    if fn is not None:
        fn()
