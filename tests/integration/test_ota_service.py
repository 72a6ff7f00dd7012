"""Updates over the air end to end against the store's own side (docs/ota.md): releases built
by `python -m basket_service release add --from <a copy of the checkout>`, served by the
service's web server (`serve --http PORT`, the real service, which also stores the health
reports `release status` shows), pushed by `release push V --baskets 1 --url ...` signed with
OTA_KEYS_FILE's key; a real Mosquitto; the controller as a subprocess under both interpreters
(run again after exit status 3, as systemd would) and a board run (main.py under the unix
port, its machine.reset() an exit with status 86).

- factory -> v2, reported as v2 by the basket and by `release status`; then a v3 that raises
  at import rolls back to v2 by itself and says why, in its report and in `release status`;
- a release file whose hash is not its manifest's and a push signed with another key are
  refused, and the basket stays on v2;
- a release pushed during a session (the service's `start`) waits for `end`;
- kill -9 in the middle of a download (a fault proxy in front of the web server holds the
  answer), and at moments spread over the download, the install and the switch-over: every
  restart boots a complete version, the old or the new one, reported alike by the loader,
  the health report and state.json, and the basket ends on v2;
- a board fetches the .mpy flavour of v2 from the service, resets, and confirms the trial."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtt_controller import __version__ as FACTORY
from mqtt_controller import otaboot
from tests.support.board_proc import BoardProc, make_flash
from tests.support.broker import Broker, acl_text, free_port
from tests.support.faultproxy import FaultProxy
from tests.support.ota_release import KEY, corrupt, restarted, wait_ota
from tests.support.peer import Peer
from tests.support.process import ROOT, ControllerProc
from tests.support.service_proc import ServiceProc, cli, service_env

BROKEN = '\nraise RuntimeError("v3 is broken")\n'
V3_ERROR = "RuntimeError: v3 is broken"
WRONG_KEY = "0" * 64  # not basket 1's OTA_KEY
UPD = "basket/1/update"
AVAIL = "basket/1/availability"
# Kill moments, as fractions of the time from the push to "staged" in the last run that got
# there: the download, its end, the install (staging -> v/v2, state.json), the exit after it.
KILL_AT = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0, 1.02, 1.05, 1.1, 1.3)


# -- releases: built once for the module by the service's command line -------------------------
def checkout_copy(dest: Path) -> Path:
    """What `release add --from` reads of a checkout: boot.py, main.py and the package."""
    dest.mkdir(parents=True)
    for name in ("boot.py", "main.py"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "mqtt_controller", dest / "mqtt_controller",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RELEASE_DIR with v2 (the code unchanged), v3 (its cart.py raises at import), v4 (one
    file spoilt after `release add`: its hash is no longer the manifest's) and v5 (fine, pushed
    with a wrong key)."""
    base = tmp_path_factory.mktemp("ota-service")
    good = checkout_copy(base / "checkout")
    broken = checkout_copy(base / "checkout-v3")
    cart = broken / "mqtt_controller" / "cart.py"
    cart.write_text(cart.read_text() + BROKEN)
    rel = base / "releases"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BASKET_DB", "RELEASE_DIR", "RELEASE_URL",
                        "OTA_KEYS_FILE", "MPY_CROSS")}
    env.update(BASKET_DB=str(base / "build.db"), RELEASE_DIR=str(rel))
    for version, src in (("v2", good), ("v3", broken), ("v4", good), ("v5", good)):
        r = cli(env, "release", "add", "--version", version, "--from", str(src))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "release %s built in %s" % (version, rel / version) in r.stdout, r.stdout
    corrupt(rel, "v4", "py", "mqtt_controller/cart.py")  # same size, another SHA-256
    return rel


