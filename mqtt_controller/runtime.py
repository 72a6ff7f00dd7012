# The imperative shell: one loop that sleeps in poll() on the broker link and the item sources,
# feeds the controller, and persists, publishes and displays what it decides. The link is
# reconnected forever with exponential back-off and jitter; only a signal stops the loop.
# Timing lives here: item-driven updates are paced, an update no total answered is re-published,
# a state write the disk refused is retried, each with its own figures of the one back-off
# (backoff.py). A supervisor (board.py) steers it through a few verbs and a per-turn hook.
# With OTA_DIR set, the update agent (otarun.py) is one such hook, fed by <topic>/ota.
import select

from mqtt_controller import __version__, compat, health, log, store
from mqtt_controller.backoff import Backoff
from mqtt_controller.compat import ticks_add, ticks_diff, ticks_ms
from mqtt_controller.controller import NONE, NOW, SHOPPING
from mqtt_controller.packet import MQTTException

BACKOFF_FIRST_MS = 1000  # broker: 0.5-1 s, 1-2 s, 2-4 s ... 15-30 s (jittered)
BACKOFF_CAP_MS = 30000
STABLE_MS = 10000  # a link that stayed up this long resets the back-off
MAX_WAIT_MS = 60000
UPDATE_GAP_MS = 200  # item-driven updates at most 5 a second (the newest cart wins)
CONFIRM_FIRST_MS = 3000  # no total for the cart this long after its update: publish it again
CONFIRM_CAP_MS = 60000
SAVE_FIRST_MS = 1000  # a refused state write is retried after 1 s, 2 s ... 30 s
SAVE_CAP_MS = 30000
HEALTH_EXTRAS = ("battery_mv", "boot", "rssi")  # what set_health_extras may give


def _left(due, now):
    """ms until ticks `due` (0 when past)."""
    return max(0, ticks_diff(due, now))


