"""TLS to a broker provisioned by tools/provision.py --tls: the controller verifies the broker's
certificate and host name on both interpreters; a wrong CA or name fails clearly and retries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.controller_proc import Controller
from tests.support.peer import Peer
from tests.support.provisioned import ProvisionedDir


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[ProvisionedDir]:
    b = ProvisionedDir("--baskets", "1", "--run-as-user", "root").start()
    yield b
    b.close()


@pytest.fixture(scope="module")
def other_ca() -> Iterator[ProvisionedDir]:
    """Another provisioned folder: its own CA, a certificate for another host name."""
    b = ProvisionedDir("--baskets", "1", "--host", "mqtt.invalid", "--run-as-user", "root")
    b.start()
    yield b
    b.close()


def basket_env(b: ProvisionedDir, **over: str) -> dict[str, str]:
    env = b.env(1)
    assert env["MQTT_TLS"] == "1"
    env.update(over)
    return env


def test_session_over_tls(interp: str, tls_broker: ProvisionedDir) -> None:
    svc = tls_broker.env()
    peer = Peer(tls_broker.port, svc["MQTT_USER"], svc["MQTT_PASSWORD"])  # plain, on loopback
    peer.subscribe("basket/1/update")
    # basket1's own client id (basket-1, in its .env): the broker refuses any other.
    c = Controller(interp, 0, **basket_env(tls_broker))
    try:
        c.start()
        assert "(TLS)" in c.output()
        peer.publish("basket/1/status", b"start")
        c.wait_log("session started")
        c.items("MLON")
        peer.wait_payload("basket/1/update", b'{"id":1,"list":{"MLON":1}}')
        peer.publish("basket/1/status", b"end")
        c.wait_log("session ended")
    finally:
        c.close()
        peer.close()


@pytest.mark.parametrize("case", ["wrong CA", "wrong host name"])
def test_tls_verification_failures(interp: str, tls_broker: ProvisionedDir,
                                   other_ca: ProvisionedDir, case: str) -> None:
    if case == "wrong CA":
        env = basket_env(tls_broker, MQTT_CAFILE=str(other_ca.dir / "ca.crt"))
    else:  # the right CA, but its certificate names mqtt.invalid, not 127.0.0.1
        env = basket_env(other_ca, MQTT_HOST="127.0.0.1")
    c = Controller(interp, 0, **env)
    try:
        c.start(wait_connected=False)
        out = c.wait_log("connect attempt 2", timeout=20)
        assert "connected to" not in out
        assert "Traceback" not in out
        assert env["MQTT_PASSWORD"] not in out
        line = [ln for ln in out.splitlines() if "connect attempt 1" in ln][0]
        assert "TLS" in line or "certificate" in line.lower(), line
    finally:
        c.close()


def test_wrong_password_against_the_provisioned_broker(interp: str,
                                                       tls_broker: ProvisionedDir) -> None:
    env = basket_env(tls_broker, MQTT_PASSWORD="wrong-0c7f1e")
    c = Controller(interp, 0, **env)
    try:
        c.start(wait_connected=False)
        out = c.wait_log("connect attempt 2", timeout=20)
        assert "not authorized (check MQTT_USER, MQTT_PASSWORD and MQTT_CLIENT_ID)" in out, out
        assert "wrong-0c7f1e" not in out and "Traceback" not in out
    finally:
        c.close()