def same_tree(got: Path, want: Path) -> None:
    """got holds exactly want's files, byte for byte (a complete version)."""
    files = sorted(p.relative_to(want) for p in want.rglob("*") if p.is_file())
    have = sorted(p.relative_to(got) for p in got.rglob("*") if p.is_file())
    assert have == files, (got, have)
    for rel in files:
        assert (got / rel).read_bytes() == (want / rel).read_bytes(), got / rel


# -- the store: Mosquitto, the service with its web server, the command line ---------------
@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker.with_acl(acl=acl_text()).start()
    yield b
    b.close()


def keys_file(path: Path, key: str) -> Path:
    path.write_text(json.dumps({"1": key}))
    path.chmod(0o600)
    return path


class Store:
    """`serve --http` on a free port with RELEASE_DIR and OTA_KEYS_FILE (basket 1's key), its
    command line (`cmd`), and a watcher subscribed to the health reports."""

    def __init__(self, broker: Broker, tmp_path: Path, release_dir: Path) -> None:
        self.release_dir = release_dir
        self.keys = keys_file(tmp_path / "ota-keys.json", KEY)
        self.wrong_keys = keys_file(tmp_path / "ota-keys-wrong.json", WRONG_KEY)
        self.http = free_port()
        self.url = "http://127.0.0.1:%d" % self.http
        self.env = service_env(broker.port, {"BASKET_DB": str(tmp_path / "basket.db")},
                               RELEASE_DIR=str(release_dir), OTA_KEYS_FILE=str(self.keys),
                               BASKETS="1")
        self.env.pop("RELEASE_URL", None)
        self.svc = ServiceProc(self.env, "--http", str(self.http))
        self.watch = Peer(broker.port, "service", "service-pw")
        try:
            self.watch.subscribe("basket/+/health")
            self.watch.subscribe(UPD)
            self.watch.subscribe(AVAIL)
            self.svc.start()
            self.svc.wait_line(r"dashboard on http://127\.0\.0\.1:%d/" % self.http)
        except BaseException:
            self.close()
            raise

    def cmd(self, *args: str, keys: Path | None = None) -> str:
        env = dict(self.env, OTA_KEYS_FILE=str(keys or self.keys))
        r = cli(env, *args)
        assert r.returncode == 0, "%s: exit %d\n%s%s" % (args, r.returncode, r.stdout, r.stderr)
        return r.stdout

    def push(self, version: str, keys: Path | None = None, url: str | None = None) -> None:
        out = self.cmd("release", "push", version, "--baskets", "1", "--url", url or self.url,
                       keys=keys)
        assert "basket 1: release %s pushed (%s/releases/%s/manifest.txt" % (
            version, url or self.url, version) in out, out
        assert KEY not in out and WRONG_KEY not in out

    def status(self) -> dict[str, Any]:
        lines = self.cmd("release", "status", "--baskets", "1", "--json").splitlines()
        assert len(lines) == 1, lines
        return dict(json.loads(lines[0]))

    def stored(self, events: str, start: int = 0) -> None:
        """Waits until the service stored a report of basket 1 whose changes match `events`."""
        self.svc.wait_line(r"basket 1: health report stored;.*" + events, timeout=30,
                           start=start)

    def close(self) -> None:
        self.watch.close()
        self.svc.stop()


@pytest.fixture
def store(broker: Broker, tmp_path: Path, release_dir: Path) -> Iterator[Store]:
    s = Store(broker, tmp_path, release_dir)
    yield s
    s.close()


# -- the basket ------------------------------------------------------------------------------
def basket(interp: str, broker: Broker) -> ControllerProc:
    """Basket 1 with updates on: OTA_DIR in its folder, its OTA_KEY, a trial of 30 s."""
    c = ControllerProc(interp, broker.port, DISPLAY="none", OTA_KEY=KEY, OTA_TRIAL_S="30")
    c.env["OTA_DIR"] = str(c.dir / "ota")
    return c


