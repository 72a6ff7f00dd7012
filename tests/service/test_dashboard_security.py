"""The dashboard's hardening (issue 12, point 11), each against the real uvicorn server on a
free loopback port: security headers on every answer, bad `?day=` values, `start` only for
the store's baskets (dashboard and command line), the token redirect staying on the site, and
slow or idle clients unable to pile up connections."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from basket_service import config, store
from basket_service.config import ConfigError
from basket_service.db import Database
from basket_service.web import limits
from basket_service.web.access import Access
from basket_service.web.headers import docs_page
from basket_service.web.server import Dashboard
from tests.support.fake_basket import FakeBasket
from tests.support.service_proc import cli

TOKEN = "s3cret-token-for-tests-0123456789"


def serve(env: dict[str, str], token: str | None = None) -> Dashboard:
    return Dashboard(config.load(env), Access("127.0.0.1", 0, token)).start()


@pytest.fixture
def dash(env, db) -> Iterator[Dashboard]:
    d = serve(env)
    yield d
    d.stop()


def url(d: Dashboard, path: str) -> str:
    return d.access.url.rstrip("/") + path


def raw_request(d: Dashboard, data: bytes, timeout: float = 5.0) -> bytes:
    """Sends bytes as they are and reads until the server closes or answers fully."""
    with socket.create_connection(("127.0.0.1", d.access.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
            head, sep, body = out.partition(b"\r\n\r\n")
            length = [ln for ln in head.lower().split(b"\r\n") if ln.startswith(b"content-length:")]
            if sep and length and len(body) >= int(length[0].split(b":")[1]):
                break
        return out


def raw_headers(answer: bytes) -> dict[str, str]:
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in head)}


def assert_secure(headers: httpx.Headers | dict[str, str], what: str,
                  store_ok: bool = False) -> None:
    assert headers.get("x-frame-options") == "DENY", what
    csp = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, (what, csp)
    assert headers.get("x-content-type-options") == "nosniff", what
    assert headers.get("referrer-policy") == "no-referrer", what
    if not store_ok:
        assert headers.get("cache-control") == "no-store", (what, headers.get("cache-control"))


# --- 1. headers -----------------------------------------------------------------------------
def test_every_answer_carries_the_security_headers(dash, monkeypatch):
    with httpx.Client() as c:
        for path, status in (("/", 200), ("/receipts", 200), ("/static/live.js", 200),
                             ("/static/style.css", 200), ("/docs", 200)):
            r = c.get(url(dash, path))
            assert r.status_code == status, path
            assert_secure(r.headers, path, store_ok=True)
        for path, status in (("/api/baskets", 200), ("/api/receipts", 200), ("/api/stock", 200),
                             ("/api/stock?below=x", 400),
                             ("/openapi.json", 200), ("/api/health", 200),
                             ("/api/baskets/7", 404), ("/api/receipts?day=x", 400),
                             ("/api/baskets/0", 422), ("/nowhere", 404),
                             ("/static/nothing.js", 404)):
            r = c.get(url(dash, path))
            assert r.status_code == status, (path, r.status_code)
            assert_secure(r.headers, path)
        assert c.post(url(dash, "/api/baskets/1/end")).status_code == 409
        r = c.post(url(dash, "/api/baskets/1/end"), headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        assert_secure(r.headers, "403")
        r = c.get(url(dash, "/api/baskets"), headers={"Host": "evil.example"})
        assert r.status_code == 400
        assert_secure(r.headers, "bad Host")
        # The live feed (server-sent events): headers arrive before any event.
        with c.stream("GET", url(dash, "/api/events")) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            assert_secure(r.headers, "events")
        # An unexpected error (a bug): Starlette's outermost layer writes the 500.
        def boom(db: Database) -> object:
            raise RuntimeError("a bug")

        monkeypatch.setattr(store, "board", boom)
        r = c.get(url(dash, "/api/baskets"))
        assert r.status_code == 500
        assert_secure(r.headers, "500")
    # Answers from the connection layer below the app: a malformed request.
    answer = raw_request(dash, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:60]
    assert_secure(raw_headers(answer), "uvicorn 400")


def test_docs_page_allows_exactly_its_inline_script():
    page = docs_page("/openapi.json", "t")
    csp = page.headers["content-security-policy"]
    import base64
    import hashlib

    inline = bytes(page.body).split(b"<script>")[1].split(b"</script>")[0]
    digest = base64.b64encode(hashlib.sha256(inline).digest()).decode()
    assert "'sha256-%s'" % digest in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]


def test_token_answers_carry_the_headers_too(env, db):
    d = serve(env, TOKEN)
    try:
        with httpx.Client() as c:
            r = c.get(url(d, "/api/baskets"))
            assert r.status_code == 401
            assert_secure(r.headers, "401")
            r = c.get(url(d, "/?token=" + TOKEN))
            assert r.status_code == 303
            assert_secure(r.headers, "303")
    finally:
        d.stop()


# --- 2. bad days ----------------------------------------------------------------------------
@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1969-12-31", "2024-02-30",
                                 "2024-13-01", "yesterday", "2024-1-2", "20240102",
                                 "2024-01-02T00:00", "２０２４-01-02", "-1", "9" * 400])
def test_a_bad_day_is_400_with_the_reason(dash, day):
    r = httpx.get(url(dash, "/api/receipts"), params={"day": day})
    assert r.status_code == 400, (day, r.status_code, r.text[:200])
    detail = r.json()["detail"]
    assert detail.startswith("day must be a date YYYY-MM-DD from 1970-01-01 to 9998-12-31")


@pytest.mark.parametrize("day", ["1970-01-01", "9998-12-31", "2024-02-29", ""])
def test_the_first_and_last_days_work(dash, day):
    r = httpx.get(url(dash, "/api/receipts"), params={"day": day})
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 0


# --- 3. only the store's baskets ------------------------------------------------------------
def test_start_refuses_a_basket_the_store_does_not_have(env, db, broker):
    d = serve(env)
    b2 = FakeBasket(broker.port, 2)
    try:
        r = httpx.post(url(d, "/api/baskets/999999999/start"))
        assert r.status_code == 404 and "basket 999999999 is not known" in r.json()["detail"]
        # Refused before anything is written: the number does not appear on the board.
        assert httpx.get(url(d, "/api/baskets")).json() == []
        store.set_availability(db, 2, True)  # basket 2 comes online: now it is the store's
        r = httpx.post(url(d, "/api/baskets/2/start"))
        assert r.status_code == 200, r.text
        b2.wait_status(b"start")
    finally:
        b2.close()
        d.stop()
    # The command line: the same check, exit 1 and one line.
    r = cli(env, "start", "3")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stderr.strip() == ("error: basket 3 is not known: it has never come online "
                                "(set BASKETS to list the store's baskets)")


def test_baskets_setting_is_the_allow_list(env, db, broker):
    listed = {**env, "BASKETS": "1-2, 4"}
    d = serve(listed)
    b4 = FakeBasket(broker.port, 4)
    try:
        # Listed but never seen: allowed (the store says it has it).
        r = httpx.post(url(d, "/api/baskets/4/start"))
        assert r.status_code == 200, r.text
        b4.wait_status(b"start")
        store.set_availability(db, 3, True)  # seen, but not listed: BASKETS decides
        for n in (3, 5, 999999999):
            r = httpx.post(url(d, "/api/baskets/%d/start" % n))
            assert r.status_code == 404, (n, r.text)
            assert r.json()["detail"] == (
                "basket %d is not one of this store's baskets (BASKETS=1-2,4)" % n)
    finally:
        b4.close()
        d.stop()
    r = cli(listed, "start", "3")
    assert r.returncode == 1 and "not one of this store's baskets (BASKETS=1-2,4)" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli({**env, "BASKETS": "1-"}, "start", "1")
    assert r.returncode == 2 and "BASKETS must list basket numbers" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("raw,ranges", [
    ("1-200", ((1, 200),)), ("1-10,20", ((1, 10), (20, 20))), (" 7 ", ((7, 7),)),
    ("5, 3-4 ,1-2", ((1, 5),)), ("1-999999999", ((1, 999999999),))])
def test_baskets_setting_parses(raw, ranges):
    b = config.load({"BASKETS": raw}).baskets
    assert b is not None and b.ranges == ranges
    assert ranges[0][0] in b and ranges[-1][1] in b and 0 not in b
    assert config.load({"BASKETS": ""}).baskets is None and config.load({}).baskets is None


@pytest.mark.parametrize("raw", ["0", "1-", "-3", "a", "5-3", "1-1000000000", "1,,2", "1;2",
                                 "１", "²", "1-2-3"])
def test_bad_baskets_setting_names_the_variable(raw):
    with pytest.raises(ConfigError, match="^BASKETS must list basket numbers"):
        config.load({"BASKETS": raw})


# --- 4. the token redirect stays on the site -------------------------------------------------
@pytest.mark.parametrize("path,expected", [
    ("//evil.example/", "/evil.example/"),
    ("/\\evil.example", "/evil.example"),
    ("/%2F%2Fevil.example/x", "/evil.example/x"),
    ("/%5C%5Cevil.example", "/evil.example"),
    ("/%2F%09%2Fevil.example", "/%09/evil.example"),
    ("/receipts", "/receipts"),
])
def test_token_redirect_goes_only_to_a_path_on_this_site(env, db, path, expected):
    d = serve(env, TOKEN)
    try:
        answer = raw_request(d, b"GET %s?token=%s HTTP/1.1\r\nHost: shop-pc:8080\r\n"
                                b"Connection: close\r\n\r\n" % (path.encode(), TOKEN.encode()))
        assert answer.startswith(b"HTTP/1.1 303 "), answer[:80]
        location = raw_headers(answer)["location"]
        assert location == expected
        # What a browser makes of it: still this site.
        assert httpx.URL("http://shop-pc:8080/").join(location).host == "shop-pc"
    finally:
        d.stop()


# --- 5. slow and idle clients ---------------------------------------------------------------
def open_count(d: Dashboard) -> int:
    """Connections the server holds open: accepted ones, whose header timer is armed. A refused
    one is in the server's set for a moment before it is closed (this thread may look then),
    and closing until its 503 is out; neither counts."""
    conns = list(d.server.server_state.connections)
    return sum(1 for c in conns if getattr(c, "_timer", None) is not None
               and not c.transport.is_closing())  # type: ignore[attr-defined]


def test_slow_clients_cannot_hold_connections(dash):
    """300 clients each send half a request head and then a byte a second (a slowloris):
    past 64 connections they are answered 503 and closed at once, and the 64 are closed once
    their 10 s to send the head are up. Meanwhile, and after, a normal request still works."""
    socks: list[socket.socket] = []
    counted = limits.SlowClientGuard.refused
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", dash.access.port), timeout=5)
            s.sendall(b"GET /api/baskets HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(s)
        t0 = time.monotonic()
        closed: dict[int, float] = {}
        refused = 0
        deadline = t0 + limits.HEADER_TIMEOUT + 5
        while len(closed) < len(socks) and time.monotonic() < deadline:
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                s.settimeout(0.0)
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""
                if data is not None:
                    closed[i] = time.monotonic() - t0
                    refused += data.startswith(b"HTTP/1.1 503 ")
                    continue
                try:
                    s.send(b"X")  # the slowloris trickle: one more byte of a header
                except OSError:
                    closed[i] = time.monotonic() - t0
            assert open_count(dash) <= limits.MAX_CONNECTIONS
            time.sleep(1.0)
        early = sum(1 for t in closed.values() if t < 3)
        print("slow clients: %d answered 503, %d closed within 3 s, the last after %.1f s"
              % (refused, early, max(closed.values(), default=0)))
        assert len(closed) == len(socks), "%d still open" % (len(socks) - len(closed))
        assert refused >= len(socks) - limits.MAX_CONNECTIONS, refused
        assert limits.SlowClientGuard.refused - counted >= refused  # counted (and logged)
        assert early >= len(socks) - limits.MAX_CONNECTIONS, early
        assert max(closed.values()) <= limits.HEADER_TIMEOUT + 2.5, max(closed.values())
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 5
    while open_count(dash) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_count(dash) == 0
    assert httpx.get(url(dash, "/api/baskets")).status_code == 200


def test_an_idle_connection_is_closed_after_the_header_timeout(dash):
    with socket.create_connection(("127.0.0.1", dash.access.port), timeout=30) as s:
        t0 = time.monotonic()
        assert s.recv(100) == b""  # the server closed it without a word
        waited = time.monotonic() - t0
    assert limits.HEADER_TIMEOUT - 0.5 <= waited <= limits.HEADER_TIMEOUT + 2.5, waited


def test_live_feeds_are_bounded_and_outlive_the_header_timeout(dash, monkeypatch):
    monkeypatch.setattr(limits, "HEADER_TIMEOUT", 1.0)
    monkeypatch.setattr(limits.SlowClientGuard, "header_timeout", 1.0)
    feeds: list[socket.socket] = []
    try:
        for _ in range(limits.MAX_FEEDS):
            s = socket.create_connection(("127.0.0.1", dash.access.port), timeout=10)
            s.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
            feeds.append(s)
        r = httpx.get(url(dash, "/api/events"))
        assert r.status_code == 503 and "too many live feeds" in r.json()["detail"]
        assert_secure(r.headers, "feeds 503")
        assert httpx.get(url(dash, "/api/baskets")).status_code == 200  # the API still works
        # A feed is one long answer: the header timeout does not cut it.
        time.sleep(2.0)
        for s in feeds:
            s.settimeout(0.2)
            try:
                assert s.recv(4096) != b""
            except TimeoutError:
                pass  # nothing new on the feed, and still open
        feeds.pop().close()  # one browser tab closes: a new feed may open
        deadline = time.monotonic() + 5
        while True:
            with httpx.stream("GET", url(dash, "/api/events")) as ev:
                if ev.status_code == 200:
                    break
            assert time.monotonic() < deadline, "no feed slot came free"
            time.sleep(0.1)
    finally:
        for s in feeds:
            s.close()


def test_unknown_basket_answer_is_json(env, db):
    d = serve(env)
    try:
        r = httpx.post(url(d, "/api/baskets/12/start"))
        assert r.headers["content-type"] == "application/json"
        assert json.loads(r.text) == {"detail": "basket 12 is not known: it has never come "
                                                "online (set BASKETS to list the store's "
                                                "baskets)"}
    finally:
        d.stop()
