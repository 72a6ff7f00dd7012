"""tools/provision.py without a broker: basket lists, argument errors, files, modes, no secrets."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.broker import provision, read_env, shared_tmpdir
from tools import dev_broker
from tools import provision as prov

# --- the basket list parser ---------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("1", [1]),
    ("1-3", [1, 2, 3]),
    ("1,5,9-12", [1, 5, 9, 10, 11, 12]),
    (" 3 , 1-2 ", [1, 2, 3]),
    ("2,2,1-2", [1, 2]),
    ("7-7", [7]),
    ("99999", [99999]),
])  # fmt: skip
def test_parse_baskets(text: str, expected: list[int]) -> None:
    assert prov.parse_baskets(text) == expected


@pytest.mark.parametrize("text", [
    "", " ", "0", "0-3", "3-1", "a", "1-", "-1", "1,,2", "1-2-3", "1.5", "100000", "1-100000",
    "1;2", "١",  # an Arabic-Indic digit: \d would take it, int() too
])  # fmt: skip
def test_parse_baskets_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        prov.parse_baskets(text)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(prov.__file__), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--baskets", "3-1"], "runs backwards"),
    (["--baskets", "x"], "not a basket number"),
    (["--baskets", "0"], "between 1 and"),
    (["--baskets", ""], "empty"),
    (["--baskets", "1", "--port", "70000"], "outside 1-65535"),
    (["--baskets", "1", "--port", "http"], "not a port"),
    (["--baskets", "1", "--service-user", "basket7"], "clash"),
    (["--baskets", "1", "--service-user", "a b"], "use 1-64"),
    (["--baskets", "1", "--tls-only"], "needs --tls"),
    (["--baskets", "1", "--tls", "--port", "8883"], "both 8883"),
    ([], "--baskets is required"),
    (["--baskets", "1", "--rotate", "2"], "no such basket"),
])  # fmt: skip
def test_bad_arguments_exit_2_without_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    res = run_cli("--out", str(tmp_path / "out"), *args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "usage:" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out" / prov.STATE_NAME).exists()


# --- generated files ----------------------------------------------------------------------------


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    return tmp_path / "broker"


def state(out: Path) -> dict[str, object]:
    data = json.loads((out / prov.STATE_NAME).read_text())
    assert isinstance(data, dict)
    return data


def passwords(out: Path) -> dict[str, str]:
    pw = state(out)["passwords"]
    assert isinstance(pw, dict)
    return pw


def ota_keys(out: Path) -> dict[str, str]:
    keys = state(out)["ota_keys"]
    assert isinstance(keys, dict)
    return keys


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_modes_and_no_secret_printed(out: Path) -> None:
    res = provision(out, "--baskets", "1-3,10", "--tls", "--run-as-user", "root")
    printed = res.stdout + res.stderr
    pw = passwords(out)
    assert sorted(pw) == ["basket1", "basket10", "basket2", "basket3", "service"]
    assert len(set(pw.values())) == 5 and all(len(p) >= 32 for p in pw.values())
    for secret in pw.values():
        assert secret not in printed
    keys = ota_keys(out)
    assert sorted(keys, key=int) == ["1", "2", "3", "10"]
    for key in keys.values():
        assert key not in printed
    assert "PRIVATE KEY" not in printed
    assert str(out / "service.env") in printed and str(out / prov.STATE_NAME) in printed

    secret_files = [out / prov.STATE_NAME, out / prov.DYNSEC_NAME, out / "service.env",
                    out / prov.OTA_KEYS_NAME,
                    out / "tls" / "ca.key", out / "tls" / "server.key"]
    secret_files += [out / "baskets" / ("%d.%s" % (n, ext)) for n in (1, 2, 3, 10)
                     for ext in ("env", "json")]
    for f in secret_files:
        assert mode(f) == 0o600, f
    assert mode(out / "baskets") == 0o700 and mode(out / "data") == 0o700
    assert mode(out / "ca.crt") == 0o644 and mode(out / "mosquitto.conf") == 0o644
    leftovers = [p.name for p in out.rglob(".*")]
    assert leftovers == []  # no temporary plain-text password file left behind


def test_env_and_json_files(out: Path) -> None:
    provision(out, "--baskets", "1,5", "--host", "mqtt.example.com", "--port", "1884",
              "--run-as-user", "root")
    env = read_env(out / "baskets" / "5.env")
    pw = passwords(out)
    keys = ota_keys(out)
    assert env == {"MQTT_HOST": "mqtt.example.com", "MQTT_PORT": "1884", "MQTT_USER": "basket5",
                   "MQTT_PASSWORD": pw["basket5"], "MQTT_TOPIC": "basket/5", "BASKET_ID": "5",
                   "MQTT_CLIENT_ID": "basket-5", "OTA_KEY": keys["5"]}
    assert list(env) == ["MQTT_HOST", "MQTT_PORT", "MQTT_USER", "MQTT_PASSWORD", "MQTT_TOPIC",
                         "BASKET_ID", "MQTT_CLIENT_ID", "OTA_KEY"]
    assert json.loads((out / "baskets" / "5.json").read_text()) == env
    assert read_env(out / "service.env") == {
        "MQTT_HOST": "mqtt.example.com", "MQTT_PORT": "1884", "MQTT_USER": "service",
        "MQTT_PASSWORD": pw["service"], "SERVICE_CLIENT_ID": "basket-service-1",
        "OTA_KEYS_FILE": str(out / prov.OTA_KEYS_NAME)}  # fmt: skip

    provision(out, "--tls", "--tls-port", "8884")
    env = read_env(out / "baskets" / "5.env")
    assert env["MQTT_PORT"] == "8884" and env["MQTT_TLS"] == "1"
    assert env["MQTT_CAFILE"] == str(out / "ca.crt") and Path(env["MQTT_CAFILE"]).is_file()
    board = json.loads((out / "baskets" / "5.json").read_text())
    assert board == dict(env, MQTT_CAFILE="ca.crt")
    assert list(env)[-3:] == ["MQTT_TLS", "MQTT_CAFILE", "OTA_KEY"]
    assert read_env(out / "service.env")["MQTT_TLS"] == "1"


def test_config_is_absolute_and_complete(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative --out must still produce absolute paths
    provision(Path("broker"), "--baskets", "1-50", "--tls", "--bind", "127.0.0.1",
              "--run-as-user", "root")
    conf = (out / "mosquitto.conf").read_text()
    lines = [line for line in conf.splitlines() if line and not line.startswith("#")]
    for key in ("plugin", "plugin_opt_config_file", "persistence_location", "certfile",
                "keyfile"):
        (value,) = [line.split(" ", 1)[1] for line in lines if line.startswith(key + " ")]
        assert Path(value).is_absolute() and Path(value).exists(), key
    for expected in ("listener 1883 127.0.0.1", "listener 8883 127.0.0.1", "allow_anonymous false",
                     "persistence true", "set_tcp_nodelay true", "max_queued_messages 500",
                     "max_inflight_messages 1000", "max_packet_size 8192",
                     "message_size_limit 4096",
                     "user root", "tls_version tlsv1.2"):  # fmt: skip
        assert expected in lines
    assert any(line.startswith("persistent_client_expiration ") for line in lines)
    # The 2.0.11 acl_file grants every subscription: it must not come back.
    assert not [line for line in lines if line.split()[0] in ("password_file", "acl_file")]


def dynsec(out: Path) -> dict[str, object]:
    doc = json.loads((out / prov.DYNSEC_NAME).read_text())
    assert isinstance(doc, dict)
    return doc


def test_dynsec_scheme(out: Path) -> None:
    provision(out, "--baskets", "2,7", "--service-user", "pricing", "--run-as-user", "root")
    doc = dynsec(out)
    assert doc["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False,
                                       "subscribe": False, "unsubscribe": True}
    clients = {c["username"]: c for c in doc["clients"]}  # type: ignore[attr-defined]
    assert sorted(clients) == ["basket2", "basket7", "pricing"]
    assert clients["basket7"]["clientid"] == "basket-7"
    assert "clientid" not in clients["pricing"]  # the CLI and dashboard use random ids
    assert [r["rolename"] for r in clients["basket7"]["roles"]] == ["basket7"]
    assert [r["rolename"] for r in clients["pricing"]["roles"]] == ["service"]
    roles = {r["rolename"]: [(a["acltype"], a["topic"]) for a in r["acls"] if a["allow"]]
             for r in doc["roles"]}  # type: ignore[attr-defined]
    assert sorted(roles) == ["basket2", "basket7", "service"]
    assert roles["basket7"] == [
        ("publishClientSend", "basket/7/update"),
        ("publishClientSend", "basket/7/availability"),
        ("publishClientSend", "basket/7/health"),
        ("publishClientReceive", "basket/7/status"),
        ("subscribeLiteral", "basket/7/status"),
        ("publishClientReceive", "basket/7/config"),
        ("subscribeLiteral", "basket/7/config"),
        ("publishClientReceive", "basket/7/ota"),
        ("subscribeLiteral", "basket/7/ota"),
    ]
    # A basket only receives its updates: nothing lets it send on any ota topic.
    assert not [t for k, t in roles["basket7"] if k == "publishClientSend" and "ota" in t]
    assert sorted(roles["service"]) == sorted([
        ("publishClientSend", "basket/+/status"),
        ("publishClientSend", "basket/+/config"),
        ("publishClientSend", "basket/+/ota"),
        ("publishClientReceive", "basket/+/update"),
        ("subscribePattern", "basket/+/update"),
        ("subscribePattern", "$share/+/basket/+/update"),
        ("publishClientReceive", "basket/+/availability"),
        ("subscribePattern", "basket/+/availability"),
        ("subscribePattern", "$share/+/basket/+/availability"),
        ("publishClientReceive", "basket/+/health"),
        ("subscribePattern", "basket/+/health"),
        ("subscribePattern", "$share/+/basket/+/health"),
    ])
    pw = passwords(out)
    for user, c in clients.items():  # each hash is the state file's password
        assert c["iterations"] == 101 and len(base64.b64decode(c["salt"])) == 12
        assert c == dict(c, **prov.hash_password(pw[user], base64.b64decode(c["salt"])))


def test_service_workers(out: Path) -> None:
    provision(out, "--baskets", "1", "--service-workers", "3", "--run-as-user", "root")
    envs = [read_env(out / name) for name in ("service.env", "service-2.env", "service-3.env")]
    assert [e["MQTT_USER"] for e in envs] == ["service", "service-2", "service-3"]
    assert [e["SERVICE_CLIENT_ID"] for e in envs] == [
        "basket-service-1", "basket-service-2", "basket-service-3"]  # fmt: skip
    assert len({e["MQTT_PASSWORD"] for e in envs}) == 3
    assert all(mode(out / n) == 0o600 for n in ("service-2.env", "service-3.env"))
    users = [c["username"] for c in dynsec(out)["clients"]]  # type: ignore[attr-defined]
    assert users == ["service", "service-2", "service-3", "basket1"]
    first = passwords(out)

    provision(out, "--rotate-service")  # every worker's password, nobody else's
    second = passwords(out)
    assert all(second[u] != first[u] for u in ("service", "service-2", "service-3"))
    assert second["basket1"] == first["basket1"]

    res = provision(out, "--service-workers", "1")
    assert not (out / "service-2.env").exists() and not (out / "service-3.env").exists()
    assert sorted(passwords(out)) == ["basket1", "service"]
    assert "removed service-2.env" in res.stdout


def test_old_password_file_and_acl_removed(out: Path) -> None:
    out.mkdir()
    (out / "passwd").write_text("basket1:$7$101$old\n")
    (out / "acl").write_text("user basket1\ntopic read #\n")
    res = provision(out, "--baskets", "1", "--run-as-user", "root")
    assert not (out / "passwd").exists() and not (out / "acl").exists()
    assert "removed the old passwd" in res.stdout


def test_rerun_keeps_passwords_and_settings(out: Path) -> None:
    provision(out, "--baskets", "1-2", "--port", "1999", "--run-as-user", "root")
    first = passwords(out)
    env1 = (out / "baskets" / "1.env").read_text()
    provision(out, "--baskets", "2-4")
    second = passwords(out)
    assert {k: second[k] for k in first} == first
    assert sorted(second) == ["basket1", "basket2", "basket3", "basket4", "service"]
    assert (out / "baskets" / "1.env").read_text() == env1
    assert read_env(out / "baskets" / "4.env")["MQTT_PORT"] == "1999"
    assert "basket4" in (out / prov.DYNSEC_NAME).read_text()

    provision(out, "--rotate", "1", "--rotate-service")
    third = passwords(out)
    assert third["basket1"] != first["basket1"] and third["service"] != first["service"]
    assert third["basket2"] == first["basket2"]
    assert read_env(out / "baskets" / "1.env")["MQTT_PASSWORD"] == third["basket1"]


def test_tls_certificates(out: Path) -> None:
    provision(out, "--baskets", "1", "--tls", "--host", "mqtt.example.com", "--san", "10.0.0.5",
              "--run-as-user", "root")
    crt = out / "tls" / "server.crt"
    text = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:mqtt.example.com" in text and "IP Address:10.0.0.5" in text
    assert "DNS:localhost" not in text
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(out / "ca.crt"), str(crt)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr

    # A re-run keeps the CA (baskets hold it); a new name renews only the server certificate.
    ca_before = (out / "ca.crt").read_bytes()
    crt_before = crt.read_bytes()
    provision(out, "--baskets", "2")
    assert crt.read_bytes() == crt_before
    provision(out, "--san", "10.0.0.6")
    assert (out / "ca.crt").read_bytes() == ca_before and crt.read_bytes() != crt_before


def test_default_certificate_names(out: Path) -> None:
    provision(out, "--baskets", "1", "--tls", "--run-as-user", "root")
    text = subprocess.run(["openssl", "x509", "-in", str(out / "tls" / "server.crt"), "-noout",
                           "-ext", "subjectAltName"], capture_output=True, text=True).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership changes need root")
def test_root_hands_broker_files_to_the_broker_user(tmp_path: Path) -> None:
    import pwd

    uid = pwd.getpwnam("mosquitto").pw_uid
    where = shared_tmpdir("prov-cli-")
    try:
        out = where / "broker"
        res = provision(out, "--baskets", "1", "--tls")
        assert "warning" not in res.stderr
        for f in (prov.DYNSEC_NAME, "data", "tls/server.key"):
            assert (out / f).stat().st_uid == uid, f
        for f in (prov.STATE_NAME, "service.env", "baskets/1.env", "tls/ca.key"):
            assert (out / f).stat().st_uid == 0, f
        # pytest's tmp_path is 0700: Mosquitto could not enter it once it dropped to the user.
        res = provision(tmp_path / "hidden", "--baskets", "1")
        assert "warning: user 'mosquitto' cannot enter" in res.stderr
    finally:
        import shutil

        shutil.rmtree(where, ignore_errors=True)


def test_password_hash_format() -> None:
    # Recomputed independently: PBKDF2-HMAC-SHA512, 101 rounds, base64 salt and key.
    import hashlib

    salt = bytes(range(12))
    h = prov.hash_password("secret", salt)
    assert (h["iterations"], base64.b64decode(h["salt"])) == (101, salt)
    assert base64.b64decode(h["password"]) == hashlib.pbkdf2_hmac("sha512", b"secret", salt, 101)
    assert prov.hash_password("secret") != prov.hash_password("secret")  # fresh salt each time


# --- the development broker ---------------------------------------------------------------------


def test_dev_broker_ensure_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "dev"
    b = dev_broker.ensure(port=18999, out=d)
    assert b.conf == d / "mosquitto.conf" and b.basket_env(3).is_file()
    assert "user root" in b.conf.read_text() and "listener 18999 127.0.0.1" in b.conf.read_text()
    first = passwords(d)
    assert sorted(first) == ["basket1", "basket2", "basket3", "service"]
    mtime = (d / prov.DYNSEC_NAME).stat().st_mtime_ns
    dev_broker.ensure(port=18999, out=d)
    assert (d / prov.DYNSEC_NAME).stat().st_mtime_ns == mtime  # nothing regenerated
    b = dev_broker.ensure(port=19000, out=d)
    assert passwords(d) == first and "listener 19000 127.0.0.1" in b.conf.read_text()
    assert read_env(b.basket_env(1))["MQTT_PORT"] == "19000"
    described = b.describe()
    assert described["BROKER_PORT"] == "19000" and described["BROKER_CONF"] == str(b.conf)
    captured = capsys.readouterr()
    for secret in first.values():
        assert secret not in captured.out + captured.err + json.dumps(described)


def test_tls_only_has_no_plain_listener(out: Path) -> None:
    provision(out, "--baskets", "1", "--tls", "--tls-only", "--run-as-user", "root")
    listeners = [line for line in (out / "mosquitto.conf").read_text().splitlines()
                 if line.startswith("listener ")]
    assert listeners == ["listener 8883"]
    assert read_env(out / "baskets" / "1.env")["MQTT_PORT"] == "8883"


def test_broken_state_file_is_a_clear_error(out: Path) -> None:
    provision(out, "--baskets", "1", "--run-as-user", "root")
    (out / prov.STATE_NAME).write_text("{not json")
    res = run_cli("--out", str(out), "--baskets", "2")
    assert res.returncode == 1
    assert "cannot read the state file" in res.stderr and "Traceback" not in res.stderr
    assert (out / prov.STATE_NAME).read_text() == "{not json"  # left for a human to repair


# --- update keys (OTA_KEY, issue 15) ------------------------------------------------------------


def test_ota_keys_per_basket_file_and_rotation(out: Path) -> None:
    provision(out, "--baskets", "1-3", "--run-as-user", "root")
    keys = ota_keys(out)
    assert sorted(keys) == ["1", "2", "3"] and len(set(keys.values())) == 3
    for key in keys.values():  # 32 random bytes as 64 lowercase hex characters
        assert len(key) == 64 and key == key.lower() and bytes.fromhex(key)
    for n in (1, 2, 3):
        assert read_env(out / "baskets" / ("%d.env" % n))["OTA_KEY"] == keys[str(n)]
        assert json.loads((out / "baskets" / ("%d.json" % n)).read_text())["OTA_KEY"] == \
            keys[str(n)]
    # The service's copy: all of them, 0600, named in service.env.
    keys_file = out / prov.OTA_KEYS_NAME
    assert json.loads(keys_file.read_text()) == keys and mode(keys_file) == 0o600
    assert read_env(out / "service.env")["OTA_KEYS_FILE"] == str(keys_file)
    pw = passwords(out)

    provision(out, "--baskets", "4")  # a re-run keeps the keys and adds one for the new basket
    again = ota_keys(out)
    assert {k: again[k] for k in keys} == keys and len(again["4"]) == 64
    assert json.loads(keys_file.read_text()) == again

    provision(out, "--rotate", "2")  # a new password and a new key, for basket 2 only
    rotated = ota_keys(out)
    assert rotated["2"] != keys["2"] and passwords(out)["basket2"] != pw["basket2"]
    assert {k: rotated[k] for k in ("1", "3", "4")} == {k: again[k] for k in ("1", "3", "4")}
    assert read_env(out / "baskets" / "2.env")["OTA_KEY"] == rotated["2"]
    assert json.loads(keys_file.read_text())["2"] == rotated["2"]


def test_state_without_ota_keys_gets_them(out: Path) -> None:
    """A folder provisioned before issue 15: its baskets get keys on the next run, nothing else
    changes."""
    provision(out, "--baskets", "1-2", "--run-as-user", "root")
    data = state(out)
    del data["ota_keys"]
    (out / prov.STATE_NAME).write_text(json.dumps(data))
    (out / prov.OTA_KEYS_NAME).unlink()
    pw = passwords(out)
    provision(out)
    assert sorted(ota_keys(out)) == ["1", "2"] and passwords(out) == pw
    assert json.loads((out / prov.OTA_KEYS_NAME).read_text()) == ota_keys(out)
