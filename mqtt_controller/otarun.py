# The update agent in the running basket, a turn hook of the runtime: the push on <topic>/ota
# (held while a session lasts), the trial's deadline, and the health report's `ota` field. It is
# loaded whenever OTA_DIR is set, so only that much lives here: each rare step (checking a
# push, the download, confirming or giving up a trial) is in otaget.py, imported for it and
# released again (code costs heap on a board).
import json

from mqtt_controller import __version__, compat, log
from mqtt_controller.backoff import Backoff
from mqtt_controller.compat import ticks_add, ticks_diff, ticks_ms
from mqtt_controller.controller import SHOPPING

RETRY_FIRST_MS = 60000  # a download that failed on the network or the disk: again in 1 min,
RETRY_CAP_MS = 3600000  # 2, 4 ... at most an hour apart


def _left(due, now):
    return max(0, ticks_diff(due, now))


def _get():
    from mqtt_controller import otaget

    return otaget


def _done():
    for name in ("otaget", "ota", "otaboot"):
        compat.release(name)


class Agent:
    def __init__(self, rt, cfg, flavour):
        self.rt = rt
        self.dir = cfg.ota_dir
        self.key = getattr(cfg, "ota_key", None)
        self.trial_s = getattr(cfg, "ota_trial", 120)
        self.flavour = flavour
        self.push = None  # a verified push waiting for its download (and its "hash")
        self.refusals = 0
        self.off = None  # why updates cannot reach this basket (the broker refused the topic)
        self.retry = Backoff(RETRY_FIRST_MS, RETRY_CAP_MS)
        self.retry_due = None
        self._trial_due = None
        s = _read(self.dir)
        self.seen = s.get("refused")  # the hash of the last push handled: not handled again
        last = s.get("last") or {}
        self.dropped = last.get("version") if last.get("state") == "rolled_back" else None
        if s.get("trial") == __version__:
            self._trial_due = ticks_add(ticks_ms(), self.trial_s * 1000)
            now = ("trial", __version__, None)
        elif _text(s.get("trial")):
            now = ("staged", s["trial"], None)
        elif last.get("state") in ("ok", "failed", "rolled_back"):
            now = (last["state"], _text(last.get("version")), _text(last.get("error")))
        else:
            now = ("idle", None, None)
        self.state = self._settled = now  # (state, version, error)

    # -- the verbs (the runtime's and otaget's) -------------------------------------------------
    def status(self):
        st, version, error = self.state
        return {"error": self.off or error, "state": st, "version": version}

    def unavailable(self, why):
        self.off = why
        self.rt.health_changed()

    def set(self, state, version, error=None):
        """What the health report shows now."""
        self.state = (state, version, error)
        self.rt.health_changed()

    def settle(self, state, version, error=None):
        """set(), and what it shows again once a push waiting is withdrawn."""
        self._settled = (state, version, error)
        self.set(state, version, error)

    def take(self, push):
        """A verified push to download (push["hash"] set) replaces any waiting one."""
        self.push = push
        self.retry.reset()
        self.retry_due = None

    def drop(self):
        """No push waits any more (withdrawn, refused, or one for the running version)."""
        if self.push is not None:
            self.push = None
            self.set(*self._settled)

    def refused(self, version, why):
        """A push that failed verification: dropped and counted (the count is returned); the
        report says why."""
        self.refusals += 1
        self.push = None
        self.set("failed", version, why)
        return self.refusals

    def later(self, why):
        """The download of the waiting push failed on the way: it is tried again after the
        back-off; the ms until then."""
        delay = self.retry.next_delay()
        self.retry_due = ticks_add(ticks_ms(), delay)
        self.set("failed", self.push["version"], why)
        return delay

    def message(self, payload):
        """A message on <topic>/ota (None: one over the packet limit)."""
        if payload is not None and not len(payload):
            self.seen = None
            return self.drop()  # the retained push cleared: no update wanted
        from binascii import hexlify
        from hashlib import sha256

        h = hexlify(sha256(payload or b"").digest()).decode()
        if h == self.seen:
            return  # the retained copy again (every connect)
        self.seen = h
        self._step("check", payload, h)

    # -- the turn hook -------------------------------------------------------------------------
    def __call__(self, now):
        if self._trial_due is not None:
            if self.rt.connected:
                self._trial_due = None
                return self._step("confirm")
            if ticks_diff(now, self._trial_due) >= 0:
                self._trial_due = None
                return self._step("give_up")
            return _left(self._trial_due, now)
        push = self.push
        if push is None:
            return None
        if self.rt.controller.state == SHOPPING:
            if self.state[0] != "deferred":
                log.info("OTA: %s waits for the session's end", push["version"])
                self.set("deferred", push["version"])
            return None
        if self.retry_due is not None and ticks_diff(self.retry_due, now) > 0:
            return _left(self.retry_due, now)
        if not self.rt.connected:
            return None  # the next connect brings the next turn
        return self._step("update")

    def _step(self, name, *args):
        try:
            getattr(_get(), name)(self, *args)
        except Exception as e:  # a MemoryError importing otaget on a board, a bug: never the
            self._failed(name, "%s: %s" % (type(e).__name__, e))  # basket (nor a crash loop)
        finally:
            _done()
        return 0

    def _failed(self, name, why):
        log.error("OTA: %s failed: %s", name, why)
        push = self.push
        if name == "update" and push is not None:
            self.later(why)
        else:
            self.set("failed", None if push is None else push["version"], why)
        if name == "give_up":
            self.rt.restart()  # tries = 1 is on disk: the next start rolls the trial back

    def tick(self):
        """Between the download's chunks: the other turn hooks run (a board's watchdog)."""
        self.rt.run_hooks(self)


def _text(v):
    return v if isinstance(v, str) else None


def _read(ota_dir):
    """state.json as the loader left it, for the report only (otaboot.py reads and writes it
    for every change; it is not loaded here to spare the heap); {} when unreadable."""
    try:
        with open(ota_dir + "/state.json") as f:
            s = json.loads(f.read(4096))
        if isinstance(s, dict) and isinstance(s.get("last") or {}, dict):
            return s
    except Exception:  # OSError, ValueError, MicroPython's own
        pass
    return {}
