"""Real Mosquitto on the config tools/provision.py generates: identities (dynamic-security
plugin), client-id binding, publish/subscribe ACLs, size limits, TLS, re-runs. The attacker is a
paho client holding basket 1's valid login."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, provision
from tests.support.provisioned import Client, refused


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    # The default --run-as-user: when the tests run as root this checks that Mosquitto, having
    # dropped to the `mosquitto` user, still reads its dynamic-security file, key and data.
    b = Broker.provisioned("--baskets", "1-3", "--service-workers", "2").start()
    yield b
    b.close()


def basket(b: Broker, n: int, **kw: object) -> Client:
    """Basket n's own login, with its own client id `basket-<n>` unless told otherwise."""
    return Client(b.port, "basket%d" % n, b.password(n), **kw)  # type: ignore[arg-type]


def attacker(b: Broker, **kw: object) -> Client:
    """Basket 1's valid login in the wrong hands: any client id it likes."""
    return Client(b.port, "basket1", b.password(1), **kw)  # type: ignore[arg-type]


def service(b: Broker, worker: int = 1, **kw: object) -> Client:
    env = b.env_file(worker=worker)
    return Client(b.port, env["MQTT_USER"], env["MQTT_PASSWORD"], **kw)  # type: ignore[arg-type]


def peak_rss_kb(pid: int) -> int:
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


def test_broker_runs_as_the_configured_user(broker: Broker) -> None:
    if os.geteuid() != 0:
        pytest.skip("Mosquitto only switches users when started as root")
    import pwd

    assert broker.proc is not None
    status = open("/proc/%d/status" % broker.proc.pid).read()
    uid = int(status.split("Uid:")[1].split()[0])
    assert uid == pwd.getpwnam("mosquitto").pw_uid


def test_anonymous_refused(broker: Broker) -> None:
    assert refused(broker.port, None, None).is_failure
    assert refused(broker.tls_port or 0, None, None, cafile=broker.dir / "ca.crt",
                   host="localhost").is_failure


def test_wrong_password_and_unknown_user_refused(broker: Broker) -> None:
    refused(broker.port, "basket1", broker.password(2))
    refused(broker.port, "basket1", "")
    refused(broker.port, "service", broker.password(1))
    refused(broker.port, "basket9", "anything")
    c = basket(broker, 1)  # and the right one is let in
    c.close()


def test_basket_cannot_publish_for_another_basket(broker: Broker) -> None:
    svc = service(broker)
    b1 = basket(broker, 1)
    b2 = basket(broker, 2)
    try:
        assert svc.subscribe("basket/+/update", "basket/+/availability") == [1, 1]
        assert b2.subscribe("basket/2/status") == [1]
        b1.publish("basket/2/update", b'{"id":2,"list":{"FAKE":9}}')
        b1.publish("basket/2/availability", b"offline")
        b1.publish("basket/2/status", b'{"msg":"total","payload":{"basketid":2,"totalprice":1}}')
        b1.publish("basket/2/status", b"end")
        b1.publish("basket/1/update", b'{"id":1,"list":{}}')
        # Same client, same QoS: had the forgeries passed they would have arrived first.
        svc.wait_for("basket/1/update", b'{"id":1,"list":{}}')
        assert [t for t in svc.topics() if t.startswith("basket/2/")] == []
        # The broker queued any delivery before it acknowledged b1's publish, so a status the
        # service sends now arrives after anything forged.
        svc.publish("basket/2/status", b"start")
        b2.wait_for("basket/2/status", b"start")
        assert [p for _, p, _ in b2.messages] == [b"start"]
    finally:
        svc.close()
        b1.close()
        b2.close()


# --- identity: one login, one client id ------------------------------------------------------


def test_basket_login_connects_only_as_its_own_client_id(broker: Broker) -> None:
    ok = attacker(broker)  # basket-1: its own id
    ok.close()
    for cid in ("basket-2", "basket-3", "", "basket-1x", "basket1", "x"):
        reason = refused(broker.port, "basket1", broker.password(1), client_id=cid)
        assert str(reason) == "Not authorized", (cid, reason)