class Runtime:
    def __init__(self, cfg, controller=None, sources=None, display=None, client=None,
                 remote_config=None, flavour="py", remote_file=None):
        """remote_config: a remote.Remote already started over cfg (startup.build(): a saved
        set), or None: one is made at the first config message, kept at remote_file (None:
        beside the state file). flavour: the release files this basket runs, py (a host) or
        mpy (a board)."""
        self.cfg = cfg
        self.status_topic = cfg.topic + "/status"
        self.config_topic = cfg.topic + "/config"
        self.update_topic = cfg.topic + "/update"
        self.avail_topic = cfg.topic + "/availability"
        self.health_topic = cfg.topic + "/health"
        self.ota_topic = cfg.topic + "/ota"
        if controller is None:  # startup.build() passes the one it restored
            from mqtt_controller.startup import restore

            controller = restore(cfg)
        self.controller = controller
        self.sources = [s for s in (sources or []) if s is not None]
        self.display = display
        self.remote = remote_config  # rev, set, error: the health report reads them
        self.remote_file = remote_file
        if client is None:  # imported here: a basket on MQTT_CLIENT=umqtt never loads mqtt.py
            from mqtt_controller.mqtt import MQTTClient

            tls = None
            if cfg.tls:
                from mqtt_controller.tls import tls_wrapper

                tls = tls_wrapper(cfg.cafile)
            client = MQTTClient(cfg.client_id, cfg.host, cfg.port, cfg.user, cfg.password,
                                cfg.keepalive, clean_session=False, tls=tls)
        self.client = client
        self.client.set_last_will(self.avail_topic, b"offline", retain=True, qos=1)
        self.connected = False  # read it; the verbs below change it
        self._link_backoff = Backoff(BACKOFF_FIRST_MS, BACKOFF_CAP_MS, jitter=True,
                                     stable_ms=STABLE_MS)
        self._connect_due = ticks_ms()
        self._held = False  # hold(): no connect attempts until connect_now()
        self._hooks = []  # add_turn_hook()
        self.stopping = False
        self.exit_code = 0  # restart(): 3, "restart me" (a staged update, a failed trial)
        self.poller = select.poll()
        self._registered = []
        self._active = None
        self._view = None
        self._signals = None  # compat.StopSignals while run() runs
        # Pacing: when the last update went out (the first item-driven one may go at once).
        self._sent_at = ticks_add(ticks_ms(), -UPDATE_GAP_MS)
        # Convergence: the last update published, when to publish it again if no total for its
        # cart arrives; its back-off's failures count the re-publications.
        self._last = None
        self._confirm_due = None
        self._confirm = Backoff(CONFIRM_FIRST_MS, CONFIRM_CAP_MS)
        # Persist-then-publish: a state the disk refused, retried from _save_due; no update
        # goes out while it waits.
        self._unsaved = None
        self._save_due = None
        self._save_retry = Backoff(SAVE_FIRST_MS, SAVE_CAP_MS)
        # The health report: due after every connect, every HEALTH_INTERVAL_S (a cfg without
        # the setting, a test's stand-in: no periodic report) and at a watched change; it goes
        # at the end of a turn in which nothing came from the broker and no update waits.
        self._health_s = getattr(cfg, "health_interval", 0)
        self._health_due = None  # ticks of the next report; None: none due
        self._health_at = None  # ticks of the last one
        self._health_extras = None  # set_health_extras(): the board's values
        self._connects = 0  # successful connects; the report's reconnects: all but the first
        self._up_s = 0  # uptime, carried forward each turn (ticks wrap on a board)
        self._up_at = ticks_ms()
        self._display_state = "none" if display is None else "ok"
        self._status_srcs = [s for s in self.sources if getattr(s, "status_changes", None)
                             is not None]
        self._status_seen = -1  # the sum of their status_changes when last compared
        self._readers = None  # the readers' (name, ok) then
        self.ota = None  # the update agent (otarun.Agent), with OTA_DIR set only
        if getattr(cfg, "ota_dir", ""):
            from mqtt_controller import otarun

            self.ota = otarun.Agent(self, cfg, flavour)
            self.add_turn_hook(self.ota)

    # -- the loop -----------------------------------------------------------------------------
    def run(self, max_wait_ms=None, on_crash=None):
        """Runs until stop(), a SIGTERM / SIGINT (CPython) or KeyboardInterrupt (MicroPython's
        Ctrl-C); then says offline and disconnects cleanly. No turn sleeps longer than
        MAX_WAIT_MS or max_wait_ms (a board's watchdog). An unexpected exception is raised
        after the same clean stop, or, given on_crash, handed to on_crash(e) at once and raised
        without it (a board logs the crash and resets before its watchdog could fire)."""
        signals = compat.StopSignals(self.stop)
        self._signals = signals if signals.active else None  # None: MicroPython
        wait = MAX_WAIT_MS if max_wait_ms is None else min(MAX_WAIT_MS, max_wait_ms)
        crashed = False
        try:
            self._flush()
            while not self.stopping:
                self.step(wait)
            log.info("stopping")
        except KeyboardInterrupt:
            log.info("interrupted")
        except Exception as e:
            if on_crash is None:
                raise
            crashed = True
            on_crash(e)
            raise
        finally:
            if not crashed:
                self.shutdown()
            signals.close()
            self._signals = None

    def stop(self):
        """Asks the loop to stop after this turn (safe from a signal handler: only a flag)."""
        self.stopping = True

    def restart(self):
        """Stops like stop(), then run()'s caller restarts the basket: exit_code 3 (a host's
        service manager starts it again; a board resets)."""
        self.exit_code = 3
        self.stopping = True

    def step(self, max_wait_ms):
        """One loop turn: the turn hooks, (re)connect when due, sleep in poll(), handle what is
        ready."""
        nxt = self.run_hooks()
        if nxt is not None:
            max_wait_ms = min(max_wait_ms, nxt)
        now = ticks_ms()
        if not self.connected and not self._held and ticks_diff(now, self._connect_due) >= 0:
            self._connect()
        self._sync_pollables()
        events = self.poller.poll(self._timeout(max_wait_ms))
        sock = self.client.sock
        readable = False
        for ev in events:
            if sock is not None and compat.polled(ev, sock):
                readable = True
            elif self._signals is not None and compat.polled(ev, self._signals):
                self._signals.drain()  # stop() was called: this turn still finishes
        now = ticks_ms()
        for src in self.sources:
            try:
                lines = src.read(now)
            except Exception as e:  # a source must never stop the basket
                log.error("item source failed: %r", e)
                lines = ()
            for line in lines:
                self.controller.item(line)
        got = 0
        if self.connected:
            try:
                for topic, payload in self.client.service(readable):
                    got += 1
                    self._message(topic, payload)
            except (OSError, MQTTException) as e:
                self._lost(_reason(e))
            for topic in self.client.take_refused():
                # A broker provisioned before remote configuration or updates: the basket runs
                # without them.
                log.warning("the broker refused the subscription to %s: %s is off (re-run "
                            "tools/provision.py and restart the broker)", topic,
                            "updates over the air" if topic == self.ota_topic
                            else "remote configuration")
                why = "subscription to %s refused by the broker" % topic
                if topic == self.ota_topic:
                    self.ota.unavailable(why)
                else:
                    self._remote().unavailable(why, self)
        self._flush()
        if self.connected:  # the commands are handled (and their update sent): ack them
            try:
                self.client.send_acks()
            except (OSError, MQTTException) as e:
                self._lost(_reason(e))
        self._health_turn(not got)

    def item(self, line):
        """Python API for a detector in this process (call it from the loop's thread, e.g. in
        an item source's read()): one line of the item protocol; True when the cart changed."""
        changed = self.controller.item(line)
        self._flush()
        return changed

    # -- the verbs a supervisor uses (board.py: Wi-Fi and the watchdog) ------------------------
    def add_turn_hook(self, fn):
        """fn(now_ms) runs at the start of every loop turn, before the connect check and the
        sleep; it returns the ms until it wants the next turn (None: no wish)."""
        self._hooks.append(fn)

    def run_hooks(self, skip=None):
        """Runs the turn hooks but `skip` (step() does; a long task in a hook, the update's
        download, too, so a board's watchdog is fed); the fewest ms one wants, or None."""
        wait = None
        for hook in self._hooks:
            if hook is not skip:
                nxt = hook(ticks_ms())
                if nxt is not None and (wait is None or nxt < wait):
                    wait = nxt
        return wait

    def hold(self):
        """No broker connect attempts until connect_now() (e.g. while there is no network).
        A link that is up stays up."""
        self._held = True

    def connect_now(self):
        """Ends a hold; unless connected, the next turn tries the broker at once, from the
        first back-off step."""
        self._held = False
        if not self.connected:
            self._link_backoff.reset()
            self._connect_due = ticks_ms()

    def drop_link(self, reason):
        """Closes the broker link as lost, without DISCONNECT (the broker sends the will);
        it is reconnected with back-off, or at connect_now() while held."""
        if self.connected:
            self._lost(reason)

    # -- the health report (<topic>/health; the verbs the remote configuration uses) ----------
    def set_health_extras(self, fn):
        """fn() -> a dict of the board's own report values (rssi, boot, battery_mv), asked
        for at every report; a key it leaves out keeps the host's value (null, "start")."""
        self._health_extras = fn

    def set_health_interval(self, s):
        """HEALTH_INTERVAL_S changed live (0: periodic reports off): the next report is due s
        after the last one."""
        self._health_s = s
        due = self._health_due
        if self._health_at is None or (due is not None and ticks_diff(due, ticks_ms()) <= 0):
            return  # none sent yet, or one is due now: its publication schedules the next
        self._health_due = ticks_add(self._health_at, s * 1000) if s else None

    def health_changed(self):
        """Something the report shows changed (a remote config applied or refused): one goes
        out soon, once nothing else waits."""
        self._health_due = ticks_ms()

    def send_health(self):
        """Publishes the report now when connected (an update's progress before a long
        download or a restart); best effort, a lost link is handled as usual."""
        if self.connected:
            self._publish_health(ticks_ms())

    def health_fields(self):
        """The report as a dict (health.encode makes the payload)."""
        now = ticks_ms()
        c = self.controller.counters
        rc = getattr(self, "remote", None)
        readers = []
        for src in self._status_srcs:
            readers.extend(health.readers(src.status(now)))
        f = {"battery_mv": None, "boot": "start",
             "config_error": None if rc is None else rc.error,
             "config_rev": 0 if rc is None else rc.rev,
             "counters": {"commands": c["commands"], "items": c["items"],
                          "reconnects": max(0, self._connects - 1),
                          "rejected_commands": c["rejected_commands"],
                          "rejected_items": c["rejected_items"]},
             "display": self._display_state, "id": self.cfg.basket_id,
             "interval_s": self._health_s, "mem_free": None, "readers": readers, "rssi": None,
             "ota": None if self.ota is None else self.ota.status(),
             "runtime": compat.RUNTIME, "uptime_s": self._uptime(now), "version": __version__}
        if self._health_extras is not None:
            try:
                extra = self._health_extras()
            except Exception as e:  # a board probe must not stop the basket
                log.debug("health extras failed: %r", e)
                extra = None
            for k in HEALTH_EXTRAS:
                if extra and k in extra:
                    f[k] = extra[k]
        f["mem_free"] = compat.mem_free()  # last: the collection takes the report's garbage
        return f

    def _uptime(self, now):
        d = ticks_diff(now, self._up_at)
        if d >= 1000:
            self._up_s += d // 1000
            self._up_at = ticks_add(self._up_at, d // 1000 * 1000)
        return self._up_s

    def _health_turn(self, quiet):
        """The end of a turn: notices a reader going down or coming back (compared only when a
        source says its status changed), and publishes a report that is due."""
        now = ticks_ms()
        self._uptime(now)
        if self._status_srcs:
            n = 0
            for src in self._status_srcs:
                n += src.status_changes
            if n != self._status_seen:
                self._status_seen = n
                states = []
                for src in self._status_srcs:
                    states.extend(health.states(src.status(now)))
                if self._readers is not None and states != self._readers:
                    self.health_changed()
                self._readers = states
        if quiet and self._health_in(now) == 0:
            self._publish_health(now)

    def _health_in(self, now):
        """ms until a report is due (0: now), or None: offline, none due, or an update waits
        (its own time bounds the sleep; a state write the disk refused does not hold it)."""
        if not self.connected or self._health_due is None:
            return None
        if self._unsaved is None and self.controller.pending_update() != NONE:
            return None
        return _left(self._health_due, now)

    def _publish_health(self, now):
        payload = health.encode(self.health_fields())
        try:
            self.client.publish(self.health_topic, payload, retain=True, qos=1)
        except (OSError, MQTTException) as e:
            self._lost(_reason(e))
            return
        self._health_at = now
        self._health_due = ticks_add(now, self._health_s * 1000) if self._health_s else None
        log.debug("health %s", payload.decode())

    def _timeout(self, max_wait_ms):
        now = ticks_ms()
        wait = max_wait_ms
        if self.connected:
            nxt = self.client.next_ms()
            if nxt is not None:
                wait = min(wait, nxt)
        elif not self._held:
            wait = min(wait, _left(self._connect_due, now))
        for src in self.sources:
            nxt = src.next_ms(now)
            if nxt is not None:
                wait = min(wait, nxt)
        if self._unsaved is not None:  # only while a failure streak lasts: see _flush()
            wait = min(wait, _left(self._save_due, now))
        nxt = self._publish_in(now)
        if nxt is not None:
            wait = min(wait, nxt)
        nxt = self._health_in(now)
        if nxt is not None:
            wait = min(wait, nxt)
        return max(0, wait)

    def _sync_pollables(self):
        want = []
        if self._signals is not None:
            want.append(self._signals)
        if self.connected and self.client.sock is not None:
            want.append(self.client.sock)
        for src in self.sources:
            want.extend(src.pollables())
        if want == self._registered:
            return
        # A new poller rather than unregister(): a source may have closed its stream already,
        # and a closed file cannot be unregistered (its fd would stay in, always ready).
        self.poller = select.poll()
        for obj in want:
            self.poller.register(obj, select.POLLIN)
        self._registered = want

    # -- the link -----------------------------------------------------------------------------
    def _connect(self):
        cfg = self.cfg
        try:
            present = self.client.connect()
            self.client.subscribe(self.status_topic, 1)
            self.client.subscribe(self.config_topic, 1, optional=True)
            if self.ota is not None:
                self.client.subscribe(self.ota_topic, 1, optional=True)
            self.client.publish(self.avail_topic, b"online", retain=True, qos=1)
        except (OSError, MQTTException) as e:
            self.client.close()
            delay = self._link_backoff.next_delay()
            self._connect_due = ticks_add(ticks_ms(), delay)
            log.warning("connect attempt %d to %s:%d failed: %s; retrying in %d.%d s",
                        self._link_backoff.failures, cfg.host, cfg.port, _reason(e),
                        delay // 1000, delay % 1000 // 100)
            return False
        self.connected = True
        self._link_backoff.up(ticks_ms())
        self.controller.resync()
        self._connects += 1
        self.health_changed()  # after `online`, once the update has gone
        log.info("connected to %s:%d as %s (session %s); subscribed to %s", cfg.host, cfg.port,
                 cfg.client_id, "resumed" if present else "new", self.status_topic)
        return True

    def _lost(self, why):
        self.client.close()
        self.connected = False
        now = ticks_ms()
        self._link_backoff.down(now)
        delay = self._link_backoff.next_delay()
        self._connect_due = ticks_add(now, delay)
        if self._held:
            log.warning("link to %s:%d lost: %s; connects on hold", self.cfg.host,
                        self.cfg.port, why)
        else:
            log.warning("link to %s:%d lost: %s; reconnecting in %d.%d s", self.cfg.host,
                        self.cfg.port, why, delay // 1000, delay % 1000 // 100)

    def _message(self, topic, payload):
        if topic == self.config_topic:
            self._remote().message(payload, self)
            return
        if topic == self.ota_topic and self.ota is not None:
            self.ota.message(payload)
            return
        if topic != self.status_topic:
            log.debug("message on unexpected topic %s ignored", topic)
            return
        if payload is None:
            self.controller.reject_command("oversized packet skipped")
            return
        self.controller.command(payload)

    def _remote(self):
        """The remote configuration, made at the first need: remote.py is loaded only on a
        basket that has a saved set or gets a config message."""
        if self.remote is None:
            from mqtt_controller import remote

            self.remote = remote.Remote(self.remote_file or remote.path_for(self.cfg))
        return self.remote

    # -- outputs ------------------------------------------------------------------------------
    def _flush(self):
        # Order: persist, then publish (strictly: no update goes out before its state is on
        # disk, so a restart never goes back behind what the broker holds), then the log lines
        # and the display, which need not delay the update.
        c = self.controller
        now = ticks_ms()
        state = c.take_dirty()
        if state is not None:
            self._unsaved = state  # the newest state replaces one still waiting
        if self._unsaved is not None and (not self._save_retry.failures
                                          or ticks_diff(now, self._save_due) >= 0):
            self._save(now)
        shopping = c.state == SHOPPING
        if shopping != self._active:
            self._active = shopping
            for src in self.sources:
                src.set_active(shopping)
        if c.confirmed:  # a total for this cart came: the next cart starts from 3 s again
            self._confirm.reset()
        payload = None
        if self._publish_in(now) == 0:
            payload = c.take_update()
            again = payload is None
            if again:  # no total for the cart: the same update once more, waiting twice as long
                payload = self._last
                self._confirm.next_delay()
            elif payload != self._last:
                self._confirm.reset()  # a new cart: its own back-off
            try:
                self.client.publish(self.update_topic, payload, retain=True, qos=1)
            except (OSError, MQTTException) as e:
                c.resync()
                self._lost(_reason(e))
                payload = None
            else:
                self._sent(payload, now, again)
        for level, text in c.take_notes():
            getattr(log, level)(text)
        if payload is not None:
            log.info("update %s", payload.decode())
        view = c.view()
        if view != self._view and self.display is not None:
            self._view = view
            try:
                self.display.render(view)
            except Exception as e:  # a broken display must not stop the basket
                log.error("display failed, switching it off: %r", e)
                self.display = None
                self._display_state = "failed"
                self.health_changed()

    def _publish_in(self, now):
        """ms until an update is due (0: now), or None when none is: one rule for _flush() and
        the poll timeout. Nothing is due while offline or while a state write waits."""
        if not self.connected or self._unsaved is not None:
            return None
        c = self.controller
        kind = c.pending_update()
        if kind == NOW:
            return 0
        if kind != NONE:  # item-driven: paced
            since = ticks_diff(now, self._sent_at)
            return UPDATE_GAP_MS - since if 0 <= since < UPDATE_GAP_MS else 0
        if self._confirm_due is not None and c.state == SHOPPING and not c.confirmed:
            return _left(self._confirm_due, now)
        return None

    def _sent(self, payload, now, again):
        self._sent_at = now
        self._last = payload
        self._confirm_due = None
        c = self.controller
        if c.state == SHOPPING and not c.confirmed:
            wait = self._confirm.delay()
            self._confirm_due = ticks_add(now, wait)
            if again:
                log.info("no total for the cart yet: update re-published (#%d; next in %d s)",
                         self._confirm.failures, wait // 1000)

    def _save(self, now):
        path = self.cfg.state_file
        try:
            store.save(path, self._unsaved)
        except OSError as e:
            self._save_due = ticks_add(now, self._save_retry.next_delay())
            if self._save_retry.failures == 1:  # once a streak: no flood from a full disk
                log.error("cannot write state file %s: %s; updates wait until it is written "
                          "(retrying, 1 s to 30 s apart)", path, e)
            return
        if self._save_retry.failures:
            log.info("state file %s written after %d failed attempt(s)", path,
                     self._save_retry.failures)
        self._save_retry.reset()
        self._unsaved = None

    def shutdown(self):
        """Says offline, disconnects cleanly (the will is not sent), closes the sources."""
        if self._unsaved is not None:  # one last try
            self._save(ticks_ms())
        if self.connected:
            try:
                # Anything handed over and not acknowledged yet was not handled (Ctrl-C mid-turn
                # on MicroPython): the broker delivers it again; publish() would ack it.
                self.client.drop_acks()
                self.client.publish(self.avail_topic, b"offline", retain=True, qos=1)
                deadline = ticks_add(ticks_ms(), 1000)
                while self.client.inflight and ticks_diff(deadline, ticks_ms()) > 0:
                    # Commands read while waiting for the PUBACK are not handled any more:
                    # left unacknowledged, the broker delivers them at the next start.
                    self.client.service(compat.readable(self.client.sock,
                                                        _left(deadline, ticks_ms())))
                    self.client.drop_acks()
            except (OSError, MQTTException):
                pass
            self.client.disconnect()
            self.connected = False
        for src in self.sources:
            try:
                src.close()
            except Exception:
                pass
        c = self.controller.counters
        log.info("stopped; commands %d (rejected %d, stale totals %d), items %d (rejected %d, "
                 "ignored %d)", c["commands"], c["rejected_commands"], c["stale_totals"],
                 c["items"], c["rejected_items"], c["ignored_items"])


def _reason(e):
    if isinstance(e, MQTTException):
        return str(e)
    text = str(e) or type(e).__name__
    if e.args and isinstance(e.args[0], int) and len(e.args) == 1:
        return _ERRNO_TEXT.get(e.args[0], "error %d" % e.args[0])
    return text


_ERRNO_TEXT = {111: "connection refused", 110: "timed out", 113: "no route to host",
               104: "connection reset", 32: "broken pipe", 101: "network unreachable",
               -2: "host name not found", -3: "host name lookup failed"}
