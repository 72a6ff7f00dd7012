# RFID item source: one or more YRM100 readers -> presence tracker -> item lines for the cart.
# Only polls the readers while the basket is shopping; a reader that vanishes is reopened with
# back-off while the others keep working.
#
# The ItemSource interface (what the runtime calls):
#   pollables()      objects/fds to register with select.poll for POLLIN. The list changes when a
#                    reader is lost or reopened: re-read it after every read() call.
#   read(now_ms)     -> list of item lines ("CODE=N": N distinct EPCs of that product now in the
#                    basket, "CODE=0" when it left). Call it when a pollable is readable and on
#                    every loop turn. Never blocks, never raises (logs and counts instead).
#   next_ms(now_ms)  -> ms until read() wants to run again (cycle end, command pacing, reopen
#                    back-off), or None when nothing is due (idle basket, all readers open).
#   set_active(shopping)  start polling (True) or stop polling and forget all tags (False).
#                    (An optional now_ms argument exists for tests.)
#   close()          stop the readers and close their ports.
#   stats()          counters for diagnostics (dict of ints).
#   status(now_ms)   -> [(name, ok, ms since its last tag read or None)] per reader, in
#                    configuration order (the health report); `status_changes` counts the
#                    changes of any reader's ok (read it to know when to look again).
#
# open_source(spec, settings): spec is what follows "rfid:" in ITEM_SOURCE, readers separated by
# commas: device paths ("/dev/ttyUSB0,/dev/ttyUSB1", termios; CPython and the MicroPython unix
# port) or board UARTs ("uart2", "uart1:17:16" = UART 1 with TX pin 17, RX pin 16). settings is
# a dict of RFID_* values as given (text or numbers; missing keys take their defaults), checked
# by config.py's settings table: a bad value raises ConfigError (a ValueError) naming the key.
# open_readers(spec, values) takes them already checked (config.load: Config.settings).
from mqtt_controller import log, yrm100
from mqtt_controller.backoff import REOPEN_CAP_MS, REOPEN_FIRST_MS, Backoff
from mqtt_controller.compat import ticks_add, ticks_diff, ticks_ms
from mqtt_controller.presence import Tracker
from mqtt_controller.serialport import make_port

MAX_READERS = 8
POLL_COUNT = 10000  # inventory rounds per multiple-polling command
REARM_MS = 60000  # re-issue the polling command this often, in case the module stopped
CMD_GAP_MS = 100  # wait this long for a response before sending the next command


class _Reader:
    def __init__(self, port):
        self.port = port
        self.name = port.name
        self.decoder = yrm100.Decoder()
        self.is_open = False
        self.backoff = Backoff(REOPEN_FIRST_MS, REOPEN_CAP_MS)  # failures: in a row
        self.retry_at = 0
        self.queue = []  # commands waiting to be sent, one per response (or CMD_GAP_MS)
        self.await_until = None
        self.armed_at = None  # when multiple polling was last sent
        self.bad_tags = 0
        self.errors = 0  # error responses other than "no tag"
        self.opens = 0
        self.lost = 0
        self.last_read = None  # ticks of the last tag read


