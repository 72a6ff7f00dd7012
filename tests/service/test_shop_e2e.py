"""The shopper's flow end to end in headless Chromium at a phone's viewport (390 x 844),
against a real Mosquitto, the real service with `--http` and the real controller reading items
from a FIFO: the PIN read off the basket's display pairs the phone, items appear live, an
unknown item is flagged, a reload keeps the session, checkout ends at the receipt page; then
the counter provider's checkout code, confirmed by staff on the dashboard. A screenshot of
each step goes to docs/shopper/ (docs/shopper.md shows them) and test-output/."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.service.test_dashboard_e2e import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    OUT,
    Controller,
    need_chromium,
    new_page,
)
from tests.support.broker import free_port
from tests.support.service_proc import ROOT, service_env

SHOTS = ROOT / "docs" / "shopper"
CATALOG = """code,name,name_en,price,discount_percent
MLON,성주 참외 3~8입 봉,Korean melons,13900,0
APPL,사과 1.5kg,Apples,26900,15
TMAT,토마토,Tomatoes,6980,33
"""
MLON, APPL, TMAT = 13900, 22865, 4677  # unit prices after the discount (docs/shopper.md)


def won(n: int) -> str:
    return "{:,}원".format(n)


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[object]:
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_FLAGS)
        ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True, locale="ko-KR",
                                  timezone_id="Asia/Seoul")
        try:
            yield new_page(ctx)
        finally:
            browser.close()


def shot(page: object, name: str) -> None:
    OUT.mkdir(exist_ok=True)
    SHOTS.mkdir(exist_ok=True)
    path = OUT / ("shopper-" + name + ".png")
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    shutil.copy(path, SHOTS / (name + ".png"))


def display_pin(ctl: Controller, after: int = 0, thanks: bool = False) -> str:
    """The PIN on the basket's display (its console line), from byte `after` of its log on."""
    word = "thank you" if thanks else "ready"
    pattern = re.compile(r"\[display\] basket 1 \| %s \| PIN ([0-9]{6})" % word)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = pattern.findall(ctl.log.read_text()[after:])
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError("no PIN on the display:\n" + ctl.log.read_text()[-3000:])


