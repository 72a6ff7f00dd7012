"""The dashboard's JSON API and pages through FastAPI's test client (a real Mosquitto where an
operation publishes), its access rules, and the live feed through a real uvicorn server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from basket_service import catalog, config, contract, store
from basket_service.config import ConfigError
from basket_service.db import Database, open_db
from basket_service.web.access import TOKEN_ENV, Access, access_from_env
from basket_service.web.routes import create_app
from basket_service.web.schemas import day_bounds
from basket_service.web.server import Dashboard
from tests.support.broker import free_port
from tests.support.fake_basket import FakeBasket
from tests.support.service_proc import cli

CATALOG = """code,name,name_en,price,discount_percent
MLON,성주 참외 3~8입 봉,Korean melons,13900,0
APPL,사과 1.5kg,Apples,26900,15
"""
APPL = 26900 - 26900 * 15 // 100  # 22865: the discount rounds down (rounding.unit_price)
TOKEN = "s3cret-token-for-tests-0123456789"
LOCAL = "http://127.0.0.1:8080"


def settings_for(env: dict[str, str]) -> config.Settings:
    return config.load(env)


@pytest.fixture
def db(env, tmp_path: Path) -> Iterator[Database]:
    d = open_db(settings_for(env))
    path = tmp_path / "catalog.csv"
    path.write_text(CATALOG, encoding="utf-8")
    store.load_products(d, catalog.load(path))
    yield d
    d.close()


def put_cart(d: Database, basket: int, cart: dict[str, int]) -> None:
    with d.tx() as t:
        products = store.read_products(t)
    store.apply_update(d, contract.parse_update(basket, json.dumps(
        {"id": basket, "list": cart}).encode()), products, via="live")


@pytest.fixture
def client(env, db) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(env)), base_url=LOCAL) as c:
        yield c


def test_dashboard_api_reads(client, db):
    assert client.get("/api/baskets").json() == []
    store.set_availability(db, 2, False)
    store.set_availability(db, 1, True)
    put_cart(db, 1, {"MLON": 2, "APPL": 1, "NOPE": 3})
    r = client.get("/api/baskets")
    assert r.status_code == 200
    # UTF-8 on the wire, not \\u escapes.
    assert "성주 참외 3~8입 봉".encode() in r.content
    b1, b2 = r.json()
    assert b1["basket"] == 1 and b1["online"] is True and b1["state"] == "idle"
    assert [(ln["code"], ln["name"], ln["count"], ln["unit_price"], ln["amount"], ln["known"])
            for ln in b1["lines"]] == [
        ("APPL", "사과 1.5kg", 1, APPL, APPL, True),
        ("MLON", "성주 참외 3~8입 봉", 2, 13900, 27800, True),
        ("NOPE", "", 3, 0, 0, False)]
    assert b1["total"] == 27800 + APPL and b1["items"] == 6 and b1["unknown"] == ["NOPE"]
    # What a shopper's page shows too: the shelf price, the discount, the picture's link.
    assert [(ln["price"], ln["discount_percent"], ln["image_url"]) for ln in b1["lines"]] == [
        (26900, 15, ""), (13900, 0, ""), (0, 0, "")]
    assert b1["changed_at"] == max(b1["cart_updated_at"], b1["availability_at"])
    assert b2 == {**b2, "basket": 2, "online": False, "lines": [], "total": 0}
    assert client.get("/api/baskets/1").json() == b1
    r = client.get("/api/baskets/7")
    assert r.status_code == 404 and "not known" in r.json()["detail"]
    assert client.get("/api/baskets/0").status_code == 422
    assert client.get("/api/baskets/1000000000").status_code == 422


def test_dashboard_pages_and_openapi(client):
    for path, needle in (("/", b'id="board"'), ("/receipts", b'id="summary"')):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert b'<meta charset="utf-8">' in r.content and needle in r.content
    for asset in ("style.css", "live.js", "dashboard.js", "receipts.js"):
        assert client.get("/static/" + asset).status_code == 200, asset
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/baskets", "/api/baskets/{basket}", "/api/receipts", "/api/events", "/api/stock",
              "/api/baskets/{basket}/start", "/api/baskets/{basket}/end",
              "/api/baskets/{basket}/checkout"):
        assert p in paths, p
    assert client.get("/docs").status_code == 200


def test_dashboard_api_operations(client, db, broker, env):
    basket = FakeBasket(broker.port, 1)
    try:
        store.set_availability(db, 1, True)  # the service heard it come online: a store basket
        r = client.post("/api/baskets/1/start")
        assert r.status_code == 200, r.text
        assert r.json() == {"basket": 1, "session": r.json()["session"], "state": "shopping"}
        basket.wait_status(b"start")
        # The command line sees the same session (one implementation behind both).
        assert json.loads(cli(env, "carts", "--json").stdout)["in_use"] is True
        r = client.post("/api/baskets/1/start")
        assert r.status_code == 409 and "in use" in r.json()["detail"]

        put_cart(db, 1, {"MLON": 1, "APPL": 2})
        basket.send({"MLON": 1, "APPL": 2})  # retained: the cart checkout confirms at the broker
        assert client.get("/api/baskets/1").json()["total"] == 13900 + 2 * APPL
        m = basket.mark()
        r = client.post("/api/baskets/1/checkout")
        assert r.status_code == 200, r.text
        rec = r.json()
        assert rec["basket"] == 1 and rec["total"] == 13900 + 2 * APPL
        assert [(ln["name"], ln["count"], ln["amount"]) for ln in rec["lines"]] == [
            ("사과 1.5kg", 2, 2 * APPL), ("성주 참외 3~8입 봉", 1, 13900)]
        basket.wait_status(b"end", start=m)
        assert client.get("/api/baskets/1").json()["state"] == "idle"
        r = client.post("/api/baskets/1/checkout")
        assert r.status_code == 409 and "not in use" in r.json()["detail"]
        r = client.post("/api/baskets/1/end")
        assert r.status_code == 409

        # Cancel: no receipt.
        assert client.post("/api/baskets/1/start").status_code == 200
        m = basket.mark()
        r = client.post("/api/baskets/1/end")
        assert r.status_code == 200 and r.json()["state"] == "idle"
        basket.wait_status(b"end", start=m)

        day = client.get("/api/receipts").json()
        assert day["count"] == 1 and day["total"] == 13900 + 2 * APPL
        assert [x["receipt"] for x in day["receipts"]] == [rec["receipt"]]
        assert day["receipts"][0] == rec
        other = (date.today() - timedelta(days=1)).isoformat()
        assert client.get("/api/receipts", params={"day": other}).json()["count"] == 0
        r = client.get("/api/receipts", params={"day": "yesterday"})
        assert r.status_code == 400 and "day must be a date YYYY-MM-DD" in r.json()["detail"]
    finally:
        basket.close()


def test_dashboard_api_broker_down(env, db):
    down = settings_for({**env, "MQTT_PORT": str(free_port()), "BASKETS": "1-4"})
    with TestClient(create_app(down), base_url=LOCAL) as c:
        r = c.post("/api/baskets/3/start")
        assert r.status_code == 502 and "cannot reach MQTT broker" in r.json()["detail"]
        # The session was rolled back, as on the command line.
        assert c.get("/api/baskets/3").json()["state"] == "idle"
    # A checkout cannot confirm the basket's cart at an unreachable broker: 502, nothing
    # written, the session stays open.
    store.start_session(db, 3)
    put_cart(db, 3, {"MLON": 1})
    with TestClient(create_app(down), base_url=LOCAL) as c:
        r = c.post("/api/baskets/3/checkout")
        assert r.status_code == 502 and "cannot reach MQTT broker" in r.json()["detail"]
        assert c.get("/api/baskets/3").json()["state"] == "shopping"
        assert c.get("/api/receipts").json()["count"] == 0


def test_dashboard_database_down(tmp_path):
    settings = settings_for({"BASKET_DB": str(tmp_path / "no" / "such" / "dir" / "x.db")})
    (tmp_path / "no").write_text("a file where a folder should be")
    with TestClient(create_app(settings), base_url=LOCAL) as c:
        r = c.get("/api/baskets")
        assert r.status_code == 503 and r.json()["detail"].startswith("database unavailable")


def test_dashboard_never_shows_secrets(env, db, client):
    store.set_availability(db, 1, True)
    bodies = [client.get(p).text for p in ("/", "/receipts", "/api/baskets", "/api/receipts",
                                           "/openapi.json", "/static/live.js",
                                           "/static/dashboard.js", "/api/health")]
    for text in bodies:
        assert env["MQTT_PASSWORD"] not in text and "MQTT_USER" not in text
        assert env["BASKET_DB"] not in text


# --- access ---------------------------------------------------------------------------------
def test_dashboard_access_settings():
    assert access_from_env("127.0.0.1", 8080, {}).token is None
    assert access_from_env("localhost", 8080, {}).token is None
    assert access_from_env("::1", 8080, {}).token is None
    with pytest.raises(ConfigError, match="DASHBOARD_TOKEN"):
        access_from_env("0.0.0.0", 8080, {})
    with pytest.raises(ConfigError, match="DASHBOARD_TOKEN"):
        access_from_env("192.0.2.10", 8080, {})
    with pytest.raises(ConfigError, match="at least 16"):
        access_from_env("0.0.0.0", 8080, {"DASHBOARD_TOKEN": "short"})
    a = access_from_env("0.0.0.0", 8080, {"DASHBOARD_TOKEN": TOKEN})
    assert a.token == TOKEN and a.url == "http://0.0.0.0:8080/"


def test_dashboard_token(env, db):
    with TestClient(create_app(settings_for(env), token=TOKEN),
                    base_url="http://shop-pc.example:8080") as c:
        for path in ("/", "/receipts", "/api/baskets", "/openapi.json", "/docs",
                     "/static/live.js", "/api/events", "/api/stock"):
            r = c.get(path)
            assert r.status_code == 401, path
        assert c.get("/api/baskets", headers={"Authorization": "Bearer wrong-token-0123456789"}
                     ).status_code == 401
        assert c.post("/api/baskets/1/start").status_code == 401
        r = c.get("/api/baskets", headers={"Authorization": "Bearer " + TOKEN})
        assert r.status_code == 200
        assert c.get("/?token=nope").status_code == 401
        # ?token= once: a cookie (not the token itself) and the token leaves the address.
        r = c.get("/receipts?day=2024-01-02&token=" + TOKEN, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/receipts?day=2024-01-02"
        cookie = r.headers["set-cookie"]
        assert TOKEN not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert c.get("/api/baskets").status_code == 200  # the client keeps the cookie
        assert c.get("/").status_code == 200


def test_dashboard_loopback_guards(client):
    # DNS rebinding: a foreign Host is refused when no token protects the dashboard.
    assert client.get("/api/baskets", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/api/baskets", headers={"Host": "localhost:8080"}).status_code == 200
    # A cross-site form post is refused; the page's own fetch (same Origin) and curl (none) pass.
    r = client.post("/api/baskets/1/end", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post("/api/baskets/1/end", headers={"Origin": LOCAL})
    assert r.status_code == 409  # allowed through; basket 1 simply has no session


def test_dashboard_cli_refuses_open_bind_without_token(env):
    e = {k: v for k, v in env.items() if k != TOKEN_ENV}
    r = cli(e, "web", "--host", "0.0.0.0", "--port", str(free_port()), timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "DASHBOARD_TOKEN" in r.stderr and "Traceback" not in r.stderr
    r = cli(e, "serve", "--catalog", "data/catalog_sample.csv", "--http", "8080",
            "--http-host", "0.0.0.0", timeout=30)
    assert r.returncode == 2 and "DASHBOARD_TOKEN" in r.stderr, r.stderr
    r = cli(e, "web", "--port", "99999")
    assert r.returncode == 2 and "port must be" in r.stderr


def test_dashboard_cli_port_taken(env, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        r = cli(env, "web", "--port", str(s.getsockname()[1]))
    assert r.returncode == 1 and "cannot listen on 127.0.0.1" in r.stderr, r.stderr


# --- the live feed on a real server ---------------------------------------------------------
class Feed:
    """Reads server-sent events from a real dashboard in a thread."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []
        self.cond = threading.Condition()
        self.client = httpx.Client(timeout=httpx.Timeout(30, read=60))
        self.thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self.thread.start()

    def _read(self, url: str) -> None:
        name = ""
        try:
            with self.client.stream("GET", url) as r:
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        with self.cond:
                            self.events.append((name, json.loads(line[6:])))
                            self.cond.notify_all()
        except httpx.HTTPError:
            pass
        with self.cond:
            self.events.append(("closed", {}))
            self.cond.notify_all()

    def wait(self, pred, timeout: float = 10.0) -> tuple[str, dict[str, object]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev in self.events:
                    if pred(*ev):
                        return ev
                left = deadline - time.monotonic()
                assert left > 0, "no such event in %r" % self.events
                self.cond.wait(left)

    def close(self) -> None:
        self.client.close()


def test_dashboard_live_feed(env, db):
    dash = Dashboard(settings_for(env), Access("127.0.0.1", 0)).start()
    feed = Feed(dash.access.url + "api/events")
    try:
        _, snap = feed.wait(lambda n, d: n == "snapshot")
        assert snap["baskets"] == [] and snap["health"] == {"database": "ok"}
        # A change by another process (here: straight into the database) arrives by itself.
        store.set_availability(db, 4, True)
        feed.wait(lambda n, d: n == "basket" and d["basket"] == 4 and d["online"] is True)
        put_cart(db, 4, {"MLON": 3})
        _, doc = feed.wait(lambda n, d: n == "basket" and d["total"] == 3 * 13900)
        assert doc["lines"][0]["name"] == "성주 참외 3~8입 봉"
        store.start_session(db, 4)
        feed.wait(lambda n, d: n == "basket" and d["state"] == "shopping")
        store.checkout(db, 4)
        feed.wait(lambda n, d: n == "receipt" and d["newest_receipt"] == 1)
        feed.wait(lambda n, d: n == "basket" and d["basket"] == 4 and d["state"] == "idle")
        # A second browser gets the current board as its snapshot.
        feed2 = Feed(dash.access.url + "api/events")
        _, snap2 = feed2.wait(lambda n, d: n == "snapshot")
        assert [b["basket"] for b in snap2["baskets"]] == [4]  # type: ignore[index]
        assert snap2["newest_receipt"] == 1
        feed2.close()
    finally:
        dash.stop()
        feed.close()
    # Stopping the dashboard ends the stream (the browser then shows the lost connection).
    feed.wait(lambda n, d: n == "closed")
    assert dash.stopped.is_set() and not dash.failed.is_set()


def test_dashboard_hub_reports_database_trouble(env, db, tmp_path):
    dash = Dashboard(settings_for(env), Access("127.0.0.1", 0)).start()
    feed = Feed(dash.access.url + "api/events")
    try:
        feed.wait(lambda n, d: n == "snapshot")
        broken = settings_for({"BASKET_DB": str(tmp_path / "file" / "x.db")})
        (tmp_path / "file").write_text("not a folder")
        dash.hub.reader.close()
        dash.hub.reader.settings = broken
        _, h = feed.wait(lambda n, d: n == "health" and d["database"] != "ok")
        assert str(h["database"]).startswith("unreachable: cannot open BASKET_DB")
        dash.hub.reader.settings = settings_for(env)
        feed.wait(lambda n, d: n == "health" and d["database"] == "ok")
    finally:
        dash.stop()
        feed.close()


def test_dashboard_day_bounds_are_local_midnights():
    since, until = day_bounds(date(2024, 3, 9))
    start = datetime.fromisoformat(since)
    assert start.astimezone().date() == date(2024, 3, 9)
    assert start.astimezone().hour == 0 and start.astimezone().minute == 0
    assert datetime.fromisoformat(until).astimezone().date() == date(2024, 3, 10)
    assert since.endswith("+00:00") and len(since) == len("2024-03-09T00:00:00.000+00:00")


def test_dashboard_web_command(env, db):
    """`web` alone, bound to every address with a token: no token, no data; SIGTERM: exit 0."""
    import signal

    from tests.support.service_proc import ROOT

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "basket_service", "web", "--host", "0.0.0.0",
                             "--port", str(port)], cwd=ROOT,
                            env={**env, TOKEN_ENV: TOKEN}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = "http://127.0.0.1:%d/api/baskets" % port
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(url)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout
                time.sleep(0.05)
        assert r.status_code == 401
        store.set_availability(db, 5, True)
        r = httpx.get(url, headers={"Authorization": "Bearer " + TOKEN})
        assert r.status_code == 200 and r.json()[0]["basket"] == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "dashboard on http://0.0.0.0:%d/ (token required" % port in out
    assert TOKEN not in out and "Traceback" not in out