def test_client_id_takeover_refused_session_kept(broker: Broker) -> None:
    """Before: basket 1's login connecting as `basket-2` kicked basket 2 off, and with a clean
    session destroyed its queued `start`."""
    svc = service(broker)
    b2 = basket(broker, 2, clean=False)
    try:
        assert b2.subscribe("basket/2/status") == [1]
        # Connected: the attempt neither kicks basket 2 nor touches its session.
        refused(broker.port, "basket1", broker.password(1), client_id="basket-2")
        refused(broker.port, "basket1", broker.password(1), client_id="basket-2", clean=False)
        assert not b2.disconnected.wait(0.3), "basket 2 was kicked off"
        svc.publish("basket/2/status", b"live")
        b2.wait_for("basket/2/status", b"live")

        # Offline with a queued message: a clean-session takeover would wipe it.
        b2.close()
        svc.publish("basket/2/status", b"start")
        refused(broker.port, "basket1", broker.password(1), client_id="basket-2")
    finally:
        svc.close()
    b2 = basket(broker, 2, clean=False)
    try:
        b2.wait_for("basket/2/status", b"start")  # the session and its queue survived
    finally:
        b2.close()
        basket(broker, 2).close()  # clean: leave no session behind for other tests


def test_basket_cannot_take_the_service_client_id(broker: Broker) -> None:
    """Before: the service's predictable id let a basket kick it 4-5 times in 8 s."""
    env = broker.env_file()
    sid = env["SERVICE_CLIENT_ID"]
    svc = service(broker, client_id=sid, clean=False)
    try:
        assert svc.subscribe("basket/+/update") == [1]
        for cid in (sid, "basket-service-%s" % socket.gethostname()[:40], "basket-cli-0123"):
            assert str(refused(broker.port, "basket1", broker.password(1),
                               client_id=cid)) == "Not authorized"
        assert not svc.disconnected.wait(0.3), "the service was kicked off"
        b1 = basket(broker, 1)
        b1.publish("basket/1/update", b'{"id":1,"list":{"ID":1}}')
        b1.close()
        svc.wait_for("basket/1/update", b'{"id":1,"list":{"ID":1}}')
    finally:
        svc.close()
        service(broker, client_id=sid).close()


def test_service_workers_have_their_own_logins_and_ids(broker: Broker) -> None:
    one, two = broker.env_file(worker=1), broker.env_file(worker=2)
    assert one["MQTT_USER"] == "service" and two["MQTT_USER"] == "service-2"
    assert one["MQTT_PASSWORD"] != two["MQTT_PASSWORD"]
    assert one["SERVICE_CLIENT_ID"] != two["SERVICE_CLIENT_ID"]
    refused(broker.port, "service-2", one["MQTT_PASSWORD"])
    a = service(broker, 1, client_id=one["SERVICE_CLIENT_ID"])
    b = service(broker, 2, client_id=two["SERVICE_CLIENT_ID"])
    # Service logins are not bound to an id: the CLI and the dashboard use random ones.
    cli = service(broker, 1, client_id="basket-cli-5f3a")
    try:
        assert not a.disconnected.wait(0.2) and not b.disconnected.is_set()
        assert b.subscribe("$share/pricing/basket/+/update") == [1]
    finally:
        for c in (a, b, cli):
            c.close()


def test_nobody_can_change_users_or_roles(broker: Broker) -> None:
    """No admin user: the plugin's control topic is refused to baskets and the service alike."""
    command = json.dumps({"commands": [
        {"command": "createClient", "username": "evil", "password": "evil-pw-0123"},
        {"command": "addClientRole", "username": "basket1", "rolename": "service"}]})
    for client in (attacker(broker), service(broker)):
        try:
            assert client.subscribe("$CONTROL/dynamic-security/#", "$SYS/#") == [128, 128]
            client.publish("$CONTROL/dynamic-security/v1", command)
        finally:
            client.close()
    refused(broker.port, "evil", "evil-pw-0123")
    b1 = attacker(broker)
    try:
        assert b1.subscribe("basket/+/update") == [128]  # still not the service's role
    finally:
        b1.close()


