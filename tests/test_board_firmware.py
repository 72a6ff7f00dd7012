"""boot.py and main.py under the MicroPython unix port, with the stand-in `machine` and `network`
modules of tests/board_stubs/ and a real Mosquitto: Wi-Fi that fails then works, Wi-Fi lost
while running, the watchdog, bad config.json files, safe mode, a crash that resets."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.board_proc import BoardProc
from tests.support.broker import Broker
from tests.support.peer import Peer
from tests.support.process import ROOT

HAVE_UMQTT = (ROOT / "lib" / "umqtt" / "simple.py").exists()


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker.with_acl().start()
    yield b
    b.close()


def settings(broker: Broker | None, **extra: Any) -> dict[str, Any]:
    """A config.json the way tools/provision.py writes it: every value a string."""
    s: dict[str, Any] = {"WIFI_SSID": "shop-floor", "WIFI_PASSWORD": "wifi-secret",
                         "WIFI_TIMEOUT_MS": "1000", "MQTT_HOST": "127.0.0.1",
                         "MQTT_PORT": str(broker.port if broker else 1883),
                         "MQTT_USER": "basket1", "MQTT_PASSWORD": "basket1-pw",
                         "MQTT_TOPIC": "basket/1", "ITEM_SOURCE": "stdin", "LOG_LEVEL": "info"}
    s.update(extra)
    return {k: v for k, v in s.items() if v is not None}


class Board:
    """A fake flash folder with boot.py, main.py and config.json, booted by run_board.py."""

    def __init__(self, path: Path, config: dict[str, Any] | str | None) -> None:
        self.flash = path
        for name in ("boot.py", "main.py"):
            shutil.copy(ROOT / name, path / name)
        if config is not None:
            text = config if isinstance(config, str) else json.dumps(config, indent=2)
            (path / "config.json").write_text(text)
        self.proc: BoardProc | None = None

    def set(self, name: str, value: str | None) -> None:
        p = self.flash / name
        if value is None:
            p.unlink(missing_ok=True)
        else:
            p.write_text(value)

    def start(self, wifi_fails: int = 0) -> BoardProc:
        self.proc = BoardProc(self.flash, BOARD_STUB_WIFI_FAILS=str(wifi_fails))
        self.proc.start(stdin=True)
        return self.proc

    def calls(self) -> list[str]:
        try:
            text = (self.flash / "calls.log").read_text()
        except FileNotFoundError:
            return []
        return [line.split(" ", 1)[1] for line in text.splitlines() if " " in line]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@pytest.fixture
def make_board(tmp_path: Path) -> Iterator[Any]:
    boards: list[Board] = []

    def make(config: dict[str, Any] | str | None) -> Board:
        d = tmp_path / ("flash%d" % len(boards))
        d.mkdir()
        b = Board(d, config)
        boards.append(b)
        return b

    yield make
    for b in boards:
        b.stop()


@pytest.fixture
def peer(broker: Broker) -> Iterator[Peer]:
    p = Peer(broker.port)
    p.subscribe("basket/1/#")
    yield p
    p.close()


def test_wifi_fails_then_succeeds_and_the_basket_shops(broker: Broker, peer: Peer,
                                                       make_board: Any) -> None:
    board = make_board(settings(broker, WIFI_RETRIES="3", WIFI_HOSTNAME="basket-1",
                                WIFI_IP="192.168.4.50", WIFI_GATEWAY="192.168.4.1"))
    proc = board.start(wifi_fails=2)
    proc.wait_line(r"WARNING Wi-Fi: attempt 1 failed \(no access point found\)")
    proc.wait_line(r"WARNING Wi-Fi: attempt 2 failed")
    proc.wait_line(r"INFO Wi-Fi: connected to shop-floor as 192\.168\.4\.50")
    peer.wait_payload("basket/1/availability", b"online")
    m = peer.mark()
    peer.publish("basket/1/status", b"start")
    proc.wait_line(r"session started")  # the connect's update has the same bytes while idle
    peer.wait_payload("basket/1/update", b'{"id":1,"list":{}}', start=m)
    proc.send("MLON\nMLON\n")
    peer.wait_payload("basket/1/update", b'{"id":1,"list":{"MLON":2}}', start=m)
    calls = board.calls()
    assert [c for c in calls if c.startswith("WLAN.connect")] == [
        "WLAN.connect shop-floor attempt 1", "WLAN.connect shop-floor attempt 2",
        "WLAN.connect shop-floor attempt 3"]
    assert "network.hostname basket-1" in calls
    assert "WLAN.ifconfig ('192.168.4.50', '255.255.255.0', '192.168.4.1', '192.168.4.1')" \
        in calls
    assert "wifi-secret" not in proc.output() and "basket1-pw" not in proc.output()
    assert proc.alive()  # main.py is running, no REPL
    assert "REPL" not in proc.output()


def test_wifi_down_at_boot_then_joined_by_main(broker: Broker, peer: Peer,
                                               make_board: Any) -> None:
    board = make_board(settings(broker, WIFI_RETRIES="2"))
    proc = board.start(wifi_fails=3)
    proc.wait_line(r"WARNING Wi-Fi: not connected after 2 attempt\(s\); main.py keeps trying")
    proc.wait_line(r"joining shop-floor in the background")
    back = proc.wait_line(r"INFO Wi-Fi: back on shop-floor as 10\.0\.0\.2 after 2 attempt",
                          timeout=20)
    peer.wait_payload("basket/1/availability", b"online")
    # The broker's "online" can come before the board's own log line is read: wait for it.
    proc.wait_line(r"connected to 127\.0\.0\.1|connect attempt")
    lines = proc.output().splitlines()
    first_broker = next(i for i, ln in enumerate(lines) if "connected to 127.0.0.1" in ln
                        or "connect attempt" in ln)
    assert lines.index(back.text) < first_broker, "MQTT was tried before Wi-Fi was up"


@pytest.mark.parametrize("client", ["builtin", "umqtt"])
def test_wifi_lost_while_running_is_rejoined_and_mqtt_reconnects(
        broker: Broker, peer: Peer, make_board: Any, client: str) -> None:
    if client == "umqtt" and not HAVE_UMQTT:
        pytest.skip("lib/umqtt/simple.py missing: run `make board-libs`")
    board = make_board(settings(broker, MQTT_CLIENT=client))
    proc = board.start()
    peer.wait_payload("basket/1/availability", b"online")
    m = peer.mark()
    peer.publish("basket/1/status", b"start")
    peer.wait_payload("basket/1/update", b'{"id":1,"list":{}}', start=m)

    down = proc.mark()
    board.set("ap", "down")
    proc.wait_line(r"WARNING Wi-Fi: link to shop-floor lost \(beacon timeout\); rejoining",
                   start=down)
    peer.wait_payload("basket/1/availability", b"offline", start=m)  # the will: link dropped
    proc.send("APPL\n")  # shopping goes on offline
    time.sleep(4.5)  # two failed background joins
    proc.wait_line(r"Wi-Fi: join attempt 1 failed \(no access point found\); trying again",
                   start=down)
    m2 = peer.mark()
    board.set("ap", "up")
    back = proc.wait_line(r"INFO Wi-Fi: back on shop-floor as 10\.0\.0\.2", start=down,
                          timeout=15)
    proc.wait_line(r"connected to 127\.0\.0\.1:\d+ as basket-1", start=down)
    peer.wait_payload("basket/1/availability", b"online", start=m2)
    peer.wait_payload("basket/1/update", b'{"id":1,"list":{"APPL":1}}', start=m2)
    lines = proc.output().splitlines()
    during = lines[down:lines.index(back.text)]
    # no broker connect was tried while there was no network
    assert not [ln for ln in during if "connect attempt" in ln or "connected to" in ln], during
    assert proc.alive()


def test_watchdog_is_started_and_fed(broker: Broker, peer: Peer, make_board: Any) -> None:
    # numbers as JSON numbers this time (people write config.json by hand too)
    board = make_board(settings(broker, MQTT_PORT=broker.port, WATCHDOG_MS=2000,
                                MQTT_KEEPALIVE=60, WIFI_TIMEOUT_MS=1000))
    proc = board.start()
    peer.wait_payload("basket/1/availability", b"online")
    proc.wait_line(r"INFO watchdog on: 2000 ms")
    time.sleep(5)  # an idle basket: the loop still wakes to feed the dog
    assert proc.alive(), proc.output()
    calls = board.calls()
    assert "WDT timeout=2000" in calls
    gaps = [int(c.split("=")[1]) for c in calls if c.startswith("WDT.feed")]
    assert len(gaps) >= 3, calls
    assert max(gaps) < 2000, gaps
    assert "WDT expired" not in calls


@pytest.mark.parametrize(("config", "expected"), [
    ({"MQTT_PORT": "http"}, r"^configuration error: MQTT_PORT: must be a whole number"),
    ({"MQTT_TOPIC": ["basket/1"]}, r"^configuration error: MQTT_TOPIC: must be text or a "
                                   r"number"),
    ({"WIFI_TIMEOUT_MS": "soon"}, r"^boot: configuration error: WIFI_TIMEOUT_MS: must be a "
                                  r"whole number"),
    ({"WATCHDOG_MS": 10}, r"^configuration error: WATCHDOG_MS: 0 \(off\) or 1000-3600000"),
    ({"MQTT_TLS": "yes", "MQTT_CAFILE": None}, r"^configuration error: MQTT_CAFILE: required"),
    ({"WIFI_IP": "192.168.4"}, r"^configuration error: WIFI_IP: must be an IPv4 address"),
    ({"MQTT_CLIENT": "paho"}, r"^configuration error: MQTT_CLIENT: must be builtin or umqtt"),
    ("{\"MQTT_TOPIC\": \"basket/1\"\n", r"^configuration error: config\.json: not valid JSON"),
    (None, r"^configuration error: config\.json: missing: copy config\.example\.json"),
])
def test_bad_config_names_the_key_and_leaves_the_repl(make_board: Any, config: Any,
                                                      expected: str) -> None:
    if isinstance(config, dict):
        config = settings(None, **config)
    board = make_board(config)
    proc = board.start()
    assert proc.wait(30) == 0, proc.output()
    text = proc.output()
    assert re.search(expected, text, re.M), text
    assert text.rstrip().endswith("REPL"), text
    assert "Traceback" not in text
    assert "machine.reset" not in board.calls()
    assert "wifi-secret" not in text and "basket1-pw" not in text


def test_unknown_key_is_named_but_not_fatal(broker: Broker, peer: Peer,
                                            make_board: Any) -> None:
    board = make_board(settings(broker, MQTT_PORTT="1883", _comment="people may write notes"))
    proc = board.start()
    proc.wait_line(r"WARNING config\.json: unknown key MQTT_PORTT ignored")
    peer.wait_payload("basket/1/availability", b"online")
    assert "_comment" not in proc.output()


@pytest.mark.parametrize("how", ["file", "pin"])
def test_safe_mode_skips_wifi_and_controller(broker: Broker, make_board: Any,
                                             how: str) -> None:
    board = make_board(settings(broker, SAFE_PIN="4"))
    if how == "file":
        board.set("safe", "")
    else:
        board.set("pin4", "0")
    proc = board.start()
    assert proc.wait(30) == 0, proc.output()
    text = proc.output()
    why = "the file 'safe' exists" if how == "file" else "GPIO4 was held low"
    assert "boot: SAFE MODE (%s): Wi-Fi and the controller are skipped" % why in text
    assert "main: SAFE MODE (%s): controller not started" % why in text
    assert text.rstrip().endswith("REPL")
    assert not [c for c in board.calls() if c.startswith("WLAN")]
    assert "Received CONNECT" not in broker.log()


def test_safe_pin_released_boots_normally(broker: Broker, peer: Peer,
                                          make_board: Any) -> None:
    board = make_board(settings(broker, SAFE_PIN="4"))
    board.set("pin4", "1")
    board.start()
    peer.wait_payload("basket/1/availability", b"online")


def test_crash_is_logged_and_the_board_resets(broker: Broker, peer: Peer,
                                              make_board: Any) -> None:
    board = make_board(settings(broker))
    proc = board.start()
    peer.wait_payload("basket/1/availability", b"online")
    board.set("wlan_raises", "1")  # the Wi-Fi driver fails inside the loop
    proc.wait_line(r"^FATAL: unexpected error; resetting in 5 s")
    assert proc.wait(20) == 86, proc.output()  # machine.reset() from the stub
    text = proc.output()
    assert "RuntimeError: stub: Wi-Fi driver fault" in text
    assert "REPL" not in text
    log = (board.flash / "error.log").read_text()
    assert log.startswith("--- crash after ") and "stub: Wi-Fi driver fault" in log
    assert board.calls()[-1] == "machine.reset"
