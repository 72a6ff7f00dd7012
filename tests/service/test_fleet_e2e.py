"""The fleet page end to end in headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) against a real Mosquitto and the real service with `--http`: two baskets publish
availability and health over MQTT, the page shows both with the one whose reader is down
highlighted and its alert named, sorting by a column reorders the rows, a new report shows up
without a reload, and the dashboard's card carries the alert badge. The screenshot of the page
goes to test-output/; with UPDATE_SCREENSHOTS=1 also to docs/fleet-page.png (committed;
docs/fleet.md shows it), so a test run does not change the checkout."""

from __future__ import annotations

import os
import re
import struct

from tests.service.test_dashboard_e2e import OUT, browser_page  # noqa: F401 - a fixture
from tests.support.broker import free_port
from tests.support.service_proc import ROOT, service_env

SCREENSHOT = ROOT / "docs" / "fleet-page.png"
READERS_OK = [{"last_read_s": 3, "name": "/dev/ttyUSB0", "state": "ok"},
              {"last_read_s": 5, "name": "/dev/ttyUSB1", "state": "ok"}]
READER_DOWN = [{"last_read_s": 2, "name": "/dev/ttyUSB0", "state": "ok"},
               {"last_read_s": None, "name": "/dev/ttyUSB1", "state": "down"}]


def row_order(page) -> list[str]:
    return page.locator("#fleetrows tr").evaluate_all("rs => rs.map(r => r.dataset.basket)")