def test_dashboard_api_stock(client, db):
    r = client.get("/api/stock")
    assert r.status_code == 200
    # The catalogue gives no stock: both products at 0, lowest first, then by code.
    assert r.json() == {"below": 5, "count": 2, "products": [
        {"code": "APPL", "name": "사과 1.5kg", "stock": 0, "sales": 0, "category": ""},
        {"code": "MLON", "name": "성주 참외 3~8입 봉", "stock": 0, "sales": 0, "category": ""}]}
    with db.tx() as t:
        t.run("UPDATE products SET stock = -4, sales = 9, category = '과일' WHERE code = 'MLON'")
        t.run("UPDATE products SET stock = 8 WHERE code = 'APPL'")
    assert [(x["code"], x["stock"], x["sales"], x["category"])
            for x in client.get("/api/stock").json()["products"]] == [("MLON", -4, 9, "과일")]
    assert client.get("/api/stock", params={"below": "-5"}).json()["count"] == 0
    body = client.get("/api/stock", params={"below": "8", "limit": "1"}).json()
    assert (body["below"], body["count"], [x["code"] for x in body["products"]]) == \
        (8, 2, ["MLON"])
    for bad in ("x", "1.5", "1000000001", "-1000000001", "99999999999", "1e3", "--1", "²"):
        r = client.get("/api/stock", params={"below": bad})
        assert r.status_code == 400 and "below must be" in r.json()["detail"], bad
    assert client.get("/api/stock", params={"limit": "0"}).status_code == 422
