"""Fixtures of the service tests: a real Mosquitto per test, a database (SQLite file or a
fresh database in one throwaway PostgreSQL cluster per run), fake baskets."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from basket_service import config
from basket_service.db import Database, open_db
from tests.support.broker import Broker
from tests.support.fake_basket import FakeBasket
from tests.support.postgres import Postgres, unavailable_reason
from tests.support.service_proc import CATALOG, ServiceProc, service_env

_db_names = itertools.count(1)


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker.with_acl(users={"basket1": "basket1-pw", "basket2": "basket2-pw",
                         "basket3": "basket3-pw", "basket4": "basket4-pw",
                         "service": "service-pw"}).start()
    yield b
    b.close()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Postgres]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    pg = Postgres().start()
    yield pg
    pg.close()


@pytest.fixture
def pg_db(pg_cluster: Postgres) -> dict[str, str]:
    return {"DATABASE_URL": pg_cluster.create_db("basket_t%d" % next(_db_names))}


@pytest.fixture
def sqlite_db(tmp_path: Path) -> dict[str, str]:
    return {"BASKET_DB": str(tmp_path / "basket.db")}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite":
        return {"BASKET_DB": str(tmp_path / "basket.db")}
    return dict(request.getfixturevalue("pg_db"))


@pytest.fixture
def env(broker: Broker, sqlite_db: dict[str, str]) -> dict[str, str]:
    """The service's settings for the test broker and a fresh SQLite file."""
    return service_env(broker.port, sqlite_db)


@pytest.fixture
def db(env: dict[str, str]) -> Iterator[Database]:
    """That database, open (migrated)."""
    d = open_db(config.load(env))
    yield d
    d.close()


@pytest.fixture
def baskets(broker: Broker) -> Iterator[Callable[[int], FakeBasket]]:
    made: list[FakeBasket] = []

    def make(n: int) -> FakeBasket:
        b = FakeBasket(broker.port, n)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def services() -> Iterator[Callable[..., ServiceProc]]:
    made: list[ServiceProc] = []

    def make(env: dict[str, str], *args: str, catalog: Path = CATALOG) -> ServiceProc:
        s = ServiceProc(env, *args, catalog=catalog)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
