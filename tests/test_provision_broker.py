"""Real Mosquitto on the config tools/provision.py generates: auth, ACL, TLS, re-runs."""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterator

import pytest

from tests.support.provisioned import Client, ProvisionedDir, provision, refused


@pytest.fixture(scope="module")
def broker() -> Iterator[ProvisionedDir]:
    # The default --run-as-user: when the tests run as root this checks that Mosquitto, having
    # dropped to the `mosquitto` user, still reads its password file, ACL, key and data folder.
    b = ProvisionedDir("--baskets", "1-3").start()
    yield b
    b.close()


def basket(b: ProvisionedDir, n: int, **kw: object) -> Client:
    return Client(b.port, "basket%d" % n, b.password(n), **kw)  # type: ignore[arg-type]


def service(b: ProvisionedDir, **kw: object) -> Client:
    return Client(b.port, b.env()["MQTT_USER"], b.password(), **kw)  # type: ignore[arg-type]


def test_broker_runs_as_the_configured_user(broker: ProvisionedDir) -> None:
    if os.geteuid() != 0:
        pytest.skip("Mosquitto only switches users when started as root")
    import pwd

    assert broker.proc is not None
    status = open("/proc/%d/status" % broker.proc.pid).read()
    uid = int(status.split("Uid:")[1].split()[0])
    assert uid == pwd.getpwnam("mosquitto").pw_uid


def test_anonymous_refused(broker: ProvisionedDir) -> None:
    assert refused(broker.port, None, None).is_failure
    assert refused(broker.tls_port or 0, None, None, cafile=broker.dir / "ca.crt",
                   host="localhost").is_failure


def test_wrong_password_and_unknown_user_refused(broker: ProvisionedDir) -> None:
    refused(broker.port, "basket1", broker.password(2))
    refused(broker.port, "basket1", "")
    refused(broker.port, "service", broker.password(1))
    refused(broker.port, "basket9", "anything")
    c = basket(broker, 1)  # and the right one is let in
    c.close()


def test_basket_cannot_publish_for_another_basket(broker: ProvisionedDir) -> None:
    svc = service(broker)
    b1 = basket(broker, 1)
    try:
        assert svc.subscribe("basket/+/update", "basket/+/availability") == [1, 1]
        b1.publish("basket/2/update", b'{"id":2,"list":{"FAKE":9}}')
        b1.publish("basket/2/availability", b"offline")
        b1.publish("basket/1/update", b'{"id":1,"list":{}}')
        # Same client, same QoS: had the forgeries passed they would have arrived first.
        svc.wait_for("basket/1/update", b'{"id":1,"list":{}}')
        assert [t for t in svc.topics() if t.startswith("basket/2/")] == []
    finally:
        svc.close()
        b1.close()


def test_basket_cannot_read_another_basket_or_fake_its_own_status(
    broker: ProvisionedDir,
) -> None:
    svc = service(broker)
    b1 = basket(broker, 1)
    try:
        # Mosquitto 2.0 grants such subscriptions and filters each delivery by the ACL,
        # so what counts is what arrives.
        b1.subscribe("basket/2/status", "basket/+/status", "#", "basket/1/status")
        b1.publish("basket/1/status", b'{"msg":"total","payload":{"basketid":1,"totalprice":0}}')
        svc.publish("basket/2/status", b"start")
        svc.publish("basket/1/status", b"end")
        b1.wait_for("basket/1/status", b"end")
        assert set(b1.topics()) == {"basket/1/status"}
        assert {p for _, p, _ in b1.messages} == {b"end"}
    finally:
        svc.close()
        b1.close()


def test_basket_and_service_do_their_jobs(broker: ProvisionedDir) -> None:
    b2 = basket(broker, 2, will=("basket/2/availability", b"offline"))
    try:
        assert b2.subscribe("basket/2/status") == [1]
        b2.publish("basket/2/availability", b"online", retain=True)
        b2.publish("basket/2/update", b'{"id":2,"list":{"MLON":2}}', retain=True)
        # A service that comes later still gets the retained state.
        svc = service(broker)
        try:
            assert svc.subscribe("basket/+/update", "basket/+/availability") == [1, 1]
            svc.wait_for("basket/2/availability", b"online")
            svc.wait_for("basket/2/update", b'{"id":2,"list":{"MLON":2}}')
            total = b'{"msg":"total","payload":{"basketid":2,"totalprice":5000}}'
            svc.publish("basket/2/status", total)
            b2.wait_for("basket/2/status", total)
        finally:
            svc.close()
    finally:
        b2.close()


def test_service_shared_subscription(broker: ProvisionedDir) -> None:
    svc = service(broker)
    b3 = basket(broker, 3)
    try:
        assert svc.subscribe("$share/pricing/basket/+/update",
                             "$share/pricing/basket/+/availability") == [1, 1]
        b3.publish("basket/3/update", b'{"id":3,"list":{"EGG":1}}')
        b3.publish("basket/3/availability", b"online")
        svc.wait_for("basket/3/update", b'{"id":3,"list":{"EGG":1}}')
        svc.wait_for("basket/3/availability", b"online")
    finally:
        svc.close()
        b3.close()


