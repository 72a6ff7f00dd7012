"""TLS to a broker provisioned by tools/provision.py --tls: the controller verifies the broker's
certificate and host name on both interpreters; a wrong CA or name fails clearly and retries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.broker import Broker
from tests.support.peer import Peer
from tests.support.process import ControllerProc


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[Broker]:
    b = Broker.provisioned("--baskets", "1", "--run-as-user", "root").start()
    yield b
    b.close()


@pytest.fixture(scope="module")
def other_ca() -> Iterator[Broker]:
    """Another provisioned folder: its own CA, a certificate for another host name."""
    b = Broker.provisioned("--baskets", "1", "--host", "mqtt.invalid", "--run-as-user", "root")
    b.start()
    yield b
    b.close()


def basket_env(b: Broker, **over: str) -> dict[str, str]:
    env = b.env_file(1)
    assert env["MQTT_TLS"] == "1"
    env.update(over)
    return env


def until_second_attempt(interp: str, env: dict[str, str]) -> str:
    """The controller's output once it tries to connect a second time (the first failed)."""
    c = ControllerProc(interp, 0, **env)
    try:
        c.start(wait_connected=False)
        c.wait_log("connect attempt 2", timeout=20)
        return c.output()
    finally:
        c.close()


def test_session_over_tls(interp: str, tls_broker: Broker) -> None:
    svc = tls_broker.env_file()
    peer = Peer(tls_broker.port, svc["MQTT_USER"], svc["MQTT_PASSWORD"])  # plain, on loopback
    peer.subscribe("basket/1/update")
    # basket1's own client id (basket-1, in its .env): the broker refuses any other.
    c = ControllerProc(interp, 0, **basket_env(tls_broker))
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
def test_tls_verification_failures(interp: str, tls_broker: Broker,
                                   other_ca: Broker, case: str) -> None:
    if case == "wrong CA":
        env = basket_env(tls_broker, MQTT_CAFILE=str(other_ca.dir / "ca.crt"))
    else:  # the right CA, but its certificate names mqtt.invalid, not 127.0.0.1
        env = basket_env(other_ca, MQTT_HOST="127.0.0.1")
    out = until_second_attempt(interp, env)
    assert "connected to" not in out
    assert "Traceback" not in out
    assert env["MQTT_PASSWORD"] not in out
    line = [ln for ln in out.splitlines() if "connect attempt 1" in ln][0]
    assert "TLS" in line or "certificate" in line.lower(), line


def test_wrong_password_against_the_provisioned_broker(interp: str,
                                                       tls_broker: Broker) -> None:
    env = basket_env(tls_broker, MQTT_PASSWORD="wrong-0c7f1e")
    out = until_second_attempt(interp, env)
    assert "not authorized (check MQTT_USER, MQTT_PASSWORD and MQTT_CLIENT_ID)" in out, out
    assert "wrong-0c7f1e" not in out and "Traceback" not in out