@pytest.fixture
def baskets(interp: str, broker: Broker) -> Iterator[Callable[[], ControllerProc]]:
    made: list[ControllerProc] = []

    def make() -> ControllerProc:
        made.append(basket(interp, broker))
        return made[-1]

    yield make
    for c in made:
        c.close()


def ota_state(c: ControllerProc) -> dict[str, Any]:
    return dict(json.loads((c.dir / "ota" / "state.json").read_text()))


def to_v2(c: ControllerProc, store: Store) -> None:
    """Factory -> v2 through the service: pushed, downloaded, staged (exit 3), run again on
    trial, confirmed; the basket reports v2, and so does `release status`."""
    h, m, s = store.watch.mark(), c.mark(), store.svc.mark()
    store.push("v2")
    wait_ota(store.watch, start=h, state="downloading", version="v2")
    wait_ota(store.watch, start=h, state="staged", version="v2")
    restarted(c)
    c.wait_log("ota: starting v2 on trial", start=m)
    doc = wait_ota(store.watch, start=h, state="ok", version="v2", error=None)
    assert doc["version"] == "v2"
    c.wait_log("OTA: v2 confirmed", start=m)
    store.stored(r"ota [^;]* -> ok v2", start=s)
    assert store.status() == {"basket": 1, "pushed": "v2", "reported": True, "running": "v2",
                              "ota_state": "ok", "ota_version": "v2", "ota_error": None}
    same_tree(c.dir / "ota" / "v" / "v2", store.release_dir / "v2" / "py")


# -- the tests ---------------------------------------------------------------------------------
def test_v2_from_the_service_then_a_v3_that_raises_at_import_rolls_back_to_v2(
        baskets: Callable[[], ControllerProc], store: Store) -> None:
    c = baskets()
    c.start()
    first = wait_ota(store.watch, state="idle")
    assert first["version"] == FACTORY
    to_v2(c, store)
    s = ota_state(c)
    assert (s["current"], s["previous"], s["trial"]) == ("v2", None, None), s

    h, m, sm = store.watch.mark(), c.mark(), store.svc.mark()
    store.push("v3")
    wait_ota(store.watch, start=h, state="staged", version="v3")
    restarted(c)  # v3 on trial: its cart.py raises, v2 starts in the same process
    c.wait_log("ota: starting v3 on trial", start=m)
    c.wait_log("ota: trial of v3 failed at start (%s): rolled back to v2" % V3_ERROR, start=m)
    doc = wait_ota(store.watch, start=h, state="rolled_back", version="v3", error=V3_ERROR)
    assert doc["version"] == "v2"
    c.wait_log("OTA: push of v3 ignored: it was rolled back", start=m)
    store.stored(re.escape("ota_error None -> " + V3_ERROR), start=sm)
    assert store.status() == {"basket": 1, "pushed": "v3", "reported": True, "running": "v2",
                              "ota_state": "rolled_back", "ota_version": "v3",
                              "ota_error": V3_ERROR}
    s = ota_state(c)
    assert (s["current"], s["trial"], s["tries"]) == ("v2", None, 0), s
    assert s["last"] == {"state": "rolled_back", "version": "v3", "error": V3_ERROR}, s
    # the basket works on v2 and stays there across a restart
    c.stop()
    m, h = c.mark(), store.watch.mark()
    c.start()
    c.wait_log("ota: starting v2", start=m)
    at = store.watch.mark()
    store.cmd("start", "1")
    c.wait_log("session started", start=m)
    c.items("MLON=2")
    store.watch.wait_payload(UPD, b'{"id":1,"list":{"MLON":2}}', start=at)
    assert wait_ota(store.watch, start=h, state="rolled_back")["version"] == "v2"
    assert c.alive()
    c.assert_no_traceback()