# --- subscriptions: a basket reads only its own status ---------------------------------------


def test_basket_may_subscribe_only_its_own_status(broker: Broker) -> None:
    b1 = attacker(broker)
    try:
        forbidden = ["#", "basket/+/status", "basket/2/status", "$share/pricing/basket/+/update",
                     "$share/pricing/basket/+/availability", "$share/pricing/basket/1/status",
                     "basket/1/update", "basket/+/update", "basket/1/#", "basket/1/+", "$SYS/#",
                     "+/1/status", "basket/#"]
        assert b1.subscribe(*forbidden) == [128] * len(forbidden)
        assert b1.subscribe("basket/1/status") == [1]
    finally:
        b1.close()


@pytest.mark.parametrize("shared", [True, False])
def test_shared_subscription_hijack_refused(broker: Broker, shared: bool) -> None:
    """Before: basket 1 subscribed `$share/pricing/basket/+/update` beside the service and took
    half of basket 2's updates, which the broker then dropped."""
    prefix = "$share/pricing/" if shared else ""
    svc = service(broker)
    b1 = attacker(broker)
    b2 = basket(broker, 2)
    try:
        assert svc.subscribe(prefix + "basket/+/update", prefix + "basket/+/availability") == [1, 1]
        assert b1.subscribe("$share/pricing/basket/+/update", "basket/+/update",
                            "$share/pricing/basket/+/availability") == [128, 128, 128]
        sent = [b'{"id":2,"list":{"N":%d}}' % i for i in range(1, 21)]
        for payload in sent:
            b2.publish("basket/2/update", payload)
        svc.wait_for("basket/2/update", sent[-1])
        assert [p for t, p, _ in svc.messages if t == "basket/2/update"] == sent
        assert b1.messages == []
    finally:
        for c in (svc, b1, b2):
            c.close()


def test_service_retained_reads(broker: Broker) -> None:
    """The CLI's and the service's short retained read: one basket's update, or all of them."""
    b3 = basket(broker, 3)
    b3.publish("basket/3/update", b'{"id":3,"list":{"R":1}}', retain=True)
    b3.close()
    for topic in ("basket/3/update", "basket/+/update"):
        svc = service(broker)
        try:
            assert svc.subscribe(topic) == [1]
            svc.wait_for("basket/3/update", b'{"id":3,"list":{"R":1}}')
        finally:
            svc.close()


# --- size limits ---------------------------------------------------------------------------------


def test_oversized_publish_cut_at_its_header(broker: Broker) -> None:
    """Before: a 50 MiB retained update was accepted, stored and delivered on every restart."""
    assert broker.proc is not None
    svc = service(broker)
    b1 = attacker(broker)
    try:
        assert svc.subscribe("basket/1/update") == [1]
        b1.publish("basket/1/update", b'{"id":1,"list":{"OK":1}}', retain=True)
        svc.wait_for("basket/1/update", b'{"id":1,"list":{"OK":1}}')
        before = peak_rss_kb(broker.proc.pid)
        big = b'{"id":1,"list":{"' + b"A" * (16 << 20) + b'":1}}'
        b1.c.publish("basket/1/update", big, qos=1, retain=True)
        assert b1.disconnected.wait(10), "the oversized publisher stayed connected"
        grown = peak_rss_kb(broker.proc.pid) - before
        assert grown < 2048, "the broker's peak RSS grew %d kB" % grown
    finally:
        b1.close()
    time.sleep(0.2)
    try:
        assert all(len(p) < 100 for _, p, _ in svc.messages)
        late = service(broker)
        try:
            late.subscribe("basket/1/update")
            late.wait_for("basket/1/update", b'{"id":1,"list":{"OK":1}}')  # still the old one
        finally:
            late.close()
    finally:
        svc.close()