def start(broker: object, sqlite_db: dict[str, str], services: object, tmp_path: Path,
          provider: str) -> tuple[str, Callable[[], object]]:
    """The service with its web server: its URL, and a function that starts it (again)."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(CATALOG, encoding="utf-8")
    http = free_port()
    env = service_env(broker.port, sqlite_db, PAYMENT_PROVIDER=provider)  # type: ignore[attr-defined]

    def run() -> object:
        svc = services(env, "--http", str(http), catalog=catalog).start()  # type: ignore[operator]
        svc.wait_line(r"dashboard on http://127\.0\.0\.1:%d/" % http)
        return svc

    return "http://127.0.0.1:%d" % http, run


def test_shopper_pairs_watches_and_checks_out_on_a_phone(broker, sqlite_db, services, phone,
                                                          tmp_path):
    from playwright.sync_api import expect

    page = phone
    url, restart = start(broker, sqlite_db, services, tmp_path, "test")
    svc = restart()
    ctl = Controller(broker.port, tmp_path)
    try:
        pin = display_pin(ctl)
        page.goto(url + "/shop/1")
        expect(page.locator("#pair")).to_be_visible()
        expect(page.locator("#basketno")).to_have_text("#1")
        shot(page, "1-pair")

        page.locator("#pin").fill("000000" if pin != "000000" else "111111")
        page.get_by_role("button", name=re.compile("Pair")).click()
        expect(page.locator("#message")).to_contain_text("Wrong PIN")
        expect(page.locator("#message")).to_contain_text("4 tries left")
        shot(page, "2-wrong-pin")

        page.locator("#pin").fill(pin)
        page.get_by_role("button", name=re.compile("Pair")).click()
        expect(page.locator("#cart")).to_be_visible()
        expect(page.locator("#message")).to_be_hidden()
        expect(page.locator("#emptycart")).to_be_visible()
        expect(page.locator("#pay")).to_be_disabled()
        expect(page.locator("#cancel")).to_be_enabled()
        shot(page, "3-paired")

        ctl.items("MLON", "APPL", "APPL", "TMAT")
        lines = page.locator("#lines li")
        expect(lines).to_have_count(3)
        expect(page.locator("#total")).to_have_text(won(MLON + 2 * APPL + TMAT))
        apples = page.locator('#lines li[data-code="APPL"]')
        expect(apples.locator(".name")).to_have_text("사과 1.5kg")
        expect(apples.locator(".detail")).to_contain_text(won(APPL) + " × 2")
        expect(apples.locator(".detail")).to_contain_text("15%")
        expect(apples.locator(".amount")).to_have_text(won(2 * APPL))
        expect(page.locator("#pay")).to_be_enabled()
        expect(page.locator("#cancel")).to_be_disabled()
        shot(page, "4-cart-live")

        ctl.items("ZZZ9")
        unknown = page.locator('#lines li[data-code="ZZZ9"]')
        expect(unknown.locator(".ask")).to_be_visible()
        expect(page.locator("#asknote")).to_be_visible()
        expect(page.locator("#pay")).to_be_disabled()
        shot(page, "5-ask-staff")
        ctl.items("-ZZZ9")
        expect(unknown).to_have_count(0)

        # A reload keeps the session: the cookie pairs the page again.
        page.reload()
        expect(page.locator("#cart")).to_be_visible()
        expect(page.locator("#total")).to_have_text(won(MLON + 2 * APPL + TMAT))
        # So does a lost connection: the server goes away, the page says so, and it carries
        # on by itself once the server is back, items added meanwhile included.
        assert svc.stop() == 0
        expect(page.locator("#conn")).to_be_visible()
        expect(page.locator("#conn")).to_contain_text("reconnecting")
        svc = restart()
        ctl.items("TMAT")
        expect(page.locator("#conn")).to_be_hidden(timeout=20000)
        expect(page.locator("#total")).to_have_text(won(MLON + 2 * APPL + 2 * TMAT))
        ctl.items("-TMAT")
        expect(page.locator("#total")).to_have_text(won(MLON + 2 * APPL + TMAT))

        page.get_by_role("button", name=re.compile("Check out")).click()
        expect(page).to_have_url(re.compile(r"/shop/receipts/[A-Za-z0-9_-]+$"))
        expect(page.locator("#rtotal")).to_have_text(won(MLON + 2 * APPL + TMAT))
        expect(page.locator("#rlines tr")).to_have_count(3)
        expect(page.locator("#qr")).to_have_js_property("complete", True)
        assert page.locator("#qr").evaluate("img => img.naturalWidth") > 0
        shot(page, "6-receipt")

        # The basket: session over, thank you, then ready with a new PIN.
        new = display_pin(ctl, thanks=True)
        assert new != pin
        assert page.js_errors == []  # type: ignore[attr-defined]
    finally:
        ctl.stop()


def test_counter_checkout_code_confirmed_by_staff(broker, sqlite_db, services, phone, tmp_path):
    from playwright.sync_api import expect

    page = phone
    url, restart = start(broker, sqlite_db, services, tmp_path, "counter")
    restart()
    ctl = Controller(broker.port, tmp_path)
    try:
        page.goto(url + "/shop/1")
        page.locator("#pin").fill(display_pin(ctl))
        page.get_by_role("button", name=re.compile("Pair")).click()
        expect(page.locator("#cart")).to_be_visible()
        ctl.items("MLON")
        expect(page.locator("#total")).to_have_text(won(MLON))
        page.get_by_role("button", name=re.compile("Check out")).click()
        code = page.locator("#codetext")
        expect(code).to_have_text(re.compile(r"^[A-Z0-9]{6}$"))
        shot(page, "7-counter-code")

        # Staff confirm the code on the dashboard (a page of its own, another browser tab).
        staff = page.context.new_page()
        staff.set_viewport_size({"width": 1280, "height": 860})
        staff.goto(url + "/")
        pending = staff.locator("#payments li")
        expect(pending).to_have_count(1)
        expect(pending).to_contain_text(code.inner_text())
        staff.locator("#paycode").fill(code.inner_text().lower())
        staff.get_by_role("button", name="Confirm payment").click()
        expect(staff.locator("#paymsg")).to_contain_text("receipt")
        expect(pending).to_have_count(0)
        staff.close()

        expect(page).to_have_url(re.compile(r"/shop/receipts/[A-Za-z0-9_-]+$"))
        expect(page.locator("#rtotal")).to_have_text(won(MLON))
        assert page.js_errors == []  # type: ignore[attr-defined]
    finally:
        ctl.stop()