def test_a_file_with_a_wrong_hash_and_a_badly_signed_push_are_refused(
        baskets: Callable[[], ControllerProc], store: Store) -> None:
    c = baskets()
    c.start()
    to_v2(c, store)

    # v4: cart.py on the server is not the file its manifest lists
    h, m, sm = store.watch.mark(), c.mark(), store.svc.mark()
    store.push("v4")
    why = "mqtt_controller/cart.py: wrong SHA-256"
    doc = wait_ota(store.watch, start=h, state="failed", version="v4", error=why)
    assert doc["version"] == "v2"
    c.wait_log("OTA: push of v4 refused (#1): %s; staying on v2" % why, start=m)
    store.stored(r"ota [^;]* -> failed v4", start=sm)
    st = store.status()
    assert (st["pushed"], st["running"], st["ota_state"], st["ota_error"]) == (
        "v4", "v2", "failed", why), st
    s = ota_state(c)
    assert (s["current"], s["trial"]) == ("v2", None) and s["refused"], s

    # v5: a sound release, signed with a key that is not basket 1's
    h, m, sm = store.watch.mark(), c.mark(), store.svc.mark()
    store.push("v5", keys=store.wrong_keys)
    doc = wait_ota(store.watch, start=h, state="failed", error="bad signature")
    assert doc["version"] == "v2"
    c.wait_log("OTA: push refused (#2): bad signature; staying on v2", start=m)
    store.stored(re.escape("ota_error %s -> bad signature" % why), start=sm)
    st = store.status()
    assert (st["pushed"], st["running"], st["ota_state"], st["ota_error"]) == (
        "v5", "v2", "failed", "bad signature"), st
    assert "downloading" not in c.output(m)  # nothing fetched
    assert c.alive()
    s = ota_state(c)
    assert (s["current"], s["trial"]) == ("v2", None), s
    assert sorted(p.name for p in (c.dir / "ota" / "v").iterdir()) == ["v2"]
    assert not (c.dir / "ota" / "staging").exists()
    same_tree(c.dir / "ota" / "v" / "v2", store.release_dir / "v2" / "py")
    c.assert_no_traceback()


def test_a_release_pushed_during_a_session_waits_for_its_end(
        baskets: Callable[[], ControllerProc], store: Store) -> None:
    c = baskets()
    c.start()
    m, at = c.mark(), store.watch.mark()
    store.cmd("start", "1")  # the service's own command: `start` on basket/1/status
    c.wait_log("session started", start=m)
    c.items("APPL=3")
    store.watch.wait_payload(UPD, b'{"id":1,"list":{"APPL":3}}', start=at)
    h, sm = store.watch.mark(), store.svc.mark()
    store.push("v2")
    wait_ota(store.watch, start=h, state="deferred", version="v2")
    c.wait_log("OTA: v2 waits for the session's end", start=m)
    store.stored(r"ota [^;]* -> deferred v2", start=sm)
    assert store.status()["ota_state"] == "deferred"
    c.items("APPL=4")  # the session goes on as before, nothing fetched
    store.watch.wait_payload(UPD, b'{"id":1,"list":{"APPL":4}}', start=at)
    assert "downloading" not in c.output(m) and c.alive()
    assert not (c.dir / "ota" / "staging").exists()
    store.cmd("end", "1")
    store.watch.wait_payload(UPD, b'{"id":1,"list":{}}', start=at)
    wait_ota(store.watch, start=h, state="downloading", version="v2")
    wait_ota(store.watch, start=h, state="staged", version="v2")
    restarted(c)
    doc = wait_ota(store.watch, start=h, state="ok", version="v2")
    assert doc["version"] == "v2"
    c.assert_no_traceback()


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.02)


def staged_bytes(ota_dir: Path) -> int:
    """The bytes of the files in staging so far (0 when there is none, or it just went)."""
    try:
        return sum(p.stat().st_size for p in (ota_dir / "staging").rglob("*") if p.is_file())
    except OSError:
        return 0