def test_payload_over_the_contract_limit_dropped(broker: Broker) -> None:
    svc = service(broker)
    b1 = attacker(broker)
    try:
        assert svc.subscribe("basket/1/update") == [1]
        fits = b'{"id":1,"list":{"' + b"B" * (4096 - 22) + b'":1}}'
        assert len(fits) == 4096
        too_big = b'{"id":1,"list":{"' + b"C" * 5000 + b'":1}}'  # fits in a packet
        b1.publish("basket/1/update", too_big, retain=True)  # acknowledged, then dropped
        b1.publish("basket/1/update", fits)
        svc.wait_for("basket/1/update", fits)
        assert [p for _, p, retained in svc.messages if not retained] == [fits]
        assert not b1.disconnected.is_set()
    finally:
        b1.close()
        svc.close()
    late = service(broker)
    try:
        late.subscribe("basket/1/update")
        time.sleep(0.3)
        assert all(len(p) <= 4096 for _, p, _ in late.messages)
    finally:
        late.close()


def test_config_and_health_topics(broker: Broker) -> None:
    """Issue 14: the service writes a basket's config and reads every health; a basket reads
    only its own config (never another's, never a config it wrote) and writes only its own
    health."""
    svc = service(broker)
    b1 = basket(broker, 1)
    b2 = basket(broker, 2)
    try:
        assert b1.subscribe("basket/2/config", "basket/+/config", "basket/1/health",
                            "basket/1/config") == [128, 128, 128, 1]
        assert b2.subscribe("basket/2/config") == [1]
        assert svc.subscribe("basket/+/health", "$share/fleet/basket/+/health") == [1, 1]
        b1.publish("basket/2/config", b'{"rev":9,"set":{"MQTT_HOST":"evil"}}')
        b1.publish("basket/1/config", b'{"rev":9,"set":{"LOG_LEVEL":"debug"}}')
        b1.publish("basket/2/health", b'{"id":2,"forged":true}')
        svc.publish("basket/2/config", b'{"rev":1,"set":{"RFID_RSSI_MIN":-65}}')
        svc.publish("basket/1/config", b'{"rev":1,"set":{"LOG_LEVEL":"info"}}')
        b1.publish("basket/1/health", b'{"id":1}')
        b2.wait_for("basket/2/config", b'{"rev":1,"set":{"RFID_RSSI_MIN":-65}}')
        b1.wait_for("basket/1/config", b'{"rev":1,"set":{"LOG_LEVEL":"info"}}')
        svc.wait_for("basket/1/health", b'{"id":1}')
        assert [p for t, p, _ in b2.messages if t == "basket/2/config"] == [
            b'{"rev":1,"set":{"RFID_RSSI_MIN":-65}}']
        assert [p for t, p, _ in b1.messages] == [b'{"rev":1,"set":{"LOG_LEVEL":"info"}}']
        assert [p for t, p, _ in svc.messages if t == "basket/2/health"] == []
    finally:
        for c in (svc, b1, b2):
            c.close()


def test_ota_topic_only_the_service_writes_it(broker: Broker) -> None:
    """Issue 15: a basket subscribes only its own basket/<n>/ota and never writes any ota
    topic (not even its own: a forged retained push would wait there for its next start); the
    service writes every basket's, and reads none."""
    svc = service(broker)
    b1 = basket(broker, 1)
    b2 = basket(broker, 2)
    try:
        assert b1.subscribe("basket/2/ota", "basket/+/ota", "#", "basket/1/ota") == [128, 128,
                                                                                      128, 1]
        assert b2.subscribe("basket/2/ota") == [1]
        assert svc.subscribe("basket/+/ota") == [128]
        forged = b'{"version":"evil","manifest":"http://evil/m","sha256":"0","sig":"0"}'
        b1.publish("basket/1/ota", forged, retain=True)
        b1.publish("basket/2/ota", forged, retain=True)
        push = b'{"version":"1.2.0","manifest":"http://x/releases/1.2.0/manifest.txt"}'
        svc.publish("basket/2/ota", push, retain=True)
        svc.publish("basket/1/ota", push + b" ", retain=True)
        b2.wait_for("basket/2/ota", push)
        b1.wait_for("basket/1/ota", push + b" ")
        assert [p for t, p, _ in b1.messages] == [push + b" "]
        assert [p for t, p, _ in b2.messages] == [push]
    finally:
        for c in (svc, b1, b2):
            c.close()
    late = basket(broker, 1)  # a restarted basket gets the retained push, never a forged one
    try:
        assert late.subscribe("basket/1/ota") == [1]
        late.wait_for("basket/1/ota", push + b" ")
        time.sleep(0.2)
        assert [p for t, p, _ in late.messages] == [push + b" "]
        assert all(flag for _, _, flag in late.messages)  # retained
    finally:
        late.close()
    cleaner = service(broker)
    try:  # leave nothing retained for the other tests of this module
        cleaner.publish("basket/1/ota", b"", retain=True)
        cleaner.publish("basket/2/ota", b"", retain=True)
    finally:
        cleaner.close()


