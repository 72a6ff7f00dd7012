"""The one wrapper for a child process of the tests, the benchmarks and the soak run, and its
controller flavour.

`Process`: argv, environment and folder; `start()` (again after it ended: the output goes on
accumulating); its output (stdout and stderr together) collected line by line as it comes
(`tests.support.lines.LineLog`); a mark is a line index (`mark()`, then `start=mark`);
`wait_line` (a regex) and `wait_log` (plain text) return the `Line`; `stop()` sends the stop
signal and waits (SIGKILL after `timeout`), `kill()`, `wait()` returns the exit status.

`ControllerProc`: the basket controller (`-m mqtt_controller`) under CPython or the MicroPython
unix port, with a basket's settings for a loopback broker and its items through a FIFO
(`items(...)`). `run_once` runs it expecting it to exit by itself (--help, configuration
errors). Board runs (main.py under the unix port) are `tests.support.board_proc.BoardProc`.

The MicroPython interpreter: the venv's unix port, or `MICROPYTHON=/path` (a 32-bit build of
`make firmware-unix`). `MICROPYTHON_FROZEN=1` says that one has the package frozen in: the
children then run in a scratch folder with the checkout off MICROPYPATH (`mp_path()`), so the
frozen package is what runs (the unix port puts the current folder first on sys.path, then
MICROPYPATH's entries)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support.lines import Line, LineLog

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PYTHON = str(BIN / "python") if (BIN / "python").exists() else sys.executable
MICROPYTHON = os.environ.get("MICROPYTHON") or str(BIN / "micropython")
MP_FROZEN = os.environ.get("MICROPYTHON_FROZEN", "") not in ("", "0")
INTERPRETERS = {"cpython": PYTHON, "micropython": MICROPYTHON}

# Settings the controller reads from its environment: never the caller's.
CONTROLLER_PREFIXES = ("MQTT_", "BASKET", "WIFI_", "ITEM_", "CART_", "DISPLAY", "LOG_LEVEL",
                       "RFID_", "WATCHDOG", "SAFE_PIN", "HEALTH_", "BATTERY_", "OTA_")


def mp_path(*extra: Path | str) -> str:
    """MICROPYPATH for a MicroPython child: the frozen modules, the checkout (not when the
    interpreter has the package frozen in, MP_FROZEN), then `extra`."""
    return ":".join([".frozen"] + ([] if MP_FROZEN else [str(ROOT)]) + [str(p) for p in extra])


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment less the controller's settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONTROLLER_PREFIXES)}
    env.update(extra)
    return env


def rss_kb(pid: int, key: str = "VmRSS") -> int:
    """A kB figure from /proc/<pid>/status (VmRSS, VmHWM ...); 0 when gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Process:
    STOP_SIGNAL = signal.SIGTERM
    name = "process"

    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: Path | str = ROOT) -> None:
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.out = LineLog()

    # -- life ---------------------------------------------------------------------------------
    def start(self, stdin: bool = False) -> Process:
        """Starts it (`stdin`: a pipe for `send`, else /dev/null)."""
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self.out.follow_pipe(self.proc.stdout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "start() first"
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None, "start() first"
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        """Waits for it to exit (and its output to end); the exit status."""
        assert self.proc is not None, "start() first"
        rc = self.proc.wait(timeout)
        self.out.join(5)
        return rc

    def stop(self, sig: int | None = None, timeout: float = 10.0) -> int | None:
        """The stop signal (STOP_SIGNAL unless `sig`), SIGKILL if it is not gone within
        `timeout`; the exit status (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(self.STOP_SIGNAL if sig is None else sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.join(5)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as a crash or a power cut would leave it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.out.join(5)

    def close(self) -> None:
        self.kill()

    def rss_kb(self, key: str = "VmRSS") -> int:
        return rss_kb(self.pid, key)

    # -- input --------------------------------------------------------------------------------
    def send(self, data: str | bytes) -> None:
        """Writes to its standard input (start(stdin=True))."""
        assert self.proc is not None and self.proc.stdin is not None, "start(stdin=True) first"
        self.proc.stdin.write(data.encode() if isinstance(data, str) else data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None, "start(stdin=True) first"
        self.proc.stdin.close()

    # -- output -------------------------------------------------------------------------------
    def mark(self) -> int:
        """The number of lines it has printed so far (a `start` for the calls below)."""
        return self.out.mark()

    def lines(self, start: int = 0) -> list[str]:
        return self.out.lines(start)

    def output(self, start: int = 0) -> str:
        return self.out.text(start=start)

    def find(self, pattern: str, start: int = 0) -> list[tuple[float, str]]:
        return self.out.find(pattern, start)

    def count(self, pattern: str, start: int = 0) -> int:
        return len(self.out.find(pattern, start))

    def wait_line(self, pattern: str, timeout: float = 15.0, start: int = 0) -> Line:
        """The first line at or after line `start` matching the regex; fails the test when
        none comes within `timeout` s (or the process ends without one)."""
        hit = self.out.wait(pattern, timeout, start)
        if hit is None:
            raise AssertionError("%s: no line /%s/ within %.1f s%s; output:\n%s" % (
                self.name, pattern, timeout,
                "" if self.alive() else " (exit status %s)" % self.returncode,
                self.out.text(last=80)))
        return hit

    def wait_log(self, text: str, timeout: float = 15.0, start: int = 0) -> Line:
        """wait_line for a line holding `text` (plain text, not a regex)."""
        return self.wait_line(re.escape(text), timeout, start)

    def assert_no_traceback(self) -> None:
        text = self.output()
        assert "Traceback" not in text, text[-4000:]


class ControllerProc(Process):
    """`-m mqtt_controller` as basket `basket` of a broker on 127.0.0.1:`port`: its user
    basket<n> with the test password, topic basket/<n>, keep-alive `keepalive` s (None: the
    controller's default), its cart state file and its item FIFO in `workdir` (a fresh folder
    unless given; several baskets may share one).
    `settings` override or add controller settings (MQTT_KEEPALIVE="2", DISPLAY="none", ...).
    Stops with SIGINT (a clean stop on both interpreters)."""

    STOP_SIGNAL = signal.SIGINT

    def __init__(self, interp: str, port: int, basket: int = 1, *,
                 workdir: Path | None = None, keepalive: int | None = 10,
                 interp_args: Sequence[str] = (), **settings: str) -> None:
        self.interp = interp
        self.name = "controller (%s)" % interp
        self.basket = basket
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="basket-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fifo = self.dir / ("items-%d.fifo" % basket)
        if not self.fifo.exists():
            os.mkfifo(self.fifo)
        self.state_file = self.dir / ("basket-%d.state.json" % basket)
        env = clean_env(
            PYTHONPATH=str(ROOT), MICROPYPATH=mp_path(), PYTHONUNBUFFERED="1",
            MQTT_HOST="127.0.0.1", MQTT_PORT=str(port), MQTT_USER="basket%d" % basket,
            MQTT_PASSWORD="basket%d-pw" % basket, MQTT_TOPIC="basket/%d" % basket,
            CART_STATE_FILE=str(self.state_file), ITEM_SOURCE=str(self.fifo))
        if keepalive is not None:
            env["MQTT_KEEPALIVE"] = str(keepalive)
        env.update(settings)
        super().__init__([INTERPRETERS[interp], *interp_args, "-m", "mqtt_controller"], env,
                         self.dir)
        self._fifo_fd: int | None = None

    def start(self, stdin: bool = False, wait_connected: bool = True) -> ControllerProc:
        """Starts it and (`wait_connected`) waits for the "connected to" of this run."""
        if self._fifo_fd is None:  # our read-write end: writes never block, it never sees EOF
            self._fifo_fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        mark = self.mark()
        super().start(stdin)
        if wait_connected:
            self.wait_log("connected to", start=mark)
        return self

    def items(self, *lines: str | bytes) -> None:
        """Item lines into its FIFO (ITEM_SOURCE), one newline after each."""
        if self._fifo_fd is None:
            self._fifo_fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        os.write(self._fifo_fd, b"".join(
            (ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines))

    def stop(self, sig: int | None = None, timeout: float = 10.0) -> int | None:
        rc = super().stop(sig, timeout)
        self._close_fifo()
        return rc

    def close(self) -> None:
        super().close()
        self._close_fifo()

    def _close_fifo(self) -> None:
        if self._fifo_fd is not None:
            os.close(self._fifo_fd)
            self._fifo_fd = None


def run_once(interp: str, env: dict[str, str],
             timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Runs the controller expecting it to exit by itself (configuration errors, --help);
    env["ARGS"] holds its command-line arguments."""
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
            "MICROPYPATH": mp_path()}
    args = env.pop("ARGS", "").split()
    full.update(env)
    return subprocess.run([INTERPRETERS[interp], "-m", "mqtt_controller", *args], env=full,
                          capture_output=True, text=True, timeout=timeout,
                          cwd=tempfile.mkdtemp(prefix="basket-"), stdin=subprocess.DEVNULL)