def test_a_kill_during_the_download_from_the_service_boots_the_old_version(
        baskets: Callable[[], ControllerProc], store: Store) -> None:
    proxy = FaultProxy(store.http)  # the web server behind a proxy that can stop its answers
    c = baskets()
    ota_dir = c.dir / "ota"
    try:
        c.start()
        lines = (store.release_dir / "v2" / "manifest.txt").read_text().splitlines()
        files = sum(int(ln.split()[2]) for ln in lines if ln.startswith("file py "))
        # about half of what the basket fetches reaches it, then the answers stop mid-file
        proxy.hold(allow_down=(files + len("\n".join(lines))) // 2, allow_up=None)
        h = store.watch.mark()
        store.push("v2", url="http://127.0.0.1:%d" % proxy.port)
        wait_until(lambda: staged_bytes(ota_dir) >= files // 4, "a part of v2 in staging")
        c.kill()  # a power cut, part of the release in staging
        assert not (ota_dir / "v").exists() and staged_bytes(ota_dir) < files
        assert otaboot.read_state(str(ota_dir))["trial"] is None
        proxy.pass_through()
        m = c.mark()
        c.start()
        c.wait_log("ota: starting factory %s" % FACTORY, start=m)  # the complete old version
        wait_ota(store.watch, start=h, state="staged", version="v2")  # the retained push again
        restarted(c)
        doc = wait_ota(store.watch, start=h, state="ok", version="v2")
        assert doc["version"] == "v2"
        assert sorted(p.name for p in ota_dir.iterdir()) == ["state.json", "v"]
        same_tree(ota_dir / "v" / "v2", store.release_dir / "v2" / "py")
        c.assert_no_traceback()
    finally:
        proxy.close()


def boots_as_predicted(c: ControllerProc, store: Store) -> tuple[str | None, int, int]:
    """Starts the basket after a kill: what the loader's selection says it will run (read
    without counting a trial) is complete, and it is what the loader says it starts and what
    the health report names. (The version (None: the factory), the basket's and the watcher's
    marks from before the start.)"""
    ota_dir = c.dir / "ota"
    version, path = otaboot.select(str(ota_dir), persist=False)
    if version is not None:
        assert version == "v2" and path is not None
        same_tree(Path(path), store.release_dir / "v2" / "py")
    m, h = c.mark(), store.watch.mark()
    c.start()
    line = c.wait_line(r"INFO ota: starting (.+)$", start=m)
    want = "factory %s" % FACTORY if version is None else "v2 on trial"
    assert line.match.group(1) == want, (line.text, otaboot.read_state(str(ota_dir)))
    reported = wait_ota(store.watch, start=h)["version"]
    assert reported == (version or FACTORY), (reported, version)
    return version, m, h


def phase(ota_dir: Path) -> str:
    """How far the update got, from what the kill left on disk."""
    if otaboot.read_state(str(ota_dir))["trial"] == "v2":
        return "switched"  # state.json names the trial
    if (ota_dir / "v" / "v2").is_dir():
        return "installed"  # staging renamed to v/v2, state.json not yet written
    if (ota_dir / "staging").is_dir():
        return "downloading"
    return "not started"


def last_span(c: ControllerProc) -> float:
    """The time from the push to "staged" the last time the basket got that far."""
    pushed_at, span = None, 0.0
    for at, text in c.find(r"OTA: v2 (pushed|verified and staged)"):
        if text.endswith("pushed"):
            pushed_at = at
        elif pushed_at is not None:
            span = at - pushed_at
    return span


def test_kill_9_at_any_moment_of_an_update_boots_a_complete_version(
        baskets: Callable[[], ControllerProc], store: Store) -> None:
    c = baskets()
    ota_dir = c.dir / "ota"
    c.start()
    h = store.watch.mark()
    store.push("v2")
    restarted(c)
    wait_ota(store.watch, start=h, state="ok", version="v2")
    outcomes: list[tuple[float, int, str, str | None]] = []
    version: str | None = "v2"
    for frac in KILL_AT:
        if version is not None:  # it runs v2: the factory code again, the retained push waits
            a = store.watch.mark()
            c.stop()
            store.watch.wait_payload(AVAIL, b"offline", start=a)
            shutil.rmtree(ota_dir)
            m, h = c.mark(), store.watch.mark()
            c.start()
        span = last_span(c)
        pushed = c.wait_line(r"OTA: (v2 pushed|push of v2 .*)", start=m)
        assert pushed.match.group(1) == "v2 pushed", (pushed.text, outcomes)
        time.sleep(max(0.0, pushed.at + frac * span - time.monotonic()))
        c.kill()  # unless it got to exit status 3 (staged) first
        rc = c.wait()
        assert rc in (-9, 3), (rc, c.output()[-3000:])  # killed, or "restart me" after staging
        # its will (or its own goodbye) comes after all it published: what the watcher gets
        # from here on is the next run's
        store.watch.wait_payload(AVAIL, b"offline", start=h)
        where = phase(ota_dir)
        version, m, h = boots_as_predicted(c, store)
        outcomes.append((round(frac * span, 3), rc, where, version))
        if version is not None:  # the trial, whole: it is confirmed
            wait_ota(store.watch, start=h, state="ok", version="v2")
    if version is None:  # the factory code fetches the retained push again: it gets to v2
        wait_ota(store.watch, start=h, state="staged", version="v2")
        restarted(c)
    doc = wait_ota(store.watch, start=h, state="ok", version="v2")
    assert doc["version"] == "v2", outcomes
    s = ota_state(c)
    assert (s["current"], s["trial"]) == ("v2", None), (s, outcomes)
    assert sorted(p.name for p in ota_dir.iterdir()) == ["state.json", "v"], outcomes
    same_tree(ota_dir / "v" / "v2", store.release_dir / "v2" / "py")
    c.assert_no_traceback()
    print("kill -9 (s after the push, exit status, left at, booted): %r" % outcomes)


# -- a board -------------------------------------------------------------------------------------
def board_flash(tmp_path: Path, broker: Broker) -> Path:
    return make_flash(tmp_path, broker.port, OTA_KEY=KEY, OTA_TRIAL_S="30")


def test_a_board_takes_v2_from_the_service_resets_and_confirms_the_trial(
        tmp_path: Path, broker: Broker, store: Store) -> None:
    flash = board_flash(tmp_path, broker)
    ota_dir = flash / "ota"  # a board's default OTA_DIR
    proc = BoardProc(flash)
    proc.start(stdin=True)
    try:
        first = wait_ota(store.watch, state="idle")
        assert first["version"] == FACTORY
        h = store.watch.mark()
        store.push("v2")
        wait_ota(store.watch, start=h, state="downloading", version="v2")
        wait_ota(store.watch, start=h, state="staged", version="v2", timeout=60)
        assert proc.wait(60) == 86  # the stand-in machine.reset()
        assert "machine.reset" in (flash / "calls.log").read_text()
        m = proc.mark()
        proc.start(stdin=True)
        proc.wait_log("INFO ota: starting v2 on trial", start=m)
        doc = wait_ota(store.watch, start=h, state="ok", version="v2", error=None, timeout=60)
        assert doc["version"] == "v2"
        proc.wait_log("OTA: v2 confirmed", start=m)
    finally:
        proc.stop()
    s = json.loads((ota_dir / "state.json").read_text())
    assert (s["current"], s["trial"]) == ("v2", None), s
    same_tree(ota_dir / "v" / "v2", store.release_dir / "v2" / "mpy")  # the board's flavour
    assert (ota_dir / "v" / "v2" / "mqtt_controller" / "runtime.mpy").is_file()
    st = store.status()
    assert (st["running"], st["ota_state"], st["ota_version"]) == ("v2", "ok", "v2"), st
    proc.assert_no_traceback()