def test_basket_cannot_read_another_basket_or_fake_its_own_status(
    broker: Broker,
) -> None:
    svc = service(broker)
    b1 = basket(broker, 1)
    try:
        assert b1.subscribe("basket/2/status", "basket/+/status", "#",
                            "basket/1/status") == [128, 128, 128, 1]
        b1.publish("basket/1/status", b'{"msg":"total","payload":{"basketid":1,"totalprice":0}}')
        svc.publish("basket/2/status", b"start")
        svc.publish("basket/1/status", b"end")
        b1.wait_for("basket/1/status", b"end")
        assert set(b1.topics()) == {"basket/1/status"}
        assert {p for _, p, _ in b1.messages} == {b"end"}
    finally:
        svc.close()
        b1.close()


def test_basket_and_service_do_their_jobs(broker: Broker) -> None:
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


def test_service_shared_subscription(broker: Broker) -> None:
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


def test_service_cannot_forge_updates_or_read_statuses(broker: Broker) -> None:
    forger = service(broker)
    watcher = service(broker, worker=2)
    b3 = basket(broker, 3)
    try:
        assert watcher.subscribe("basket/+/update") == [1]
        assert forger.subscribe("basket/+/status", "#") == [128, 128]
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


def test_tls_with_ca_verification(broker: Broker) -> None:
    env = broker.env_file(1)
    assert env["MQTT_TLS"] == "1" and env["MQTT_PORT"] == str(broker.tls_port)
    assert env["MQTT_HOST"] == "localhost"
    b1 = Client(int(env["MQTT_PORT"]), env["MQTT_USER"], env["MQTT_PASSWORD"],
                cafile=env["MQTT_CAFILE"], host=env["MQTT_HOST"])
    senv = broker.env_file()
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
def other() -> Iterator[Broker]:
    """A second broker with its own CA and a certificate for another host name."""
    b = Broker.provisioned("--baskets", "1", "--host", "mqtt.invalid").start()
    yield b
    b.close()


def test_tls_wrong_ca_refused(broker: Broker, other: Broker) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(broker.tls_port or 0, "basket1", broker.password(1),
               cafile=other.dir / "ca.crt", host="localhost")


def test_tls_wrong_host_name_refused(other: Broker) -> None:
    env = other.env_file(1)
    assert env["MQTT_HOST"] == "mqtt.invalid"
    with pytest.raises(ssl.SSLCertVerificationError, match="(?i)hostname|IP address mismatch"):
        Client(other.tls_port or 0, "basket1", env["MQTT_PASSWORD"],
               cafile=env["MQTT_CAFILE"], host="127.0.0.1")


def test_plain_listener_does_not_speak_tls(broker: Broker) -> None:
    with pytest.raises((ssl.SSLError, OSError)):
        Client(broker.port, "basket1", broker.password(1), cafile=broker.dir / "ca.crt",
               host="localhost")


