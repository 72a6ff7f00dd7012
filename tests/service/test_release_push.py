"""`release push` and `release clear` (docs/ota.md, "Rolling out") against a real Mosquitto
provisioned by tools/provision.py: each basket gets a retained push on basket/<n>/ota signed
under its own key (checked here with an HMAC computed independently), a basket without a key
is refused by name and gets nothing while the others go on, keys are never printed, and only
the service can write an ota topic (a basket's own forged push is dropped by the broker)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, read_env
from tests.support.provisioned import Client
from tests.support.service_proc import cli

V = "1.5.0"
URL = "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    b = Broker.provisioned(baskets=3, tls=False).start()
    yield b
    b.close()


@pytest.fixture
def env(broker: Broker, tmp_path: Path) -> dict[str, str]:
    """service.env as provisioned, on the plain listener, with basket 3's key taken out of a
    copy of ota-keys.json (as if it were provisioned before updates existed)."""
    keys = json.loads((broker.dir / "ota-keys.json").read_text())
    del keys["3"]
    keys_file = tmp_path / "ota-keys.json"
    keys_file.write_text(json.dumps(keys))
    keys_file.chmod(0o600)
    out = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "RELEASE_", "OTA_"))
           and k not in ("DATABASE_URL", "BASKET_DB", "BASKETS")}
    out.update(read_env(broker.dir / "service.env"))
    out.update({"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(broker.port),
                "BASKET_DB": str(tmp_path / "basket.db"),
                "RELEASE_DIR": str(tmp_path / "releases"), "OTA_KEYS_FILE": str(keys_file)})
    r = cli(out, "release", "add", "--version", V)
    assert r.returncode == 0, r.stderr
    return out


def basket(b: Broker, n: int) -> Client:
    c = Client(b.port, "basket%d" % n, b.password(n))
    assert c.subscribe("basket/%d/ota" % n, "basket/%d/status" % n) == [1, 1]
    return c


def ota_messages(c: Client, n: int) -> list[bytes]:
    return [p for t, p, _ in c.messages if t == "basket/%d/ota" % n]


def expected_sig(key: str, n: int, version: str, sha: str) -> str:
    """The contract, written out again here: HMAC-SHA256 under the key's text as UTF-8 over
    "<n>\\n<version>\\n<sha256 hex>"."""
    return hmac.new(key.encode("utf-8"), b"%d\n%s\n%s" % (n, version.encode(), sha.encode()),
                    hashlib.sha256).hexdigest()


def test_push_signed_per_basket_keyless_refused(broker, env, tmp_path):
    keys = json.loads((broker.dir / "ota-keys.json").read_text())
    manifest = (tmp_path / "releases" / V / "manifest.txt").read_bytes()
    sha = hashlib.sha256(manifest).hexdigest()
    peers = {n: basket(broker, n) for n in (1, 2, 3)}
    svc_env = read_env(broker.dir / "service.env")
    svc = Client(broker.port, svc_env["MQTT_USER"], svc_env["MQTT_PASSWORD"])
    try:
        r = cli(env, "release", "push", V, "--baskets", "1-3", "--url", URL + "/")
        assert r.returncode == 1, (r.stdout, r.stderr)
        out = r.stdout.splitlines()
        assert out[0].startswith("basket 3: refused: OTA_KEYS_FILE has no key for it"), out
        assert out[1].startswith("basket 1: release %s pushed (%s/releases/%s/manifest.txt"
                                 % (V, URL, V)), out
        assert out[2].startswith("basket 2: release %s pushed" % V), out
        assert "1 of 3 baskets refused (no OTA key): 3" in r.stderr
        for key in keys.values():  # never a key on the screen
            assert key not in r.stdout + r.stderr

        for n in (1, 2):
            c = peers[n]
            with c.cond:
                c.cond.wait_for(lambda c=c, n=n: ota_messages(c, n), timeout=5)
            (payload,) = ota_messages(c, n)
            assert len(payload) <= 1024
            doc = json.loads(payload)
            assert set(doc) == {"version", "manifest", "sha256", "sig"}
            assert doc["version"] == V and doc["sha256"] == sha
            assert doc["manifest"] == "%s/releases/%s/manifest.txt" % (URL, V)
            assert doc["sig"] == expected_sig(keys[str(n)], n, V, sha)
            other = keys[str(3 - n)]  # the other basket's key signs nothing for this one
            assert doc["sig"] != expected_sig(other, n, V, sha)
            assert doc["sig"] != expected_sig(keys[str(n)], 3 - n, V, sha)
        # Basket 3 got nothing: a status sent after the push arrives, no ota before it.
        svc.publish("basket/3/status", b"end")
        peers[3].wait_for("basket/3/status", b"end")
        assert ota_messages(peers[3], 3) == []

        status = cli(env, "release", "status", "--baskets", "1-3")
        assert status.returncode == 0, status.stderr
        rows = {ln.split()[0]: ln.split() for ln in status.stdout.splitlines()[1:]}
        assert rows["1"][1] == V and rows["2"][1] == V and rows["3"][1] == "-"
    finally:
        for c in (*peers.values(), svc):
            c.close()

    # Retained: a basket that (re)starts later gets it at once, and a push a basket forges on
    # its own topic never reaches it (the broker drops it: only the service writes ota).
    forger = Client(broker.port, "basket1", broker.password(1))
    forger.publish("basket/1/ota", b'{"version":"evil"}', retain=True)
    forger.close()
    late = basket(broker, 1)
    try:
        late.wait_for("basket/1/ota", ota_payload_of(late, 1))
        assert [json.loads(p)["version"] for p in ota_messages(late, 1)] == [V]
        assert all(retained for t, _, retained in late.messages if t == "basket/1/ota")
    finally:
        late.close()

    # Withdrawn: the retained push is gone; a basket starting now gets none.
    r = cli(env, "release", "clear", "--baskets", "1,2")
    assert r.returncode == 0 and "basket 1: push withdrawn" in r.stdout, r.stderr
    late = basket(broker, 1)
    svc = Client(broker.port, svc_env["MQTT_USER"], svc_env["MQTT_PASSWORD"])
    try:
        svc.publish("basket/1/status", b"end")
        late.wait_for("basket/1/status", b"end")
        assert ota_messages(late, 1) == []
    finally:
        late.close()
        svc.close()
    status = cli(env, "release", "status", "--baskets", "1", "--json")
    assert json.loads(status.stdout)["pushed"] is None


def ota_payload_of(c: Client, n: int) -> bytes:
    """The first ota message a client got (waits for one)."""
    with c.cond:
        c.cond.wait_for(lambda: ota_messages(c, n), timeout=5)
    return ota_messages(c, n)[0]


def test_push_refusals(broker, env, tmp_path):
    # No base URL: neither --url nor RELEASE_URL.
    r = cli(env, "release", "push", V, "--baskets", "1")
    assert r.returncode == 2 and "RELEASE_URL is not set and no --url given" in r.stderr
    # Only plain http:// base URLs (the integrity is in the signed hashes).
    for bad in ("https://x:8443", "http://user:pw@x", "http://x/?a=1", "ftp://x", "http://"):
        r = cli(env, "release", "push", V, "--baskets", "1", "--url", bad)
        assert r.returncode == 2 and "--url must be a plain http:// base URL" in r.stderr, bad
    r = cli(dict(env, RELEASE_URL="https://store"), "release", "status")
    assert r.returncode == 2 and "RELEASE_URL must be" in r.stderr
    # A version not built; a bad name.
    r = cli(env, "release", "push", "9.9", "--baskets", "1", "--url", URL)
    assert r.returncode == 1 and "no release 9.9 in" in r.stderr
    r = cli(env, "release", "push", "../x", "--baskets", "1", "--url", URL)
    assert r.returncode == 1 and "not a version name" in r.stderr
    # No keys file, or a broken one: nothing sent, the file named, no key shown.
    no_keys = {k: v for k, v in env.items() if k != "OTA_KEYS_FILE"}
    r = cli(no_keys, "release", "push", V, "--baskets", "1", "--url", URL)
    assert r.returncode == 1 and "OTA_KEYS_FILE is not set" in r.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"1": "short"}')
    r = cli(dict(env, OTA_KEYS_FILE=str(broken)), "release", "push", V, "--baskets", "1",
            "--url", URL)
    assert r.returncode == 1 and "basket 1's key is not" in r.stderr and "short" not in r.stderr
    # Readable by others: pushed, with a warning.
    lax = tmp_path / "lax.json"
    lax.write_text((broker.dir / "ota-keys.json").read_text())
    lax.chmod(0o644)
    r = cli(dict(env, OTA_KEYS_FILE=str(lax)), "release", "push", V, "--baskets", "2",
            "--url", URL)
    assert r.returncode == 0 and "readable by others (mode 0644)" in r.stderr, r.stderr
    # The broker down: exit 1, nothing recorded as pushed.
    r = cli(dict(env, MQTT_PORT="1"), "release", "push", V, "--baskets", "1", "--url", URL)
    assert r.returncode == 1 and "cannot reach MQTT broker" in r.stderr
    status = cli(env, "release", "status", "--baskets", "1,2", "--json")
    pushed = {d["basket"]: d["pushed"] for d in map(json.loads, status.stdout.splitlines())}
    assert pushed == {1: None, 2: V}
    assert "Traceback" not in r.stderr
