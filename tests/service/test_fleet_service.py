"""Fleet health and remote configuration against a real Mosquitto and the service as a
process, on both databases: health reports stored (the latest wins), a bad one counted,
events only on changes, alerts, the `health` table, `config set` / `config show`."""

from __future__ import annotations

import json

from tests.support.fake_basket import encode_health, health_doc
from tests.support.peer import Peer
from tests.support.service_proc import cli, service_env

DOWN = [{"last_read_s": None, "name": "/dev/ttyUSB0", "state": "down"}]


def health_rows(env: dict[str, str]) -> dict[int, dict[str, object]]:
    r = cli(env, "health", "--json")
    assert r.returncode == 0, r.stderr
    return {d["basket"]: d for d in map(json.loads, r.stdout.splitlines())}


def test_health_ingest_events_alerts_and_table(broker, any_db, baskets, services):
    env = service_env(broker.port, any_db)
    svc = services(env).start()
    b1, b2 = baskets(1), baskets(2)
    b1.online()
    svc.wait_line(r"basket 1 is online")
    m = svc.mark()
    b1.health()
    svc.wait_line(r"basket 1: health report stored; version None -> 0.1.0", start=m)
    m = svc.mark()
    b1.health(uptime_s=3660)
    svc.wait_line(r"basket 1: health report stored$", start=m)  # nothing changed
    m = svc.mark()
    b1.health(uptime_s=3720, readers=DOWN, rssi=-61, battery_mv=3900)
    svc.wait_line(r"basket 1: health report stored; reader /dev/ttyUSB0 ok -> down$", start=m)

    # A bad report: counted, not stored.
    m = svc.mark()
    b2.send_raw(encode_health(health_doc(1)), topic="basket/2/health")  # another basket's id
    svc.wait_line(r"rejected basket/2/health: bad_health: id 1 on basket 2's topic", start=m)
    b2.send_raw(b"x" * 600, topic="basket/2/health")
    svc.wait_line(r"rejected basket/2/health: bad_health: 600 bytes", start=m)
    stats = cli(env, "stats").stdout
    assert "rejected.bad_health 2" in stats, stats

    rows = health_rows(env)
    assert sorted(rows) == [1]  # basket 2 sent nothing valid
    r1 = rows[1]
    assert (r1["uptime_s"], r1["rssi"], r1["battery_mv"], r1["online"]) == (3720, -61, 3900, True)
    assert r1["readers"] == DOWN
    assert [a["kind"] for a in r1["alerts"]] == ["reader_down"]  # type: ignore[union-attr]

    table = cli(env, "health")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["BASKET", "VERSION", "UPTIME", "LAST", "SEEN", "RSSI",
                                "READERS", "BATTERY", "ALERTS"]
    row = lines[1]
    for part in ("1 ", "0.1.0", "1h02m", " ago", "-61", "0/1 ok (/dev/ttyUSB0 down)",
                 "3900 mV", "reader_down: reader /dev/ttyUSB0 down"):
        assert part in row, (part, row)

    # The history: the first report's values, the reader going down, online; nothing else.
    from basket_service import config, fleet
    from basket_service.db import open_db

    db = open_db(config.load(env))
    try:
        got = [(e["what"], e["old"], e["new"]) for e in reversed(fleet.history(db, 1))]
    finally:
        db.close()
    assert got == [("online", None, "online"), ("version", None, "0.1.0"),
                   ("display", None, "ok"), ("config_rev", None, "0"),
                   ("reader /dev/ttyUSB0", None, "ok"), ("reader /dev/ttyUSB0", "ok", "down")]


def test_retained_health_is_read_at_start_with_a_share_group(broker, any_db, baskets, services):
    b3 = baskets(3)
    b3.health(display="failed", version="0.1.1")
    env = service_env(broker.port, any_db)
    svc = services(env, "--share-group", "fleet").start()
    svc.wait_line(r"basket 3: health report stored; version None -> 0.1.1")
    r3 = health_rows(env)[3]
    assert r3["display"] == "failed" and r3["version"] == "0.1.1"
    assert [a["kind"] for a in r3["alerts"]] == ["display_failed"]  # type: ignore[union-attr]


