"""Remote configuration against a real Mosquitto, the controller as a subprocess on both
interpreters and paho publishing the retained `basket/1/config` as the service does: a bad set
is refused with its reason and changes nothing, an applied set survives a restart (from the
saved file, before the broker's copy), and a remote RSSI threshold changes which emulated tags
count."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.broker import Broker
from tests.support.peer import Peer
from tests.support.process import ControllerProc, mp_path
from tools.yrm100_emulator import Yrm100Emulator, make_epc

UPD = "basket/1/update"
CONFIG = "basket/1/config"
HEALTH = "basket/1/health"



@pytest.fixture
def backend(broker: Broker) -> Iterator[Peer]:
    p = Peer(broker.port, "service", "service-pw")
    for topic in ("basket/+/update", "basket/+/availability", "basket/+/health"):
        p.subscribe(topic)
    yield p
    p.publish(CONFIG, b"", retain=True)  # the broker is the test's own, but leave it clean
    p.close()


def wait_health(peer: Peer, start: int = 0, **want: Any) -> dict[str, Any]:
    """The first health report at or after message `start` whose fields match `want`."""
    def find() -> dict[str, Any] | None:
        for t, p, _ in peer.messages[start:]:
            if t == HEALTH:
                doc = json.loads(p)
                if all(doc.get(k) == v for k, v in want.items()):
                    return dict(doc)
        return None
    return dict(peer.wait_for(find, what="health with %r" % want))


def test_a_bad_config_is_refused_with_its_reason_and_changes_nothing(
        interp: str, broker: Broker, backend: Peer) -> None:
    c = ControllerProc(interp, broker.port)
    try:
        c.start()
        backend.publish(CONFIG, b'{"rev":1,"set":{"RFID_RSSI_MIN":-60,"LOG_LEVEL":"info"}}',
                        retain=True)
        c.wait_log("remote config rev 1 applied: LOG_LEVEL, RFID_RSSI_MIN")
        saved = c.state_file.with_name(c.state_file.name + ".config.json")
        before = saved.read_text()
        assert json.loads(before) == {"rev": 1, "set": {"RFID_RSSI_MIN": -60,
                                                        "LOG_LEVEL": "info"}}
        wait_health(backend, config_rev=1, config_error=None)
        cases = [
            (b'{"rev":2,"set":{"LOG_LEVEL":"debug","MQTT_HOST":"evil.example"}}',
             "MQTT_HOST: may not be set remotely"),
            (b'{"rev":3,"set":{"LOG_LEVEL":"debug","RFID_RSSI_MIN":-300}}',
             "RFID_RSSI_MIN: must be a whole number from -128 to 0 (got -300)"),
            (b'{"rev":4,"set":{"LOG_LEVEL":"debug","MQTT_PASSWORD":"x"}}',
             "MQTT_PASSWORD: may not be set remotely"),
            (b'{"rev":5,"set":{"LOG_LEVEL":"debug","WIFI_SSID":"x","FOO":1}}',
             "FOO: unknown setting"),
            (b'{"rev":6,"set":', "bad JSON"),
        ]
        for payload, why in cases:
            m, h = c.mark(), backend.mark()
            backend.publish(CONFIG, payload, retain=True)
            c.wait_log("remote config refused (rev 1 stays): %s" % why, start=m)
            wait_health(backend, h, config_rev=1, config_error=why)
        # nothing changed: the saved set, the log level (no DEBUG line since), the cart link
        assert saved.read_text() == before
        m, at = c.mark(), backend.mark()
        c.items("MLON=1")
        backend.publish("basket/1/status", b"start")
        c.wait_log("session started")  # the connect's update has the same bytes while idle
        backend.wait_payload(UPD, b'{"id":1,"list":{}}', start=at)
        c.items("MLON=2")
        backend.wait_payload(UPD, b'{"id":1,"list":{"MLON":2}}', start=at)
        assert "DEBUG" not in c.output(m)
        # and a good set clears the error
        h = backend.mark()
        backend.publish(CONFIG, b'{"rev":7,"set":{"RFID_RSSI_MIN":-61}}', retain=True)
        wait_health(backend, h, config_rev=7, config_error=None)
        c.assert_no_traceback()
    finally:
        c.close()


def test_an_applied_config_survives_a_restart(interp: str, broker: Broker,
                                              backend: Peer) -> None:
    c = ControllerProc(interp, broker.port)
    try:
        c.start()
        backend.publish(CONFIG, b'{"rev":3,"set":{"LOG_LEVEL":"debug","HEALTH_INTERVAL_S":600}}',
                        retain=True)
        c.wait_log("remote config rev 3 applied")
        wait_health(backend, config_rev=3, interval_s=600)
        c.stop()
        backend.publish(CONFIG, b"", retain=True)  # the broker's copy gone: only the file has it
        m, h = c.mark(), backend.mark()
        c.start(wait_connected=False)
        applied = c.wait_log("remote config rev 3 applied from ", start=m)
        connected = c.wait_log("connected to", start=m)
        assert applied.pos < connected.pos  # laid over the settings before connecting
        doc = wait_health(backend, h, config_rev=3, config_error=None)
        assert doc["interval_s"] == 600
        c.wait_line("^DEBUG ", start=m)  # LOG_LEVEL=debug from the file
        # the retained copy again, same rev: ignored
        m = c.mark()
        backend.publish(CONFIG, b'{"rev":3,"set":{"LOG_LEVEL":"debug","HEALTH_INTERVAL_S":600}}',
                        retain=True)
        c.wait_log("remote config rev 3 ignored: rev 3 is applied", start=m)
        c.assert_no_traceback()
    finally:
        c.close()


def test_a_saved_config_that_no_longer_passes_is_ignored(interp: str, broker: Broker,
                                                         backend: Peer) -> None:
    c = ControllerProc(interp, broker.port)
    saved = c.state_file.with_name(c.state_file.name + ".config.json")
    saved.write_text('{"rev": 9, "set": {"MQTT_HOST": "evil.example"}}')
    try:
        m = c.mark()
        c.start()
        c.wait_log("saved remote config %s ignored: MQTT_HOST: may not be set remotely" % saved,
                   start=m)
        wait_health(backend, config_rev=0, config_error="MQTT_HOST: may not be set remotely")
    finally:
        c.close()


@pytest.fixture
def reader() -> Iterator[Yrm100Emulator]:
    e = Yrm100Emulator()
    yield e
    e.close()


def test_a_remote_rssi_threshold_changes_which_tags_count(
        interp: str, broker: Broker, backend: Peer, reader: Yrm100Emulator) -> None:
    c = ControllerProc(interp, broker.port, ITEM_SOURCE="rfid:%s" % reader.path,
                       RFID_CYCLE_MS="200")
    try:
        c.start()
        at = backend.wait_payload(UPD, b'{"id":1,"list":{}}')
        reader.set_tag(make_epc("MLON", 1), -40)
        reader.set_tag(make_epc("BLUE", 1), -62)  # below the default RFID_RSSI_MIN (-58)
        backend.publish("basket/1/status", b"start")
        # both tags are read in every cycle: the melon counting means the blue one was seen too
        at = backend.wait_payload(UPD, b'{"id":1,"list":{"MLON":1}}', start=at)
        backend.publish(CONFIG, b'{"rev":1,"set":{"RFID_RSSI_MIN":-65}}', retain=True)
        backend.wait_payload(UPD, b'{"id":1,"list":{"BLUE":1,"MLON":1}}', start=at)
        assert b'"BLUE"' not in b"".join(backend.payloads(UPD)[:-1])
        # back to the local threshold: a whole set without the key
        at = backend.mark()
        backend.publish(CONFIG, b'{"rev":2,"set":{}}', retain=True)
        backend.wait_payload(UPD, b'{"id":1,"list":{"MLON":1}}', start=at)
        c.assert_no_traceback()
    finally:
        c.close()


def test_the_umqtt_client_takes_configs_too(broker: Broker, backend: Peer) -> None:
    """MQTT_CLIENT=umqtt (MicroPython, micropython-lib's umqtt.simple in lib/)."""
    from tests.support.process import ROOT

    if not (ROOT / "lib" / "umqtt" / "simple.py").exists():
        pytest.skip("lib/umqtt/simple.py missing: run `make board-libs`")
    c = ControllerProc("micropython", broker.port, MQTT_CLIENT="umqtt",
                       MICROPYPATH=mp_path(ROOT / "lib"))
    try:
        c.start()
        backend.publish(CONFIG, b'{"rev":2,"set":{"RFID_ABSENCE":5}}', retain=True)
        c.wait_log("remote config rev 2 applied: RFID_ABSENCE")
        wait_health(backend, config_rev=2, config_error=None)
        m = c.mark()
        backend.publish(CONFIG, b'{"rev":3,"set":{"MQTT_CLIENT_ID":"x"}}', retain=True)
        c.wait_log("remote config refused (rev 2 stays): MQTT_CLIENT_ID: may not be set remotely",
                   start=m)
        wait_health(backend, config_rev=2,
                    config_error="MQTT_CLIENT_ID: may not be set remotely")
        c.assert_no_traceback()
    finally:
        c.close()
