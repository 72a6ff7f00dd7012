"""The dashboard end to end in headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright; nothing downloads a browser) against a real Mosquitto, the real service with
`--http`, and the real controller reading items from a FIFO. Screenshots go to test-output/."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import free_port
from tests.support.service_proc import ROOT, service_env

CHROMIUM = Path("/usr/bin/chromium")
OUT = ROOT / "test-output"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
CATALOG = """code,name,name_en,price,discount_percent
MLON,성주 참외 3~8입 봉,Korean melons,13900,0
APPL,사과 1.5kg,Apples,26900,15
TMAT,토마토,Tomatoes,6980,33
"""
MLON, APPL, TMAT = 13900, 22865, 4677  # unit prices: the discount rounded down, the price up


def won(n: int) -> str:
    return "{:,}원".format(n)


def need_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = "no /usr/bin/chromium (make test installs it: tools/ensure_packages.sh)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[object]:
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 860}, locale="ko-KR",
            timezone_id="Asia/Seoul")
        try:
            yield new_page(ctx)
        finally:
            ctx.close()


def new_page(ctx: object) -> object:
    """A page of `ctx` (15 s timeouts) whose `js_errors` collects the script errors and
    whatever the page's Content-Security-Policy blocked (that shows on the console)."""
    ctx.set_default_timeout(15000)  # type: ignore[attr-defined]
    page = ctx.new_page()  # type: ignore[attr-defined]
    page.js_errors = []
    page.on("pageerror", lambda e: page.js_errors.append(str(e)))
    page.on("console", lambda m: "Content Security Policy" in m.text
            and page.js_errors.append(m.text))
    return page


