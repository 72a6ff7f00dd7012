"""Fixtures of the controller's integration tests: a real Mosquitto per test (password file,
per-basket ACL), a paho peer playing the backend, and the controller under each interpreter."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.broker import Broker
from tests.support.peer import Peer
from tests.support.process import ControllerProc

ACL = """\
user basket1
topic write basket/1/update
topic write basket/1/availability
topic read basket/1/status
topic read basket/1/config
topic write basket/1/health

user basket2
topic write basket/2/update
topic write basket/2/availability
topic read basket/2/status
topic read basket/2/config
topic write basket/2/health

user service
topic read basket/+/update
topic read basket/+/availability
topic write basket/+/status
topic write basket/+/config
topic read basket/+/health
"""


@pytest.fixture(params=["cpython", "micropython"])
def interp(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker.with_acl(acl=ACL).start()
    yield b
    b.close()


@pytest.fixture
def backend(broker: Broker) -> Iterator[Peer]:
    """The service's side of the contract: sees updates and availability, sends commands."""
    p = Peer(broker.port, "service", "service-pw")
    p.subscribe("basket/+/update")
    p.subscribe("basket/+/availability")
    yield p
    p.close()


@pytest.fixture
def controller(interp: str, broker: Broker) -> Iterator[Callable[..., ControllerProc]]:
    made: list[ControllerProc] = []

    def make(**env: str) -> ControllerProc:
        c = ControllerProc(interp, broker.port, **env)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
