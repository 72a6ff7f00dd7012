"""Updates over the air against a real Mosquitto, the controller as a subprocess on both
interpreters (re-run after exit status 3, as systemd would), paho publishing the retained
`basket/1/ota` push as the service does, and a release served by tests/support/ota_release.py:
v1 (the factory code) -> v2 reported as v2 after its trial; a file with a wrong hash and a
badly signed push are refused and the basket stays on v2; a push during a session waits for
`end`; a trial that cannot connect in time is rolled back; a kill -9 in the middle of a
download boots the old version, which fetches the update again; the download itself refuses
every mismatch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt_controller import __version__ as FACTORY
from tests.support.broker import Broker, acl_text, free_port
from tests.support.ota_release import (
    KEY,
    ReleaseServer,
    corrupt,
    make_release,
    restarted,
    wait_ota,
)
from tests.support.peer import Peer
from tests.support.process import ROOT, ControllerProc

OTA = "basket/1/ota"
STATUS = "basket/1/status"
UPD = "basket/1/update"


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker.with_acl(acl=acl_text()).start()
    yield b
    b.close()


@pytest.fixture
def service(broker: Broker) -> Iterator[Peer]:
    p = Peer(broker.port, "service", "service-pw")
    for topic in ("basket/+/update", "basket/+/availability", "basket/+/health"):
        p.subscribe(topic)
    yield p
    p.close()


@pytest.fixture
def releases(tmp_path: Path) -> Iterator[ReleaseServer]:
    root = tmp_path / "releases"
    root.mkdir()
    make_release(root, "v2")
    s = ReleaseServer(root)
    yield s
    s.close()


def basket(interp: str, broker: Broker, **settings: str) -> ControllerProc:
    """Basket 1 with updates on: OTA_DIR in its folder, the test key; `settings` added."""
    c = ControllerProc(interp, broker.port, DISPLAY="none", OTA_KEY=KEY)
    c.env.update(settings, OTA_DIR=str(c.dir / "ota"))
    return c


def ota_state(c: ControllerProc) -> dict[str, object]:
    return dict(json.loads((c.dir / "ota" / "state.json").read_text()))


def to_v2(c: ControllerProc, service: Peer, releases: ReleaseServer) -> None:
    """Factory -> v2: pushed, downloaded, staged (exit 3), run again on trial, confirmed."""
    h = service.mark()
    service.publish(OTA, releases.push(1, "v2"), retain=True)
    wait_ota(service, start=h, state="downloading", version="v2")
    wait_ota(service, start=h, state="staged", version="v2")
    restarted(c)
    doc = wait_ota(service, start=h, state="ok", version="v2", error=None)
    assert doc["version"] == "v2"


def test_v1_to_v2_is_staged_run_on_trial_confirmed_and_reported(
        interp: str, broker: Broker, service: Peer, releases: ReleaseServer) -> None:
    c = basket(interp, broker)
    try:
        c.start()
        first = wait_ota(service, state="idle")
        assert first["version"] == FACTORY and first["ota"] == {"error": None, "state": "idle",
                                                                 "version": None}
        m = c.mark()
        to_v2(c, service, releases)
        c.wait_log("OTA: v2 verified and staged; restarting into it on trial", start=m)
        c.wait_log("starting v2 on trial", start=m)  # the loader
        c.wait_log("OTA: v2 confirmed", start=m)
        s = ota_state(c)
        assert (s["current"], s["previous"], s["trial"]) == ("v2", None, None), s
        assert sorted(p.name for p in (c.dir / "ota" / "v").iterdir()) == ["v2"]
        assert not (c.dir / "ota" / "staging").exists()
        flavour = "/releases/v2/py/mqtt_controller/"
        assert any(r.startswith(flavour) for r in releases.requests), releases.requests
        assert not any("/mpy/" in r for r in releases.requests)  # a host takes the py files
        # the retained push again at the next start: v2 runs already, nothing is fetched
        n = len(releases.requests)
        c.stop()
        m = c.mark()
        c.start()
        c.wait_log("OTA: push of v2 ignored: it runs already", start=m)
        assert len(releases.requests) == n
        # and the basket works on v2
        at = service.mark()
        service.publish(STATUS, b"start")
        c.wait_log("session started", start=m)
        c.items("MLON=2")
        service.wait_payload(UPD, b'{"id":1,"list":{"MLON":2}}', start=at)
        assert c.stop() == 0
        c.assert_no_traceback()
    finally:
        c.close()


def test_a_file_with_a_wrong_hash_is_refused_and_the_basket_stays_on_v2(
        interp: str, broker: Broker, service: Peer, releases: ReleaseServer) -> None:
    c = basket(interp, broker)
    try:
        c.start()
        to_v2(c, service, releases)
        make_release(releases.root, "v3")
        corrupt(releases.root, "v3", "py", "mqtt_controller/cart.py")
        h, m = service.mark(), c.mark()
        service.publish(OTA, releases.push(1, "v3"), retain=True)
        doc = wait_ota(service, start=h, state="failed", version="v3",
                       error="mqtt_controller/cart.py: wrong SHA-256")
        assert doc["version"] == "v2"
        c.wait_log("OTA: push of v3 refused (#1): mqtt_controller/cart.py: wrong SHA-256; "
                   "staying on v2", start=m)
        assert c.alive()
        s = ota_state(c)
        assert (s["current"], s["trial"]) == ("v2", None) and s["refused"], s
        assert sorted(p.name for p in (c.dir / "ota" / "v").iterdir()) == ["v2"]
        assert not (c.dir / "ota" / "staging").exists()
        # restarted, the basket does not fetch the refused push again, and says why
        n = len(releases.requests)
        c.stop()
        h, m = service.mark(), c.mark()
        c.start()
        doc = wait_ota(service, start=h, state="failed", version="v3")
        assert doc["version"] == "v2"
        service.publish(STATUS, b"start")  # a turn after the retained push came
        c.wait_log("session started", start=m)
        assert len(releases.requests) == n and "downloading" not in c.output(m)
        c.assert_no_traceback()
    finally:
        c.close()


def test_a_badly_signed_push_is_refused_and_nothing_is_fetched(
        interp: str, broker: Broker, service: Peer, releases: ReleaseServer) -> None:
    c = basket(interp, broker)
    try:
        c.start()
        to_v2(c, service, releases)
        make_release(releases.root, "v3")
        n = len(releases.requests)
        h, m = service.mark(), c.mark()
        service.publish(OTA, releases.push(1, "v3", key="0" * 64), retain=True)  # not its key
        doc = wait_ota(service, start=h, state="failed", error="bad signature")
        assert doc["version"] == "v2"
        c.wait_log("OTA: push refused (#1): bad signature; staying on v2", start=m)
        assert len(releases.requests) == n and c.alive()
        assert ota_state(c)["current"] == "v2"
        c.assert_no_traceback()
    finally:
        c.close()


def test_a_push_during_a_session_waits_for_end(
        interp: str, broker: Broker, service: Peer, releases: ReleaseServer) -> None:
    c = basket(interp, broker)
    try:
        c.start()
        m, at = c.mark(), service.mark()
        service.publish(STATUS, b"start")
        c.wait_log("session started", start=m)
        c.items("APPL=3")
        service.wait_payload(UPD, b'{"id":1,"list":{"APPL":3}}', start=at)
        h = service.mark()
        service.publish(OTA, releases.push(1, "v2"), retain=True)
        wait_ota(service, start=h, state="deferred", version="v2")
        c.wait_log("OTA: v2 waits for the session's end", start=m)
        c.items("APPL=4")  # the session goes on as before
        service.wait_payload(UPD, b'{"id":1,"list":{"APPL":4}}', start=at)
        assert releases.requests == [] and c.alive()
        at = service.mark()
        service.publish(STATUS, b"end")
        service.wait_payload(UPD, b'{"id":1,"list":{}}', start=at)
        wait_ota(service, start=h, state="staged", version="v2")
        restarted(c)
        doc = wait_ota(service, start=h, state="ok", version="v2")
        assert doc["version"] == "v2"
        c.assert_no_traceback()
    finally:
        c.close()


def test_a_trial_that_cannot_connect_in_time_is_rolled_back(
        interp: str, broker: Broker, service: Peer, releases: ReleaseServer) -> None:
    c = basket(interp, broker, OTA_TRIAL_S="10")
    try:
        c.start()
        h = service.mark()
        service.publish(OTA, releases.push(1, "v2"), retain=True)
        wait_ota(service, start=h, state="staged", version="v2")
        assert c.wait(30) == 3
        broker.stop()  # v2 starts on trial with no broker to reach
        m = c.mark()
        c.start(wait_connected=False)
        c.wait_log("starting v2 on trial", start=m)
        line = c.wait_log("OTA: trial of v2 failed: not connected within 10 s", timeout=30,
                          start=m)
        assert c.wait(15) == 3
        s = ota_state(c)
        assert (s["current"], s["trial"]) == (None, None), s
        assert s["last"] == {"state": "rolled_back", "version": "v2",
                             "error": "not connected within 10 s"}, s
        broker.start()
        peer = Peer(broker.port, "service", "service-pw")  # the old one lost its subscriptions
        try:
            peer.subscribe("basket/+/health")
            c.start(wait_connected=False)
            c.wait_log("starting factory %s" % FACTORY, start=line.pos)
            doc = wait_ota(peer, state="rolled_back", version="v2",
                           error="not connected within 10 s")
        finally:
            peer.close()
        assert doc["version"] == FACTORY
        c.wait_log("OTA: push of v2 ignored: it was rolled back", start=line.pos)
        c.assert_no_traceback()
    finally:
        c.close()


def test_a_kill_during_the_download_boots_the_old_version_which_fetches_again(
        interp: str, broker: Broker, service: Peer, releases: ReleaseServer) -> None:
    c = basket(interp, broker)
    try:
        c.start()
        releases.hold("/py/mqtt_controller/cart.py", after=100)  # mid-file
        h = service.mark()
        service.publish(OTA, releases.push(1, "v2"), retain=True)
        assert releases.arrived.wait(30)
        c.kill()  # a power cut, half a file in staging
        assert (c.dir / "ota" / "staging" / "mqtt_controller").is_dir()
        assert not (c.dir / "ota" / "v").exists()
        releases.let_go()
        m = c.mark()
        c.start()
        c.wait_log("starting factory %s" % FACTORY, start=m)  # the complete old version
        wait_ota(service, start=h, state="staged", version="v2")  # the retained push again
        restarted(c)
        doc = wait_ota(service, start=h, state="ok", version="v2")
        assert doc["version"] == "v2"
        assert sorted(p.name for p in (c.dir / "ota").iterdir()) == ["state.json", "v"]
        c.assert_no_traceback()
    finally:
        c.close()


# -- the download alone (otaget.fetch) under each interpreter, against the release server ------
FETCH_DRIVER = """
import json, os, sys
from mqtt_controller import otaboot, otaget
ota_dir, flavour, cases = sys.argv[1], sys.argv[2], json.loads(open(sys.argv[3]).read())
ticks = [0]
def tick():
    ticks[0] += 1
