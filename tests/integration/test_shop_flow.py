"""The shopper's flow with real parts (docs/shopper.md): a real Mosquitto, the service with its
web server (`serve --http`, PAYMENT_PROVIDER=test), the real controller under both
interpreters, and phones played by HTTP clients: the PIN read off the basket's display pairs,
items appear live on the phone, an unknown item is flagged on both, checkout gives a receipt
and ends the session, stock moves once, a second phone and a wrong PIN are refused."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.support.broker import Broker, free_port
from tests.support.process import ControllerProc
from tests.support.service_proc import ServiceProc, service_env

MLON, BLUE = 13900, 14980  # data/catalog_sample.csv, no discount
PIN_RE = r"\[display\] basket 1 \| (ready|thank you) \| PIN ([0-9]{6})$"


class Store:
    """The service with --http, and what a test asks of it."""

    def __init__(self, broker: Broker, tmp: Path, **extra: str) -> None:
        self.db_path = tmp / "basket.db"
        self.port = free_port()
        self.env = service_env(broker.port, {"BASKET_DB": str(self.db_path)},
                               PAYMENT_PROVIDER="test", **extra)
        self.proc = ServiceProc(self.env, "--http", str(self.port)).start()
        self.url = "http://127.0.0.1:%d" % self.port

    def phone(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def stock(self, code: str) -> tuple[int, int]:
        with sqlite3.connect(self.db_path) as c:
            row = c.execute("SELECT stock, sales FROM products WHERE code = ?", (code,)).fetchone()
        return int(row[0]), int(row[1])

    def receipts(self) -> int:
        with sqlite3.connect(self.db_path) as c:
            return int(c.execute("SELECT count(*) FROM receipts").fetchone()[0])


@pytest.fixture
def shop(broker: Broker, tmp_path: Path) -> Iterator[Callable[..., Store]]:
    made: list[Store] = []

    def make(**extra: str) -> Store:
        s = Store(broker, tmp_path, **extra)
        made.append(s)
        return s

    yield make
    for s in made:
        s.proc.stop()
        s.proc.assert_no_traceback()


def shown_pin(c: ControllerProc, start: int = 0, thanks: bool = False) -> str:
    line = c.wait_line(PIN_RE.replace("(ready|thank you)", "thank you" if thanks else "ready"),
                       start=start)
    return re.search(r"PIN ([0-9]{6})", line.text).group(1)  # type: ignore[union-attr]


class Feed:
    """A phone's live view (/shop/1/api/events) read in a thread: the `cart` events."""

    def __init__(self, phone: httpx.Client) -> None:
        self.docs: list[dict[str, object]] = []
        self.cv = threading.Condition()
        self.phone = phone
        self.stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with self.phone.stream("GET", "/shop/1/api/events", timeout=None) as r:
            event = ""
            for line in r.iter_lines():
                if self.stop:
                    return
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "cart":
                    with self.cv:
                        self.docs.append(json.loads(line[6:]))
                        self.cv.notify_all()

    def wait(self, test: Callable[[dict[str, object]], bool], timeout: float = 15) -> dict:
        end = time.monotonic() + timeout
        with self.cv:
            while True:
                for d in self.docs:
                    if test(d):
                        return d
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("no such cart event; got %r" % self.docs[-3:])
                self.cv.wait(left)


def post(phone: httpx.Client, what: str, retry_unconfirmed: bool = True,
         **body: object) -> httpx.Response:
    """A POST to the phone's API; a checkout of a cart the service has not priced yet (409
    unconfirmed) is tried again, as the page's button would be."""
    for _ in range(50):
        r = phone.post("/shop/1/api/" + what, json=body)
        if not (retry_unconfirmed and r.status_code == 409
                and r.json().get("refused") == "unconfirmed"):
            return r
        time.sleep(0.2)
    return r