def test_reprovision_keeps_passwords_adds_baskets_and_rotates() -> None:
    b = Broker.provisioned("--baskets", "1-2").start()
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
        assert b.env_file(5)["MQTT_PORT"] == str(b.tls_port)
        assert old[2] not in res.stdout + res.stderr and b.password(2) not in res.stdout
        assert "restart a running broker" in res.stdout

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

        # Rotation on a running broker. SIGHUP does not reload the plugin's file in 2.0.11 (the
        # old password still works after it); a restart does, and a client still connected
        # with the old password (a stolen basket) is thrown out and cannot come back. Basket
        # 5's persistent session and its queued message survive the restart.
        before = b.password(6)
        stolen = basket(b, 6)
        b5 = basket(b, 5, clean=False)
        b5.subscribe("basket/5/status")
        b5.close()
        svc = service(b)
        svc.publish("basket/5/status", b"start")
        svc.close()
        res = provision(b.dir, "--rotate", "6", "--baskets", "7")
        assert "restart a running broker" in res.stdout
        b.reload()
        refused(b.port, "basket7", b.password(7))  # still the old users after SIGHUP
        assert not stolen.disconnected.is_set()
        b.restart()
        basket(b, 7).close()
        assert stolen.disconnected.wait(5), "the old session survived the restart"
        stolen.close()
        refused(b.port, "basket6", before)
        basket(b, 6).close()
        b5 = basket(b, 5, clean=False)
        try:
            b5.wait_for("basket/5/status", b"start")
        finally:
            b5.close()

        # A re-run that changes nothing rewrites the same file and asks for no restart.
        text = (b.dir / "dynamic-security.json").read_text()
        res = provision(b.dir)
        assert (b.dir / "dynamic-security.json").read_text() == text
        assert "restart" not in res.stdout
    finally:
        b.close()


def test_hashes_match_mosquitto_ctrl(tmp_path: Path) -> None:
    """The plugin's password format, checked against the plugin's own tool: our PBKDF2 over
    mosquitto_ctrl's salt gives mosquitto_ctrl's hash (and the broker tests log in with ours)."""
    import shutil

    ctrl = shutil.which("mosquitto_ctrl")
    if ctrl is None:
        pytest.skip("mosquitto_ctrl is not installed")
    import base64

    from tools import provision as prov

    f = tmp_path / "ctrl.json"
    subprocess.run([ctrl, "dynsec", "init", str(f), "admin", "s3cret-pw"], check=True,
                   capture_output=True)
    (entry,) = json.loads(f.read_text())["clients"]
    ours = prov.hash_password("s3cret-pw", base64.b64decode(entry["salt"]))
    assert ours == {k: entry[k] for k in ("password", "salt", "iterations")}


# --- the real service on the provisioned broker ---------------------------------------------


@pytest.mark.parametrize("shared", [False, True])
def test_service_works_on_the_provisioned_broker(broker: Broker, shared: bool,
                                                 tmp_path: Path) -> None:
    """`basket_service serve` with its service.env (TLS, its own login and client id), with and
    without --share-group (two workers, each its own login), and the CLI beside it."""
    from tests.support.service_proc import ServiceProc, cli

    def env(worker: int) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items()
             if not k.startswith(("MQTT_", "SERVICE_", "BASKET")) and k != "DATABASE_URL"}
        e.update(broker.env_file(worker=worker), BASKET_DB=str(tmp_path / "basket.db"),
                 BASKETS="1-3", LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        return e

    workers = [ServiceProc(env(w), *(["--share-group", "pricing"] if shared else []))
               for w in ((1, 2) if shared else (1,))]
    b2 = basket(broker, 2)
    try:
        for w in workers:
            w.start()
        assert b2.subscribe("basket/2/status") == [1]
        res = cli(env(1), "start", "2")
        assert res.returncode == 0, res.stdout + res.stderr
        b2.wait_for("basket/2/status", b"start")
        for n in range(1, 5):
            b2.publish("basket/2/update", b'{"id":2,"list":{"MLON":%d}}' % n, retain=True)
        want = b'"totalprice":%d' % (4 * 13900)
        deadline = time.monotonic() + 15
        while not any(want in p for _, p, _ in b2.messages):
            assert time.monotonic() < deadline, (b2.messages, [w.output()[-4000:] for w in workers])
            time.sleep(0.05)
        for w in workers:
            assert "Not authorized" not in w.output() and "not authorised" not in w.output()
    finally:
        b2.close()
        for w in workers:
            w.stop()
        cli(env(1), "end", "2")