class RfidSource:
    def __init__(self, ports, power_x100, region, rssi_min, presence, absence, cycle_ms,
                 now_ms=None):
        self.cycle_ms = cycle_ms
        self.power_x100 = power_x100
        self.tracker = Tracker(rssi_min, presence, absence)
        self.active = False
        self.closed = False
        self.cycle_start = 0
        self.errors = 0
        self.status_changes = 0  # a reader opened or lost: status() has news
        self._stop = yrm100.cmd_stop()
        self._poll = yrm100.cmd_multi_poll(POLL_COUNT)
        self._setup = [self._stop]
        if region is not None:
            self._setup.append(yrm100.cmd_set_region(region))
        self._setup.append(yrm100.cmd_set_power(power_x100))
        self.readers = [_Reader(p) for p in ports]
        now = ticks_ms() if now_ms is None else now_ms
        for r in self.readers:
            self._open(r, now)

    # --- the ItemSource interface ---

    def pollables(self):
        return [r.port.pollable() for r in self.readers if r.is_open]

    def read(self, now_ms):
        if self.closed:
            return []
        try:
            return self._read(now_ms)
        except Exception as e:  # the loop must survive anything a reader does
            self.errors += 1
            log.error("rfid: unexpected %s: %s", type(e).__name__, e)
            return []

    def next_ms(self, now_ms):
        if self.closed:
            return None
        best = None
        for r in self.readers:
            if not r.is_open:
                d = ticks_diff(r.retry_at, now_ms)
            elif r.queue:
                d = 0 if r.await_until is None else ticks_diff(r.await_until, now_ms)
            elif self.active and r.armed_at is not None:
                d = ticks_diff(ticks_add(r.armed_at, REARM_MS), now_ms)
            else:
                continue
            if best is None or d < best:
                best = d
        if self.active:
            d = ticks_diff(ticks_add(self.cycle_start, self.cycle_ms), now_ms)
            if best is None or d < best:
                best = d
        return None if best is None else max(0, best)

    def set_active(self, shopping, now_ms=None):
        shopping = bool(shopping)
        if shopping == self.active or self.closed:
            return
        now = ticks_ms() if now_ms is None else now_ms
        self.active = shopping
        self.tracker.reset()
        self.cycle_start = now
        log.info("rfid: %s polling", "start" if shopping else "stop")
        for r in self.readers:
            if not r.is_open:
                continue
            r.queue = [c for c in r.queue if c is not self._poll]
            if shopping:
                r.queue.append(self._poll)
            else:
                r.queue.append(self._stop)
                r.armed_at = None
            self._pump(r, now)

    def close(self):
        if self.closed:
            return
        self.closed = True
        for r in self.readers:
            if r.is_open:
                try:
                    r.port.write(self._stop)
                except Exception:
                    pass
                r.port.close()
                r.is_open = False

    def apply_settings(self, values, now_ms=None):
        """Live tuning (a remote configuration): the RFID_* keys in values, checked and
        converted (config.remote_values; RFID_POWER in hundredths of a dBm). Thresholds and the
        cycle take effect from the next sighting; a new power is sent to every open reader
        (stop, set power, polling again when shopping) and to the ones reopened later."""
        t = self.tracker
        if "RFID_RSSI_MIN" in values:
            t.rssi_min = values["RFID_RSSI_MIN"]
        if "RFID_PRESENCE" in values:
            t.presence = values["RFID_PRESENCE"]
        if "RFID_ABSENCE" in values:
            t.absence = values["RFID_ABSENCE"]
        if "RFID_CYCLE_MS" in values:
            self.cycle_ms = values["RFID_CYCLE_MS"]
        power = values.get("RFID_POWER")
        if power is None or power == self.power_x100 or self.closed:
            return
        self.power_x100 = power
        cmd = yrm100.cmd_set_power(power)
        self._setup[-1] = cmd
        now = ticks_ms() if now_ms is None else now_ms
        for r in self.readers:
            if not r.is_open:
                continue
            r.queue = [c for c in r.queue if c is not self._poll]
            r.queue.append(self._stop)
            r.queue.append(cmd)
            if self.active:
                r.queue.append(self._poll)
            r.armed_at = None
            self._pump(r, now)

    def stats(self):
        s = {"errors": self.errors, "bad_code": self.tracker.bad_code,
             "weak": self.tracker.weak, "overflow": self.tracker.overflow,
             "frames": 0, "garbage": 0, "bad_checksum": 0, "bad_length": 0, "bad_tags": 0,
             "reader_errors": 0, "opens": 0, "lost": 0}
        for r in self.readers:
            d = r.decoder
            s["frames"] += d.frames
            s["garbage"] += d.garbage
            s["bad_checksum"] += d.bad_checksum
            s["bad_length"] += d.bad_length
            s["bad_tags"] += r.bad_tags
            s["reader_errors"] += r.errors
            s["opens"] += r.opens
            s["lost"] += r.lost
        return s

    def status(self, now_ms):
        """[(name, ok, ms since its last tag read or None)], one per reader."""
        return [(r.name, r.is_open,
                 None if r.last_read is None else max(0, ticks_diff(now_ms, r.last_read)))
                for r in self.readers]

    # --- internals ---

    def _read(self, now):
        for r in self.readers:
            if not r.is_open:
                if ticks_diff(now, r.retry_at) >= 0:
                    self._open(r, now)
                continue
            try:
                data = r.port.read()
            except OSError as e:
                self._lost(r, now, e)
                continue
            if data:
                for ftype, cmd, params in r.decoder.feed(data):
                    self._frame(r, ftype, cmd, params, now)
            if (self.active and r.armed_at is not None and not r.queue
                    and ticks_diff(now, r.armed_at) >= REARM_MS):
                r.queue.append(self._stop)
                r.queue.append(self._poll)
            self._pump(r, now)
        lines = []
        if self.active:
            late = ticks_diff(now, self.cycle_start)
            if late >= self.cycle_ms:
                # A loop that was late must not make tags miss cycles: one cycle per call.
                if late >= 2 * self.cycle_ms:
                    self.cycle_start = now
                else:
                    self.cycle_start = ticks_add(self.cycle_start, self.cycle_ms)
                for code, n in self.tracker.end_cycle():
                    log.debug("rfid: %s now %d", code, n)
                    lines.append("%s=%d" % (code, n))
        return lines

    def _frame(self, r, ftype, cmd, params, now):
        if ftype == yrm100.TYPE_NOTICE and cmd == yrm100.CMD_TAG:
            t = yrm100.parse_tag(params)
            if t is None:
                r.bad_tags += 1
                return
            r.last_read = now
            if self.active:
                self.tracker.saw(t[2], t[0])
        elif ftype == yrm100.TYPE_RESPONSE:
            r.await_until = None  # the module answered: the next command may go
            if cmd == yrm100.CMD_ERROR:
                code = params[0] if params else -1
                if code != yrm100.ERR_NO_TAG:
                    r.errors += 1
                    log.debug("rfid: reader %s error 0x%02x", r.name, code & 0xFF)
            elif params and params[0] != 0 and cmd != yrm100.CMD_GET_POWER:
                r.errors += 1
                log.warning("rfid: reader %s refused command 0x%02x (0x%02x)", r.name, cmd,
                            params[0])

    def _pump(self, r, now):
        if not r.is_open or not r.queue:
            return
        if r.await_until is not None and ticks_diff(now, r.await_until) < 0:
            return
        cmd = r.queue.pop(0)
        try:
            r.port.write(cmd)
        except OSError as e:
            self._lost(r, now, e)
            return
        r.await_until = ticks_add(now, CMD_GAP_MS)
        if cmd is self._poll:
            r.armed_at = now

    def _open(self, r, now):
        try:
            r.port.open()
        except Exception as e:  # OSError, or ImportError where the driver does not exist
            r.retry_at = ticks_add(now, r.backoff.next_delay())
            if r.backoff.failures == 1:
                log.warning("rfid: cannot open reader %s (%s); retrying with back-off",
                            r.name, e)
            else:
                log.debug("rfid: reader %s still unavailable (%s)", r.name, e)
            return
        if r.backoff.failures or r.opens:
            log.info("rfid: reader %s is back", r.name)
        else:
            log.info("rfid: reader %s open", r.name)
        r.is_open = True
        r.opens += 1
        self.status_changes += 1
        r.backoff.reset()
        r.decoder.reset()
        r.await_until = None
        r.armed_at = None
        r.queue = list(self._setup)
        if self.active:
            r.queue.append(self._poll)
        self._pump(r, now)

    def _lost(self, r, now, err):
        log.warning("rfid: reader %s lost (%s); reopening with back-off", r.name, err)
        r.port.close()
        r.is_open = False
        r.lost += 1
        self.status_changes += 1
        r.queue = []
        r.armed_at = None
        r.backoff.reset()
        # One step taken: further failed attempts are logged at debug level only.
        r.retry_at = ticks_add(now, r.backoff.next_delay())


