"""`release status`, /api/fleet and the fleet's history follow an update from the baskets'
health reports (their `ota` field), against a real Mosquitto and the service as a process, on
both databases: the pushed release beside the version each basket runs, its update's state and
error; a report without `ota` (an older basket) kept as before, a bad `ota` rejected."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from basket_service import config, fleet
from basket_service.db import open_db
from basket_service.web.routes import create_app
from tests.support.fake_basket import encode_health, health_doc
from tests.support.service_proc import cli, service_env

V = "2.0.0"


def status(env: dict[str, str], *args: str) -> dict[int, dict[str, object]]:
    r = cli(env, "release", "status", "--json", *args)
    assert r.returncode == 0, r.stderr
    return {d["basket"]: d for d in map(json.loads, r.stdout.splitlines())}


def test_status_follows_the_health_reports(broker, any_db, baskets, services, tmp_path: Path):
    keys = tmp_path / "ota-keys.json"
    keys.write_text(json.dumps({"1": "a" * 64, "2": "b" * 64, "3": "c" * 64}))
    keys.chmod(0o600)
    env = service_env(broker.port, any_db, RELEASE_DIR=str(tmp_path / "releases"),
                      RELEASE_URL="http://127.0.0.1:8080", OTA_KEYS_FILE=str(keys))
    assert cli(env, "release", "add", "--version", V).returncode == 0
    svc = services(env).start()
    b1, b2, b3 = baskets(1), baskets(2), baskets(3)

    m = svc.mark()
    b1.health(ota={"error": None, "state": "idle", "version": None})
    b2.health(ota=None)  # updates off on this basket
    b3.health()  # an older basket: no `ota` at all
    for n in (1, 2, 3):
        svc.wait_line(r"basket %d: health report stored" % n, start=m)
    r = cli(env, "release", "push", V, "--baskets", "1-3")
    assert r.returncode == 0, r.stderr

    rows = status(env)
    assert sorted(rows) == [1, 2, 3]
    assert rows[1] == {"basket": 1, "pushed": V, "reported": True, "running": "0.1.0",
                       "ota_state": "idle", "ota_version": None, "ota_error": None}
    assert rows[2]["ota_state"] is None and rows[3]["ota_state"] is None
    table = cli(env, "release", "status").stdout.splitlines()
    assert table[0].split() == ["BASKET", "PUSHED", "RUNNING", "UPDATE", "ERROR"]
    assert table[1].split() == ["1", V, "0.1.0", "idle", "-"]
    assert table[2].split() == ["2", V, "0.1.0", "off", "-"]

    # The update goes on: basket 1 downloads, stages, runs it on trial, confirms it; basket 2
    # (updates turned on meanwhile) rolls back with the reason.
    for state in ("deferred", "downloading", "staged", "trial"):
        m = svc.mark()
        b1.health(ota={"error": None, "state": state, "version": V})
        svc.wait_line(r"basket 1: health report stored; ota .+ -> %s %s$" % (state, V), start=m)
        assert status(env, "--baskets", "1")[1]["ota_state"] == state
    m = svc.mark()
    b1.health(version=V, ota={"error": None, "state": "ok", "version": V})
    b2.health(ota={"error": "ImportError: no module named 'nope'", "state": "rolled_back",
                   "version": V})
    svc.wait_line(r"basket 1: health report stored; version 0.1.0 -> %s" % V, start=m)
    svc.wait_line(r"basket 2: health report stored; .*ota_error None -> ImportError", start=m)
    rows = status(env)
    assert (rows[1]["running"], rows[1]["ota_state"], rows[1]["ota_version"]) == (V, "ok", V)
    assert (rows[2]["running"], rows[2]["ota_state"]) == ("0.1.0", "rolled_back")
    assert rows[2]["ota_error"] == "ImportError: no module named 'nope'"
    table = cli(env, "release", "status", "--baskets", "2").stdout.splitlines()
    assert table[1].split()[:4] == ["2", V, "0.1.0", "rolled_back"]
    assert table[1].endswith("ImportError: no module named 'nope'")

    # The same on /api/fleet (the fleet page's source) and in the history.
    with TestClient(create_app(config.load(env)), base_url="http://127.0.0.1:8080") as c:
        api = {r["basket"]: r for r in c.get("/api/fleet").json()}
    assert api[1]["ota"] == {"state": "ok", "version": V, "error": None}
    assert api[1]["pushed_version"] == V and api[1]["version"] == V
    assert api[2]["ota"]["state"] == "rolled_back" and api[3]["ota"] is None
    db = open_db(config.load(env))
    try:
        changes = [(e["what"], e["new"]) for e in reversed(fleet.history(db, 1))
                   if e["what"] == "ota"]
    finally:
        db.close()
    assert changes == [("ota", "idle -"), ("ota", "deferred " + V), ("ota", "downloading " + V),
                       ("ota", "staged " + V), ("ota", "trial " + V), ("ota", "ok " + V)]

    # A bad `ota` is a bad report: counted, not stored.
    m = svc.mark()
    b3.send_raw(encode_health(health_doc(3, ota={"state": "exploded"})), topic="basket/3/health")
    svc.wait_line(r"rejected basket/3/health: bad_health: ota is not null or", start=m)
    m = svc.mark()
    b3.send_raw(encode_health(health_doc(3, ota="ok")), topic="basket/3/health")
    svc.wait_line(r"rejected basket/3/health: bad_health: ota is not null or", start=m)
    assert "rejected.bad_health 2" in cli(env, "stats").stdout
    assert status(env, "--baskets", "3")[3]["ota_state"] is None