def test_service_cannot_forge_updates_or_read_statuses(broker: ProvisionedDir) -> None:
    forger = service(broker)
    watcher = service(broker)
    b3 = basket(broker, 3)
    try:
        assert watcher.subscribe("basket/+/update") == [1]
        forger.subscribe("basket/+/status")
        forger.publish("basket/3/update", b'{"id":3,"list":{"FREE":99}}')
        watcher.publish("basket/3/status", b"start")
        b3.publish("basket/3/update", b'{"id":3,"list":{}}')
        watcher.wait_for("basket/3/update", b'{"id":3,"list":{}}')
        assert b'{"id":3,"list":{"FREE":99}}' not in [p for _, p, _ in watcher.messages]
        forger.publish("basket/3/status", b"end")  # allowed, but the service may not read it
        b3.publish("basket/3/update", b'{"id":3,"list":{"X":1}}')
        watcher.wait_for("basket/3/update", b'{"id":3,"list":{"X":1}}')
        assert forger.topics() == []
    finally:
        forger.close()
        watcher.close()
        b3.close()


def test_tls_with_ca_verification(broker: ProvisionedDir) -> None:
    env = broker.env(1)
    assert env["MQTT_TLS"] == "1" and env["MQTT_PORT"] == str(broker.tls_port)
    assert env["MQTT_HOST"] == "localhost"
    b1 = Client(int(env["MQTT_PORT"]), env["MQTT_USER"], env["MQTT_PASSWORD"],
                cafile=env["MQTT_CAFILE"], host=env["MQTT_HOST"])
    senv = broker.env()
    svc = Client(int(senv["MQTT_PORT"]), senv["MQTT_USER"], senv["MQTT_PASSWORD"],
                 cafile=senv["MQTT_CAFILE"], host="127.0.0.1")  # the second name in the cert
    try:
        assert svc.subscribe("basket/+/update") == [1]
        b1.publish("basket/1/update", b'{"id":1,"list":{"TLS":1}}')
        svc.wait_for("basket/1/update", b'{"id":1,"list":{"TLS":1}}')
    finally:
        b1.close()
        svc.close()
    refused(broker.tls_port or 0, "basket1", "wrong", cafile=env["MQTT_CAFILE"], host="localhost")


@pytest.fixture(scope="module")
def other() -> Iterator[ProvisionedDir]:
    """A second broker with its own CA and a certificate for another host name."""
    b = ProvisionedDir("--baskets", "1", "--host", "mqtt.invalid").start()
    yield b
    b.close()


def test_tls_wrong_ca_refused(broker: ProvisionedDir, other: ProvisionedDir) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(broker.tls_port or 0, "basket1", broker.password(1),
               cafile=other.dir / "ca.crt", host="localhost")


def test_tls_wrong_host_name_refused(other: ProvisionedDir) -> None:
    env = other.env(1)
    assert env["MQTT_HOST"] == "mqtt.invalid"
    with pytest.raises(ssl.SSLCertVerificationError, match="(?i)hostname|IP address mismatch"):
        Client(other.tls_port or 0, "basket1", env["MQTT_PASSWORD"],
               cafile=env["MQTT_CAFILE"], host="127.0.0.1")


def test_plain_listener_does_not_speak_tls(broker: ProvisionedDir) -> None:
    with pytest.raises((ssl.SSLError, OSError)):
        Client(broker.port, "basket1", broker.password(1), cafile=broker.dir / "ca.crt",
               host="localhost")


def test_reprovision_keeps_passwords_adds_baskets_and_rotates() -> None:
    b = ProvisionedDir("--baskets", "1-2").start()
    try:
        old = {n: b.password(n) for n in (1, 2)}
        old_service = b.password()
        b1 = basket(b, 1)
        b1.publish("basket/1/availability", b"online", retain=True)
        b1.close()
        b.stop()
        assert (b.dir / "data").is_dir()

        # No --port/--tls this time: the settings of the first run are kept.
        res = provision(b.dir, "--baskets", "3,5-6", "--rotate", "2")
        assert {n: b.password(n) for n in (1,)} == {1: old[1]}
        assert b.password(2) != old[2]
        assert b.password() == old_service
        assert b.env(5)["MQTT_PORT"] == str(b.tls_port)
        assert old[2] not in res.stdout + res.stderr and b.password(2) not in res.stdout

        b.start()
        basket(b, 1).close()
        basket(b, 5).close()
        refused(b.port, "basket2", old[2])
        basket(b, 2).close()
        svc = service(b)
        try:
            # Persistence: the retained message outlived the restart (data folder writable).
            svc.subscribe("basket/+/availability")
            svc.wait_for("basket/1/availability", b"online")
        finally:
            svc.close()

        # Rotation on a running broker: SIGHUP (systemctl reload) applies it, and a client
        # still connected with the old password (a stolen basket) is thrown out.
        before = b.password(6)
        stolen = basket(b, 6)
        kicked = threading.Event()
        stolen.c.on_disconnect = lambda *a: kicked.set()
        provision(b.dir, "--rotate", "6")
        b.reload()
        assert kicked.wait(5), "the old session survived the rotation"
        stolen.close()
        refused(b.port, "basket6", before)
        basket(b, 6).close()
        basket(b, 1).close()
    finally:
        b.close()


def test_python_hashes_accepted_by_mosquitto() -> None:
    """The fallback for hosts without mosquitto_passwd writes hashes Mosquitto 2 accepts."""
    b = ProvisionedDir("--baskets", "1", "--no-mosquitto-passwd", tls=False)
    try:
        assert "hashlib" in b.result.stdout
        assert all(":$7$101$" in line for line in (b.dir / "passwd").read_text().splitlines())
        b.start()
        basket(b, 1).close()
        service(b).close()
        refused(b.port, "basket1", b.password(1) + "x")
    finally:
        b.close()