def test_fleet_page_in_chromium(broker, sqlite_db, services, baskets,
                                browser_page):  # noqa: F811 - the imported fixture
    from playwright.sync_api import expect

    page = browser_page
    http = free_port()
    svc = services(service_env(broker.port, sqlite_db), "--http", str(http)).start()
    svc.wait_line(r"dashboard on http://127\.0\.0\.1:%d/" % http)
    url = "http://127.0.0.1:%d/" % http

    b1, b2 = baskets(1), baskets(2)
    for b in (b1, b2):
        b.online()
    # Uptimes 100000 and 9000: sorted as numbers basket 2 comes first, as text it would not.
    b1.health(uptime_s=100000, rssi=-58, battery_mv=3950, mem_free=61000,
              runtime="micropython 1.28.0", readers=READERS_OK[:1])
    b2.health(uptime_s=9000, rssi=-71, readers=READER_DOWN,
              ota={"state": "rolled_back", "version": "0.2.0",
                   "error": "ImportError: no module named 'nope'"})
    svc.wait_line(r"basket 2: health report stored")

    # The dashboard's card carries the alert badge; its title names the alert.
    page.goto(url)
    expect(page.locator("#conn")).to_have_text("live")
    badge = page.locator("#basket-2 .badge.alerts")
    expect(badge).to_be_visible()
    expect(badge).to_have_text("경고 1")
    expect(badge).to_have_attribute("title", "reader /dev/ttyUSB1 down")
    expect(page.locator("#basket-1 .badge.alerts")).to_be_hidden()
    OUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUT / "fleet-dashboard-badge.png"), full_page=True)

    # The link to the fleet page.
    page.get_by_role("link", name="Fleet").first.click()
    expect(page).to_have_url(url + "fleet")
    expect(page.locator("#conn")).to_have_text("live")
    rows = page.locator("#fleetrows tr")
    expect(rows).to_have_count(2)
    r1, r2 = page.locator("#fleet-1"), page.locator("#fleet-2")
    expect(r2).to_have_class(re.compile(r"\balerting\b"))
    expect(r2).to_have_attribute("data-alerts", "1")
    expect(r2.locator("td.alerts")).to_have_text("reader /dev/ttyUSB1 down")
    expect(r2.locator("td.readers")).to_contain_text("1/2 ok")
    expect(r1).not_to_have_class(re.compile(r"\balerting\b"))
    expect(r1.locator("td.alerts")).to_contain_text("ok")
    expect(r1.locator("td.uptime")).to_have_text("1d 3h")
    expect(r1.locator("td.rssi")).to_have_text("-58 dBm")
    expect(r1.locator("td.battery")).to_have_text("3,950 mV")
    expect(r1.locator("td.version")).to_have_attribute("title", "micropython 1.28.0")
    expect(r2.locator("td.battery")).to_have_text("—")
    # The update column: basket 1 reports no updates (off), basket 2 a rollback and why.
    expect(r1.locator("td.ota")).to_have_attribute("data-state", "off")
    expect(r2.locator("td.ota")).to_have_class(re.compile(r"\bbad\b"))
    expect(r2.locator("td.ota .otastate")).to_have_text("되돌림 · rolled back")
    expect(r2.locator("td.ota .otaversion")).to_have_text("0.2.0")
    expect(r2.locator("td.ota .otaerror")).to_have_text("ImportError: no module named 'nope'")
    expect(page.locator("#fleetsum")).to_contain_text("1 of 2 with alerts")
    assert row_order(page) == ["1", "2"]
    page.set_viewport_size({"width": 1280, "height": 360})
    page.screenshot(path=str(OUT / "fleet-page.png"), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 860})

    # Sorting: uptime as a number, then descending; RSSI; the alerts (most first).
    uptime = page.locator('th[data-key="uptime_s"]')
    uptime.get_by_role("button").click()
    expect(uptime).to_have_attribute("aria-sort", "ascending")
    assert row_order(page) == ["2", "1"]
    uptime.get_by_role("button").click()
    expect(uptime).to_have_attribute("aria-sort", "descending")
    assert row_order(page) == ["1", "2"]
    page.locator('th[data-key="rssi"] button').click()
    assert row_order(page) == ["2", "1"]  # -71 before -58
    expect(uptime).to_have_attribute("aria-sort", "none")
    alerts = page.locator('th[data-key="alerts"] button')
    alerts.click()
    alerts.click()
    assert row_order(page) == ["2", "1"]

    # Live: a new report changes the row without a reload (the mark survives), and the
    # sort order stays as chosen.
    page.evaluate("window.__notReloaded = true")
    b2.health(uptime_s=9060, rssi=-66, readers=READERS_OK,
              ota={"state": "downloading", "version": "0.2.1", "error": None})
    expect(r2.locator("td.uptime")).to_have_text("2h 31m")
    expect(r2.locator("td.ota .otastate")).to_have_text("받는 중 · downloading")
    expect(r2.locator("td.ota")).not_to_have_class(re.compile(r"\bbad\b"))
    expect(r2).not_to_have_class(re.compile(r"\balerting\b"))
    expect(r2).to_have_attribute("data-alerts", "0")
    expect(r2.locator("td.readers")).to_have_text("2/2 ok")
    expect(r2.locator("td.rssi")).to_have_text("-66 dBm")
    expect(page.locator("#fleetsum")).to_contain_text("0 of 2 with alerts")
    # A third basket reports for the first time: a new row, live.
    b3 = baskets(3)
    b3.online()
    b3.health(uptime_s=30, display="failed", readers=[])
    r3 = page.locator("#fleet-3")
    expect(r3).to_have_class(re.compile(r"\balerting\b"))
    expect(r3.locator("td.alerts")).to_have_text("display failed")
    expect(rows).to_have_count(3)
    assert row_order(page)[0] == "3"  # most alerts first, as sorted
    assert page.evaluate("window.__notReloaded") is True

    # Back to the dashboard: basket 2's badge is gone, basket 3 has one.
    page.get_by_role("link", name="Baskets").click()
    expect(page.locator("#conn")).to_have_text("live")
    expect(page.locator("#basket-3 .badge.alerts")).to_have_attribute("title", "display failed")
    expect(page.locator("#basket-2 .badge.alerts")).to_be_hidden()

    assert page.js_errors == []  # type: ignore[attr-defined]
    assert svc.stop() == 0
    assert svc.count("Traceback") == 0, svc.output()[-4000:]

    # The screenshot: a real PNG of a page, not an empty frame.
    data = (OUT / "fleet-page.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280 and height >= 300, (width, height)
    assert len(data) > 20_000, len(data)