class Controller:
    """`python -m mqtt_controller` as basket 1, items from a FIFO."""

    def __init__(self, port: int, tmp: Path) -> None:
        self.fifo = tmp / "items.fifo"
        os.mkfifo(self.fifo)
        self.state_file = tmp / "cart.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "BASKET"))}
        env.update({"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(port), "MQTT_USER": "basket1",
                    "MQTT_PASSWORD": "basket1-pw", "MQTT_TOPIC": "basket/1",
                    "CART_STATE_FILE": str(self.state_file), "ITEM_SOURCE": str(self.fifo),
                    "DISPLAY": "console", "LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1"})
        self.log = tmp / "controller.log"
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "mqtt_controller"], cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        # Opened read-write like the controller does: writing never blocks on a missing reader.
        self.writer = os.open(self.fifo, os.O_RDWR)

    def items(self, *codes: str) -> float:
        os.write(self.writer, "".join(c + "\n" for c in codes).encode())
        return time.monotonic()

    def state(self) -> dict[str, object]:
        return json.loads(self.state_file.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        os.close(self.writer)
        self.logf.close()


@contextlib.contextmanager
def other_site(html: str) -> Iterator[str]:
    """A page on another origin (http://localhost:<another port>/ next to the dashboard's
    http://127.0.0.1:<port>/), served by a plain HTTP server in a thread."""
    body = html.encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://localhost:%d/" % srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def test_dashboard_in_chromium(broker, sqlite_db, services, browser_page, tmp_path):
    from playwright.sync_api import expect

    page = browser_page
    OUT.mkdir(exist_ok=True)
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(CATALOG, encoding="utf-8")
    http = free_port()
    env = service_env(broker.port, sqlite_db)
    svc = services(env, "--http", str(http), catalog=catalog).start()
    svc.wait_line(r"dashboard on http://127\.0\.0\.1:%d/" % http)
    url = "http://127.0.0.1:%d/" % http
    latencies: dict[str, float] = {}

    page.goto(url)
    conn = page.locator("#conn")
    expect(conn).to_have_text("live")
    expect(page.locator("#empty")).to_be_visible()
    # Low stock: the catalogue gives none, so all three start out of stock (0).
    stock_rows = page.locator("#stockrows tr")
    expect(stock_rows).to_have_count(3)
    expect(page.locator("#stockrows tr.out")).to_have_count(3)
    expect(page.locator("#stockhint")).to_contain_text("3 product(s)")

    ctl = Controller(broker.port, tmp_path)
    try:
        # The basket appears and goes online without a reload.
        card = page.locator("#basket-1")
        expect(card).to_have_attribute("data-online", "online")
        expect(card.locator(".pill.avail")).to_have_text("online")
        expect(card).to_have_attribute("data-state", "idle")
        expect(page.locator("#empty")).to_be_hidden()

        card.get_by_role("button", name="Start").click()
        expect(card).to_have_attribute("data-state", "shopping")
        expect(card.locator(".pill.state")).to_have_text("shopping")
        expect(card.get_by_role("button", name="Start")).to_be_disabled()
        svc.wait_line(r"basket 1: \w+ cart \{\} -> total 0")  # the controller began its session

        t0 = ctl.items("MLON")
        expect(card.locator(".sum")).to_have_text(won(MLON))
        latencies["first item"] = time.monotonic() - t0
        row = card.locator("tbody tr").first
        expect(row.locator("td")).to_have_text(["성주 참외 3~8입 봉", "1", won(MLON), won(MLON)])

        total = MLON + 2 * APPL + TMAT
        t0 = ctl.items("APPL", "APPL", "TMAT")
        expect(card.locator(".sum")).to_have_text(won(total))
        latencies["three more items"] = time.monotonic() - t0
        rows = card.locator("tbody tr")
        expect(rows).to_have_count(3)
        expect(rows.nth(0).locator("td")).to_have_text(["사과 1.5kg", "2", won(APPL),
                                                         won(2 * APPL)])
        expect(rows.nth(2).locator("td")).to_have_text(["토마토", "1", won(TMAT), won(TMAT)])
        expect(card.locator(".meta")).to_contain_text("last change")
        page.screenshot(path=str(OUT / "dashboard-shopping.png"), full_page=True)

        # The server goes away: the page says so, and recovers by itself when it is back.
        assert svc.stop() == 0
        expect(conn).to_have_text(re.compile("connection lost"))
        expect(page.locator("body")).to_have_class(re.compile("stale"))
        page.screenshot(path=str(OUT / "dashboard-connection-lost.png"), full_page=True)
        svc = services(env, "--http", str(http), catalog=catalog).start()
        expect(conn).to_have_text("live", timeout=20000)
        expect(card.locator(".sum")).to_have_text(won(total))
        t0 = ctl.items("-TMAT")
        expect(card.locator(".sum")).to_have_text(won(total - TMAT))
        latencies["item removed after the reconnect"] = time.monotonic() - t0
        total -= TMAT
        t0 = ctl.items("TMAT")
        expect(card.locator(".sum")).to_have_text(won(total + TMAT))
        total += TMAT

        # Checkout asks first; Cancel changes nothing.
        card.get_by_role("button", name="Checkout").click()
        dialog = page.locator("#confirm")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("basket 1")
        expect(dialog).to_contain_text(won(total))
        page.locator("#confirmno").click()
        expect(dialog).to_be_hidden()
        expect(card).to_have_attribute("data-state", "shopping")

        card.get_by_role("button", name="Checkout").click()
        page.locator("#confirmyes").click()
        expect(card).to_have_attribute("data-state", "idle")
        receipt = card.locator(".receipt")
        expect(receipt).to_be_visible()
        expect(receipt.locator(".receipt-total")).to_have_text(won(total))
        expect(receipt.locator("tr")).to_have_count(3)
        expect(receipt).to_contain_text("성주 참외 3~8입 봉")
        expect(page.locator("#today")).to_contain_text(won(total))
        # The checkout sold them anyway: negative stock, marked oversold.
        expect(page.locator("#stockrows tr.negative")).to_have_count(3)
        expect(page.locator('#stockrows tr[data-code="APPL"] td')).to_have_text(
            ["APPL", "사과 1.5kg", "", "-2", "2", "oversold"])
        expect(stock_rows.first).to_have_attribute("data-code", "APPL")  # the lowest first
        page.screenshot(path=str(OUT / "dashboard-receipt.png"), full_page=True)

        # The basket itself ended its session: the controller is idle and ignores items.
        deadline = time.monotonic() + 10
        while ctl.state().get("state") != "idle":
            assert time.monotonic() < deadline, ctl.log.read_text()
            time.sleep(0.05)

        page.goto(url + "receipts")
        expect(page.locator("#count")).to_have_text("1")
        expect(page.locator("#daytotal")).to_have_text(won(total))
        expect(page.locator("#list article")).to_have_count(1)
        expect(page.locator("#list")).to_contain_text("토마토")
        page.screenshot(path=str(OUT / "dashboard-receipts.png"), full_page=True)
    finally:
        ctl.stop()

    assert page.js_errors == []  # type: ignore[attr-defined]
    assert "basket1-pw" not in page.content() and "service-pw" not in page.content()

    # Another origin cannot frame it (one click in a framed page could start a basket):
    # the browser refuses to render the dashboard inside the frame.
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text))
    with other_site('<iframe id="f" src="%s" width="800" height="600"></iframe>' % url) as evil:
        page.goto(evil)
        page.wait_for_timeout(1500)
        assert page.frame_locator("#f").locator("#board").count() == 0
    assert any("frame-ancestors 'none'" in m for m in blocked), blocked
    (OUT / "dashboard-latency.txt").write_text("".join(
        "%s: %.0f ms from the FIFO write to the page\n" % (k, v * 1000)
        for k, v in latencies.items()))
    print("latency:", {k: round(v * 1000) for k, v in latencies.items()})
    assert svc.stop() == 0
    assert svc.count("Traceback") == 0, svc.output()[-4000:]
