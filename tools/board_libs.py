"""Installs the board's optional MicroPython libraries into lib/ from PyPI (requirements-board.txt).

micropython-lib's sdists were made for the old on-board installer `upip`: they carry the module
files but no setup.py, so `pip download` fetches and hash-checks the archive, unpacks it, then
refuses to build it. We let it (with --no-clean) and take the module files from what it unpacked.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# distribution name (as pip names its unpack folder) -> files to take, relative to the sdist
FILES = {"micropython-umqtt-simple": ["umqtt/simple.py"]}


def install(lib: Path, requirements: Path) -> int:
    lib.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="board-libs-") as tmp:
        env = dict(os.environ, TMPDIR=tmp)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-clean", "--no-deps",
             "--no-binary", ":all:", "--require-hashes", "-r", str(requirements),
             "-d", str(Path(tmp) / "dl")],
            env=env, capture_output=True, text=True)  # fmt: skip
        unpacked = sorted(Path(tmp).glob("pip-*/*"))
        done = []
        for dist, files in FILES.items():
            src = next((d for d in unpacked if d.name.startswith(dist + "_")), None)
            if src is None:
                print(proc.stdout + proc.stderr, file=sys.stderr)
                print("board-libs: pip did not fetch %s (see above)" % dist, file=sys.stderr)
                return 1
            for rel in files:
                dst = lib / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / rel, dst)
                done.append(str(dst.relative_to(ROOT) if dst.is_relative_to(ROOT) else dst))
    print("board-libs: installed %s" % ", ".join(done))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", type=Path, default=ROOT / "lib")
    ap.add_argument("--requirements", type=Path, default=ROOT / "requirements-board.txt")
    args = ap.parse_args(argv)
    return install(args.lib, args.requirements)


if __name__ == "__main__":
    sys.exit(main())