def test_pair_watch_flag_and_check_out(controller: Callable[..., ControllerProc],
                                       shop: Callable[..., Store]) -> None:
    store = shop()
    c = controller().start()
    store.proc.wait_line(r"basket 1 is online")
    pin = shown_pin(c)
    stock0 = store.stock("MLON")

    phone = store.phone()
    r = phone.post("/shop/1/api/pair", json={"pin": pin})
    assert r.status_code == 200, r.text
    assert r.json()["paired"] is True and "basket_shop" in r.cookies
    c.wait_log("session started")
    feed = Feed(phone)
    feed.wait(lambda d: d.get("paired") is True and d.get("items") == 0)

    # A second phone: it cannot pair (whatever the PIN), watch, check out or cancel.
    other = store.phone()
    r = other.post("/shop/1/api/pair", json={"pin": pin})
    assert r.status_code == 409 and r.json()["refused"] == "already_paired", r.text
    seen = other.get("/shop/1/api/state").json()
    assert seen["paired"] is False and seen["pairing"] == "taken" and "lines" not in seen
    for what in ("checkout", "cancel"):
        r = other.post("/shop/1/api/" + what)
        assert r.status_code == 403 and r.json()["refused"] == "not_paired", r.text

    # Items appear live on the phone, priced line by line.
    mark = c.mark()
    c.items("MLON", "MLON", "BLUE")
    doc = feed.wait(lambda d: d.get("items") == 3)
    assert {ln["code"]: (ln["count"], ln["amount"]) for ln in doc["lines"]} == {
        "MLON": (2, 2 * MLON), "BLUE": (1, BLUE)}
    assert doc["total"] == 2 * MLON + BLUE
    c.wait_log("TOTAL %s KRW" % format(2 * MLON + BLUE, ","), start=mark)

    # Cancel is refused with goods in the cart.
    r = post(phone, "cancel")
    assert r.status_code == 409 and r.json()["refused"] == "not_empty", r.text

    # An unknown code: flagged on the phone and on the basket, and never billed at 0.
    mark = c.mark()
    c.items("ZZZ9")
    doc = feed.wait(lambda d: d.get("unknown") == ["ZZZ9"])
    assert [ln["known"] for ln in doc["lines"] if ln["code"] == "ZZZ9"] == [False]
    c.wait_line(r"\| 4 items \| ask staff \| TOTAL", start=mark)
    r = post(phone, "checkout")
    assert r.status_code == 409 and r.json()["refused"] == "unknown_items", r.text
    assert store.receipts() == 0
    mark = c.mark()
    c.items("-ZZZ9")
    feed.wait(lambda d: d.get("items") == 3 and not d.get("unknown"))
    c.wait_line(r"\| 3 items \| TOTAL", start=mark)

    # Checkout, pressed twice at once: one receipt, stock moved once, the session ends.
    mark = c.mark()
    answers: list[httpx.Response] = []
    pressed = [threading.Thread(target=lambda: answers.append(post(phone, "checkout")))
               for _ in range(2)]
    for t in pressed:
        t.start()
    for t in pressed:
        t.join()
    ok = [a for a in answers if a.status_code == 200]
    assert ok, [a.text for a in answers]
    receipt = ok[0].json()["receipt"]
    assert receipt["total"] == 2 * MLON + BLUE and receipt["key"]
    assert all(a.json()["receipt"]["receipt"] == receipt["receipt"] for a in ok)
    assert store.receipts() == 1
    assert store.stock("MLON") == (stock0[0] - 2, stock0[1] + 2)
    c.wait_log("session ended", start=mark)
    new_pin = shown_pin(c, mark, thanks=True)
    assert new_pin != pin
    assert shown_pin(c, mark) == new_pin  # then `ready` with the new PIN

    # The phone is told how it ended and finds its receipt; the receipt page reads it.
    doc = feed.wait(lambda d: bool(d.get("ended")))
    assert doc["ended"] == {"outcome": "paid", "receipt": receipt["key"]}
    r = phone.get("/shop/receipts/%s/doc" % receipt["key"])
    assert r.status_code == 200 and r.json()["total"] == receipt["total"]
    assert phone.get("/shop/receipts/%s/qr.svg" % receipt["key"]).text.startswith("<svg")
    assert phone.get("/shop/receipts/not-a-key/doc").status_code == 404
    # A retried checkout after the end bills nothing.
    r = post(phone, "checkout")
    assert r.status_code == 403 and store.receipts() == 1
    assert store.stock("MLON") == (stock0[0] - 2, stock0[1] + 2)
    feed.stop = True
    c.stop()
    c.assert_no_traceback()


def test_wrong_pin_locks_the_basket(controller: Callable[..., ControllerProc],
                                    shop: Callable[..., Store]) -> None:
    store = shop()
    c = controller().start()
    pin = shown_pin(c)
    wrong = "%06d" % ((int(pin) + 1) % 10**6)
    phone = store.phone()
    for left in (4, 3, 2, 1):
        r = phone.post("/shop/1/api/pair", json={"pin": wrong})
        assert r.status_code == 403, r.text
        assert r.json()["refused"] == "wrong_pin" and r.json()["tries_left"] == left
    mark = c.mark()
    r = phone.post("/shop/1/api/pair", json={"pin": "12x"})  # not 6 digits: a wrong try too
    assert r.status_code == 423 and r.json()["refused"] == "locked", r.text
    c.wait_line(r"\| ready \| locked until [0-9]{2}:[0-9]{2}$", start=mark)
    # The right PIN does not open a locked basket, and the lock drew a new one anyway.
    r = phone.post("/shop/1/api/pair", json={"pin": pin})
    assert r.status_code == 423, r.text
    assert "session started" not in c.output(mark)
    state = phone.get("/shop/1/api/state").json()
    assert state["pairing"] == "locked" and state["locked_until"]
    c.stop()
    c.assert_no_traceback()


def test_the_display_gets_its_pin_again_after_a_restart(
        controller: Callable[..., ControllerProc], shop: Callable[..., Store]) -> None:
    store = shop()
    c = controller().start()
    pin = shown_pin(c)
    c.stop()
    mark = c.mark()
    c.start()
    assert shown_pin(c, mark) == pin  # the same PIN: no session came between
    r = store.phone().post("/shop/1/api/pair", json={"pin": pin})
    assert r.status_code == 200, r.text
    c.stop()