def parse_settings(settings):
    """The RFID_* settings checked and converted (config.rfid_settings): a dict with the same
    keys, RFID_POWER in hundredths of a dBm, RFID_REGION a code or None."""
    from mqtt_controller import config  # start-up code: the runtime passes Config.settings

    return config.rfid_settings((settings or {}).get)


def open_source(spec, settings=None):
    """An RfidSource for ITEM_SOURCE=rfid:<spec> from RFID_* values as given (parse_settings).
    Readers that cannot be opened yet are logged and retried; only malformed settings raise
    (ValueError)."""
    return open_readers(spec, parse_settings(settings))


def open_readers(spec, s):
    """The same from checked values (parse_settings, config.load's Config.settings)."""
    entries = [e.strip() for e in (spec or "").split(",") if e.strip()]
    if not entries:
        raise ValueError("ITEM_SOURCE: rfid: needs at least one reader, e.g. rfid:/dev/ttyUSB0")
    if len(entries) > MAX_READERS:
        raise ValueError("ITEM_SOURCE: at most %d RFID readers" % MAX_READERS)
    for i in range(len(entries)):
        if entries[i] in entries[:i]:
            raise ValueError("ITEM_SOURCE: reader %r is listed twice" % entries[i])
    ports = [make_port(e) for e in entries]
    return RfidSource(ports, s["RFID_POWER"], s["RFID_REGION"], s["RFID_RSSI_MIN"],
                      s["RFID_PRESENCE"], s["RFID_ABSENCE"], s["RFID_CYCLE_MS"])