def test_config_set_publishes_retained_merged_sets(broker, any_db, baskets, services):
    env = service_env(broker.port, any_db)
    watcher = Peer(broker.port)
    watcher.subscribe("basket/+/config")
    try:
        r = cli(env, "config", "set", "--baskets", "1-2", "RFID_RSSI_MIN=-60")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [
            'basket 1: config rev 1 published {"rev":1,"set":{"RFID_RSSI_MIN":-60}}',
            'basket 2: config rev 1 published {"rev":1,"set":{"RFID_RSSI_MIN":-60}}']
        watcher.wait_payload("basket/2/config", b'{"rev":1,"set":{"RFID_RSSI_MIN":-60}}')

        r = cli(env, "config", "set", "--baskets", "1", "LOG_LEVEL=DEBUG", "RFID_POWER=20")
        assert r.returncode == 0, r.stderr
        want = b'{"rev":2,"set":{"LOG_LEVEL":"debug","RFID_POWER":20,"RFID_RSSI_MIN":-60}}'
        watcher.wait_payload("basket/1/config", want)

        # Refused before anything is written or published: an unsafe key, a bad value.
        for args, why in ((["MQTT_HOST=evil.example", "RFID_RSSI_MIN=-50"],
                           "error: MQTT_HOST: cannot be set remotely"),
                          (["RFID_RSSI_MIN=-500"],
                           "error: RFID_RSSI_MIN: must be a whole number from -128 to 0"),
                          (["LOG_LEVEL"], "error: settings must be KEY=VALUE")):
            r = cli(env, "config", "set", "--baskets", "1", *args)
            assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
            assert r.stderr.startswith(why) and len(r.stderr.splitlines()) == 1, r.stderr
            assert r.stdout == ""
        r = cli(env, "config", "set", "--baskets", "1-x", "LOG_LEVEL=info")
        assert r.returncode == 2 and "--baskets must be" in r.stderr, r.stderr

        # A marker after the refusals: nothing was published for basket 1 in between.
        m = watcher.mark()
        assert cli(env, "config", "set", "--baskets", "2", "HEALTH_INTERVAL_S=30").returncode == 0
        watcher.wait_payload("basket/2/config",
                             b'{"rev":2,"set":{"HEALTH_INTERVAL_S":30,"RFID_RSSI_MIN":-60}}',
                             start=m)
        assert [t for t, _, _ in watcher.messages[m:]] == ["basket/2/config"]
    finally:
        watcher.close()

    # Retained: a basket that subscribes later gets its whole set.
    late = Peer(broker.port, "basket1", "basket1-pw")
    try:
        late.subscribe("basket/1/config")
        late.wait_payload("basket/1/config", want)
        assert late.messages[0][2] is True  # the retained copy
    finally:
        late.close()

    # `show`: desired rev and set; applied rev and config_error from the latest report.
    svc = services(env).start()
    b1 = baskets(1)
    b1.health(config_rev=1, config_error="RFID_POWER: must be 10-30")
    svc.wait_line(r"basket 1: health report stored")
    r = cli(env, "config", "show", "--json")
    assert r.returncode == 0, r.stderr
    shown = {d["basket"]: d for d in map(json.loads, r.stdout.splitlines())}
    assert sorted(shown) == [1, 2]
    assert shown[1]["desired_rev"] == 2 and shown[1]["set"] == {
        "LOG_LEVEL": "debug", "RFID_POWER": 20, "RFID_RSSI_MIN": -60}
    assert (shown[1]["config_rev"], shown[1]["config_error"]) == (1, "RFID_POWER: must be 10-30")
    assert (shown[2]["desired_rev"], shown[2]["config_rev"]) == (2, None)
    text = cli(env, "config", "show", "--baskets", "1").stdout
    assert text.startswith("basket 1  desired rev 2 {") and "applied rev 1" in text, text
    rows = health_rows(env)
    assert rows[1]["desired_rev"] == 2
    assert [a["kind"] for a in rows[1]["alerts"]] == ["config_rejected"]  # type: ignore[union-attr]

    # `all`: every basket the database knows.
    r = cli(env, "config", "set", "--baskets", "all", "RFID_CYCLE_MS=250")
    assert r.returncode == 0, r.stderr
    assert [ln.split(":")[0] for ln in r.stdout.splitlines()] == ["basket 1", "basket 2"]
    assert "config rev 3" in r.stdout.splitlines()[0]


def test_config_set_with_the_broker_down_writes_nothing(broker, any_db):
    env = service_env(broker.port, any_db)
    broker.stop()
    r = cli(env, "config", "set", "--baskets", "1", "RFID_RSSI_MIN=-60")
    assert r.returncode == 1 and "cannot reach MQTT broker" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1
    r = cli(env, "config", "show", "--baskets", "1", "--json")
    assert json.loads(r.stdout)["desired_rev"] is None
