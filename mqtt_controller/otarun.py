# The update agent in the running basket, a turn hook of the runtime: the signed push on
# <topic>/ota (held while a session lasts), the download (otaget.py), the trial's confirmation
# or timeout, and the health report's `ota` field. Loaded whenever OTA_DIR is set, so it stays
# small: ota.py, otaboot.py and otaget.py are imported only when a push comes or a trial ends.
from mqtt_controller import __version__, compat, log
from mqtt_controller.backoff import Backoff
from mqtt_controller.compat import ticks_add, ticks_diff, ticks_ms
from mqtt_controller.controller import SHOPPING

RETRY_FIRST_MS = 60000  # a download that failed on the network or the disk: again in 1 min,
RETRY_CAP_MS = 3600000  # 2, 4 ... at most an hour apart


def _left(due, now):
    return max(0, ticks_diff(due, now))


def _hash(payload):
    from binascii import hexlify
    from hashlib import sha256

    return hexlify(sha256(payload).digest()).decode()


class Agent:
    def __init__(self, rt, cfg, flavour):
        self.rt = rt
        self.dir = cfg.ota_dir
        self.key = getattr(cfg, "ota_key", None)
        self.trial_s = getattr(cfg, "ota_trial", 120)
        self.flavour = flavour
        self.push = None  # a verified push waiting for its download
        self.refusals = 0
        self.off = None  # why updates cannot reach this basket (the broker refused the topic)
        self._retry = Backoff(RETRY_FIRST_MS, RETRY_CAP_MS)
        self._retry_due = None
        self._trial_due = None
        from mqtt_controller import otaboot

        s = otaboot.read_state(self.dir)
        self._refused = s["refused"]  # the hash of a push refused (it is not fetched again)
        last = s["last"] or {}
        # a version that was rolled back: its retained push is not tried again
        self._dropped = last.get("version") if last.get("state") == "rolled_back" else None
        if s["trial"] == __version__:
            self._trial_due = ticks_add(ticks_ms(), self.trial_s * 1000)
            self._settled = ("trial", __version__, None)
        elif s["trial"] is not None:
            self._settled = ("staged", s["trial"], None)
        elif last:
            self._settled = (last["state"], last["version"], last["error"])
        else:
            self._settled = ("idle", None, None)
        self.state = self._settled  # (state, version, error) for the health report

    def status(self):
        st, version, error = self.state
        return {"error": self.off or error, "state": st, "version": version}

    def unavailable(self, why):
        self.off = why
        self.rt.health_changed()

    def _set(self, state, version, error=None):
        self.state = (state, version, error)
        self.rt.health_changed()

    # -- the push -------------------------------------------------------------------------------
    def message(self, payload):
        """A message on <topic>/ota (None: one over the packet limit)."""
        if payload is not None and not len(payload):
            if self.push is not None:
                log.info("OTA: push withdrawn; %s not installed", self.push["version"])
                self.push = None
                self._set(*self._settled)
            return
        h = _hash(payload or b"")
        if h == self._refused or (self.push is not None and self.push["hash"] == h):
            return  # the retained copy again (every connect)
        from mqtt_controller import ota

        try:
            if payload is None:
                raise ota.OtaError("push too big")
            push = ota.parse_push(payload, self.rt.cfg.basket_id, self.key)
        except ota.OtaError as e:
            return self._refuse(None, h, str(e), False)
        finally:
            compat.release("ota")
        v = push["version"]
        if v == __version__ or v == self._dropped:
            why = "it runs already" if v == __version__ else "it was rolled back"
            log.info("OTA: push of %s ignored: %s", v, why)
            if self.push is not None:
                self.push = None
                self._set(*self._settled)
            return
        push["hash"] = h
        self.push = push
        self._retry.reset()
        self._retry_due = None
        log.info("OTA: %s pushed", v)

    def _refuse(self, version, h, why, keep):
        """A push that failed verification: the basket stays on its version; the same push is
        not tried again (keep: remembered in state.json, across restarts)."""
        self.refusals += 1
        self._refused = h
        self.push = None
        log.warning("OTA: push%s refused (#%d): %s; staying on %s",
                    "" if version is None else " of " + version, self.refusals, why,
                    __version__)
        self._set("failed", version, why)
        if keep:
            self._write(lambda ota, s: ota.refused(s, version, h, why))

    def _write(self, change):
        """state.json = change(ota, state); False (logged) when the disk refused it."""
        from mqtt_controller import ota, otaboot

        try:
            otaboot.write_state(self.dir, change(ota, otaboot.read_state(self.dir)))
            return True
        except OSError as e:
            log.error("OTA: cannot write %s/state.json: %s", self.dir, e)
            return False
        finally:
            compat.release("ota")
            compat.release("otaboot")

    # -- the turn hook --------------------------------------------------------------------------
    def __call__(self, now):
        if self._trial_due is not None:
            if self.rt.connected:
                self._confirm()
            elif ticks_diff(now, self._trial_due) >= 0:
                return self._give_up()
            else:
                return _left(self._trial_due, now)
        push = self.push
        if push is None:
            return None
        if self.rt.controller.state == SHOPPING:
            if self.state[0] != "deferred":
                log.info("OTA: %s waits for the session's end", push["version"])
                self._set("deferred", push["version"])
            return None
        if self._retry_due is not None and ticks_diff(self._retry_due, now) > 0:
            return _left(self._retry_due, now)
        if not self.rt.connected:
            return None  # the next connect brings the next turn
        self._fetch(push)
        return 0

    def _confirm(self):
        self._trial_due = None
        keep = []

        def ok(ota, s):
            s, k = ota.trial_ok(s)
            keep.extend(k)
            return s

        if self._write(ok):
            from mqtt_controller import otaget

            otaget.prune(self.dir, keep)
            compat.release("otaget")
        log.info("OTA: %s confirmed: connected and subscribed on trial", __version__)
        self._settled = ("ok", __version__, None)
        self._set(*self._settled)

    def _give_up(self):
        why = "not connected within %d s" % self.trial_s
        self._trial_due = None
        self._write(lambda ota, s: ota.trial_failed(s, why))
        log.error("OTA: trial of %s failed: %s; restarting into the previous version",
                  __version__, why)
        self._set("rolled_back", __version__, why)
        self.rt.restart()
        return 0

    def _fetch(self, push):
        v = push["version"]
        log.info("OTA: downloading %s from %s", v, push["manifest"])
        self._set("downloading", v)
        self.rt.send_health()
        from mqtt_controller import otaget

        try:
            otaget.fetch(self.dir, push, self.flavour, self._tick, __version__)
        except ValueError as e:  # ota.OtaError: the files are not what the signed push says
            return self._refuse(v, push["hash"], str(e), True)
        except Exception as e:  # OSError: the network, the server or the disk; MemoryError
            why = str(e) or type(e).__name__
            self._retry_due = ticks_add(ticks_ms(), self._retry.next_delay())
            log.warning("OTA: download of %s failed: %s; trying again in %d s", v, why,
                        _left(self._retry_due, ticks_ms()) // 1000)
            return self._set("failed", v, why)
        finally:
            compat.release("otaget")
            compat.release("ota")
            compat.release("otaboot")
        self.push = None
        log.info("OTA: %s verified and staged; restarting into it on trial", v)
        self._set("staged", v)
        self.rt.send_health()
        self.rt.restart()

    def _tick(self):
        self.rt.run_hooks(self)  # a board's watchdog is fed between the chunks
