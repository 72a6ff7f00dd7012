"""The shopper's flow inside the service (basket_service/shop.py), against a real Mosquitto and
a real SQLite file, with a fake basket publishing what a basket publishes: the sweep's PINs
and their rotation after every kind of session end, the abandoned session, the counter's code
refused after a cart change, a declined payment, refusals of a busy or offline basket, the
labels, the settings, and the dashboard token not asked of /shop/ (but of /api/payments)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import pytest

from basket_service import catalog, config, contract, pairing, payments, store
from basket_service.config import ConfigError
from basket_service.db import Database, open_db
from basket_service.shop import Refusal, Rules, Shop, abandoned, idle_cutoff
from basket_service.web.access import Access
from basket_service.web.server import Dashboard
from tests.support.fake_basket import FakeBasket
from tests.support.service_proc import CATALOG, cli, service_env

TOKEN = "s3cret-token-for-tests-0123456789"


def make_shop(env: dict[str, str], provider: str = "test", idle_s: float = 1800.0,
              **kw: object) -> Shop:
    settings = config.load(env)
    prov = payments.provider(provider, time.time)
    for k, v in kw.items():
        setattr(prov, k, v)
    return Shop(settings, prov, Rules(idle_s=idle_s))


def pins(basket: FakeBasket) -> list[dict[str, object]]:
    out = []
    for p in basket.statuses():
        if p.startswith(b"{") and json.loads(p).get("msg") == "pin":
            out.append(json.loads(p)["payload"])
    return out


def sweep_until(shop: Shop, db: Database, basket: FakeBasket,
                test: Callable[[list[dict[str, object]]], bool]) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while True:
        shop.sweep(db)
        got = pins(basket)
        if test(got):
            return got
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


def online(db: Database, b: FakeBasket) -> None:
    b.online()
    store.set_availability(db, b.n, True)


def cart(db: Database, b: FakeBasket, items: dict[str, int]) -> None:
    """The basket publishes its cart (retained, so a checkout can confirm it) and the service
    applies it (what `serve` does on receipt)."""
    payload = b.send(items)
    with db.read() as t:
        products = store.read_products(t)
    store.apply_update(db, contract.parse_update(b.n, payload), products, via="test")


def paired(shop: Shop, db: Database, b: FakeBasket) -> tuple[str, str]:
    pin = str(sweep_until(shop, db, b, lambda got: bool(got))[-1]["pin"])
    return pin, shop.pair(b.n, pin)


@pytest.fixture
def basket(broker, db) -> FakeBasket:
    store.load_products(db, catalog.load(CATALOG))
    b = FakeBasket(broker.port, 1)
    online(db, b)
    return b


def test_pin_sent_once_again_after_a_restart_and_rotated_after_staff_end(env, db, basket):
    shop = make_shop(env)
    first = sweep_until(shop, db, basket, lambda got: len(got) == 1)[0]
    assert re.fullmatch(r"[0-9]{6}", str(first["pin"])) and first["basketid"] == 1
    shop.sweep(db)
    assert len(pins(basket)) == 1  # nothing changed: nothing sent again
    # The basket came back online (a restart): the same PIN again.
    basket.offline()
    store.set_availability(db, 1, False)
    shop.sweep(db)
    online(db, basket)
    again = sweep_until(shop, db, basket, lambda got: len(got) == 2)[1]
    assert again == first
    # A session staff start and end (no phone) still changes the PIN afterwards.
    store.start_session(db, 1)
    shop.sweep(db)
    with pytest.raises(Refusal) as e:
        shop.pair(1, first["pin"])
    assert e.value.reason == "busy"
    store.end_session(db, 1)
    after = sweep_until(shop, db, basket, lambda got: len(got) == 3)[2]
    assert after["pin"] != first["pin"]


def test_an_empty_session_left_alone_ends_as_abandoned(env, db, basket):
    shop = make_shop(env, idle_s=0.5)
    pin, token = paired(shop, db, basket)
    cart(db, basket, {})
    time.sleep(0.7)
    sweep_until(shop, db, basket, lambda got: len(got) >= 2)
    assert not store.held(db, 1).in_use
    with db.read() as t:
        assert t.one("SELECT outcome FROM sessions ORDER BY id DESC LIMIT 1") == ("abandoned",)
    assert b"end" in basket.statuses()
    assert pins(basket)[-1]["pin"] != pin
    assert shop.view(db, 1, token)["ended"] == {"outcome": "abandoned", "receipt": None}


def test_a_cart_with_goods_is_not_ended_but_alerts_staff(env, db, basket):
    shop = make_shop(env, idle_s=0.5)
    paired(shop, db, basket)
    cart(db, basket, {"MLON": 1})
    time.sleep(0.7)
    shop.sweep(db)
    assert store.held(db, 1).in_use
    doc = store.basket_doc(db, 1)
    assert doc is not None
    assert abandoned(doc, idle_cutoff(0.5))
    assert not abandoned(doc, idle_cutoff(3600))
    assert not abandoned({**doc, "items": 0}, idle_cutoff(0.5))


def test_counter_code_refused_after_the_cart_changed(env, db, basket):
    shop = make_shop(env, "counter")
    _, token = paired(shop, db, basket)
    cart(db, basket, {"MLON": 1})
    first = shop.checkout(1, token)["payment"]
    assert first["status"] == "pending" and first["code"]
    assert [p["code"] for p in shop.pending()] == [first["code"]]
    cart(db, basket, {"MLON": 2})
    with pytest.raises(store.SessionError, match="changed since it was shown"):
        shop.confirm(first["code"])
    assert store.receipts(db) == [] and shop.pending() == []
    second = shop.checkout(1, token)["payment"]
    assert second["code"] != first["code"] and second["total"] == 2 * first["total"]
    stock0 = store.stock_levels(db, below=10**9)
    receipt = shop.confirm(second["code"].lower())
    assert receipt["total"] == second["total"] and receipt["payment_id"] == second["payment"]
    assert shop.confirm(second["code"]) == receipt  # confirming twice: the same receipt
    moved = {r["code"]: r for r in store.stock_levels(db, below=10**9)}
    before = {r["code"]: r for r in stock0}
    assert moved["MLON"]["stock"] == before["MLON"]["stock"] - 2
    assert moved["MLON"]["sales"] == before["MLON"]["sales"] + 2
    with pytest.raises(payments.UnknownPayment):
        shop.confirm("QQQQQQ")


def test_a_declined_payment_bills_nothing_and_keeps_the_session(env, db, basket):
    shop = make_shop(env, "test", outcome="decline")
    _, token = paired(shop, db, basket)
    cart(db, basket, {"MLON": 1})
    with pytest.raises(Refusal) as e:
        shop.checkout(1, token)
    assert e.value.reason == "declined" and e.value.status == 402
    assert store.receipts(db) == [] and store.held(db, 1).in_use
    shop.provider.outcome = "approve"  # type: ignore[attr-defined]
    assert shop.checkout(1, token)["receipt"]["total"] > 0


def test_empty_cart_cannot_be_checked_out_but_can_be_cancelled(env, db, basket):
    shop = make_shop(env)
    _, token = paired(shop, db, basket)
    cart(db, basket, {})
    with pytest.raises(Refusal) as e:
        shop.checkout(1, token)
    assert e.value.reason == "empty_cart"
    with pytest.raises(pairing.NotPaired):
        shop.cancel(1, "another phone's token")
    assert shop.cancel(1, token)["state"] == "idle"
    assert not store.held(db, 1).in_use and b"end" in basket.statuses()
    assert shop.view(db, 1, token)["ended"]["outcome"] == "cancelled"


def test_an_offline_basket_cannot_be_paired(env, db, basket):
    shop = make_shop(env)
    pin = str(sweep_until(shop, db, basket, lambda got: bool(got))[-1]["pin"])
    store.set_availability(db, 1, False)
    with pytest.raises(Refusal) as e:
        shop.pair(1, pin)
    assert e.value.reason == "offline" and not store.held(db, 1).in_use


def test_shopper_routes_need_no_dashboard_token_but_staff_routes_do(env, db, basket):
    d = Dashboard(config.load(env), Access("127.0.0.1", 0, TOKEN)).start()
    try:
        base = d.access.url.rstrip("/")
        assert httpx.get(base + "/shop/1").status_code == 200
        state = httpx.get(base + "/shop/1/api/state").json()
        assert state["paired"] is False and "lines" not in state
        assert httpx.get(base + "/api/payments").status_code == 401
        assert httpx.post(base + "/api/payments/confirm", json={"code": "ACDEFG"}).status_code \
            == 401
        ok = httpx.get(base + "/api/payments", headers={"Authorization": "Bearer " + TOKEN})
        assert ok.status_code == 200 and ok.json() == []
        # A cross-site form post to the shopper's API is refused like any other.
        r = httpx.post(base + "/shop/1/api/pair", json={"pin": "123456"},
                       headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        r = httpx.post(base + "/shop/1/api/pair", json={"pin": "x" * 100})
        assert r.status_code == 422  # over the field's limit: never reaches the pairing
    finally:
        d.stop()


def test_labels_page(env, db, tmp_path: Path):
    out = tmp_path / "labels.html"
    r = cli(env, "labels", "--baskets", "1-3", "--url", "https://shop.example.com/",
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text(encoding="utf-8")
    assert page.count("<svg") == 3
    for n in (1, 2, 3):
        assert "https://shop.example.com/shop/%d<" % n in page
    r = cli({k: v for k, v in env.items() if k != "SHOP_URL"}, "labels", "--baskets", "1",
            "--out", str(out))
    assert r.returncode == 2 and "--url URL or SHOP_URL" in r.stderr
    r = cli(env, "labels", "--baskets", "1", "--url", "ftp://x", "--out", str(out))
    assert r.returncode == 2 and "SHOP_URL must be" in r.stderr


@pytest.mark.parametrize("key,value,message", [
    ("PAYMENT_PROVIDER", "cash", "PAYMENT_PROVIDER must be one of counter, test"),
    ("SESSION_IDLE_MIN", "0", "SESSION_IDLE_MIN must be a whole number 1-1440"),
    ("SHOP_URL", "shop.example.com", "SHOP_URL must be a base URL"),
])
def test_settings_are_checked(key, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.load({key: value})
    assert config.load({}).payment_provider == "counter"
    assert config.load({}).session_idle_min == 30


def test_the_whole_flow_on_both_databases(broker, any_db):
    """Pairing, the sweep and a checkout on SQLite and on PostgreSQL (row locks there)."""
    env = service_env(broker.port, any_db)
    d = open_db(config.load(env))
    try:
        store.load_products(d, catalog.load(CATALOG))
        b = FakeBasket(broker.port, 1)
        online(d, b)
        shop = make_shop(env)
        pin, token = paired(shop, d, b)
        cart(d, b, {"MLON": 2})
        receipt = shop.checkout(1, token)["receipt"]
        assert receipt["total"] == 2 * 13900
        with pytest.raises(pairing.NotPaired):
            shop.checkout(1, token)
        after = sweep_until(shop, d, b, lambda got: len(got) >= 2 and got[-1]["pin"] != pin)
        assert after[-1]["pin"] != pin
        assert shop.view(d, 1, token)["ended"] == {"outcome": "paid", "receipt": receipt["key"]}
    finally:
        d.close()