for name, push in cases:
    result, error = "ok", None
    try:
        otaget.fetch(ota_dir, push, flavour, tick, "0.1.0")
    except ValueError as e:
        result, error = "refused", str(e)
    except OSError as e:
        result, error = "oserror", str(e)
    try:
        v = sorted(os.listdir(ota_dir + "/v"))
    except OSError:
        v = []
    try:
        os.stat(ota_dir + "/staging")
        staging = True
    except OSError:
        staging = False
    print(json.dumps({"name": name, "result": result, "error": error, "v": v,
                      "staging": staging, "trial": otaboot.read_state(ota_dir)["trial"],
                      "ticks": ticks[0]}))
"""


@pytest.mark.parametrize("flavour", ["py", "mpy"])
def test_the_download_checks_the_manifest_and_every_file(
        interp: str, flavour: str, tmp_path: Path, releases: ReleaseServer) -> None:
    import shutil
    import subprocess

    from tests.support.ota_release import manifest_sha
    from tests.support.process import INTERPRETERS, clean_env, mp_path

    root = releases.root
    cart = "mqtt_controller/cart." + flavour
    shutil.copytree(root / "v2", root / "v3")  # its manifest says v2
    for v in ("v4", "v5", "v6"):
        make_release(root, v)
    short = root / "v4" / flavour / cart
    short.write_bytes(short.read_bytes()[:-1])
    long_ = root / "v5" / flavour / cart
    size = len(long_.read_bytes())
    long_.write_bytes(long_.read_bytes() + b"#")
    (root / "v6" / flavour / cart).unlink()

    def push(v: str, sha: str | None = None, url: str = releases.url) -> dict[str, str]:
        return {"version": v, "manifest": "%s/releases/%s/manifest.txt" % (url, v),
                "sha256": sha or manifest_sha(root, v), "sig": "0" * 64}

    cases = [
        ("hash", push("v2", "ab" * 32)),
        ("version", push("v3")),
        ("short", push("v4")),
        ("long", push("v5")),
        ("missing", push("v6")),
        ("no server", push("v2", url="http://127.0.0.1:%d" % free_port())),
        ("running", push(FACTORY, "ab" * 32)),
        ("good", push("v2")),
        ("again", push("v2")),
    ]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "driver.py").write_text(FETCH_DRIVER)
    ota_dir = tmp_path / "ota"
    env = clean_env(PYTHONPATH=str(ROOT), MICROPYPATH=mp_path())
    proc = subprocess.run([INTERPRETERS[interp], str(tmp_path / "driver.py"), str(ota_dir),
                           flavour, str(tmp_path / "cases.json")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = {d["name"]: d for d in map(json.loads, proc.stdout.splitlines())}
    want = {
        "hash": ("refused", "manifest.txt: wrong SHA-256 (not the pushed one)"),
        "version": ("refused", "manifest is for v2, not v3"),
        "short": ("refused", "%s: %d bytes, not %d" % (cart, size - 1, size)),
        "long": ("refused", "%s: %d bytes, more than %d" % (cart, size + 1, size)),
        "missing": ("oserror", "HTTP 404 for %s" % cart),
        "running": ("refused", "%s is the running version" % FACTORY),
    }
    for name, (result, error) in want.items():
        d = got[name]
        assert (d["result"], d["error"]) == (result, error), d
        assert d["v"] == [] and not d["staging"] and d["trial"] is None, d  # nothing left
    assert got["no server"]["result"] == "oserror" and got["no server"]["v"] == []
    for name in ("good", "again"):  # again: the older copy of v2 replaced whole
        d = got[name]
        assert (d["result"], d["v"], d["staging"], d["trial"]) == ("ok", ["v2"], False, "v2"), d
    assert got["good"]["ticks"] > got["missing"]["ticks"]  # tick() ran chunk by chunk
    for f in (root / "v2" / flavour).rglob("*"):
        if f.is_file():
            rel = f.relative_to(root / "v2" / flavour)
            assert (ota_dir / "v" / "v2" / rel).read_bytes() == f.read_bytes(), rel
    assert not (ota_dir / "v" / ".old").exists()
