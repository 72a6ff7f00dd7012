"""Malformed and spoofed updates are rejected, logged and counted; the service keeps going."""

from __future__ import annotations

import json

from tests.support.service_proc import cli, service_env

BAD = [
    # (topic suffix or full topic, payload, reason counted)
    ("basket/1/update", b'{"id":2,"list":{"MLON":1}}', "id_mismatch"),
    ("basket/1/update", b'{"id":1,"list":{"MLON":1}', "bad_json"),
    ("basket/1/update", b"\xff\xfe", "bad_json"),
    ("basket/1/update", b'{"id":1,"list":{"MLON":1,"MLON":2}}', "bad_json"),
    ("basket/1/update", b'{"id":1,"list":["MLON"]}', "bad_shape"),
    ("basket/1/update", b'{"id":"1","list":{}}', "bad_shape"),
    ("basket/1/update", b'{"id":1,"list":{},"x":1}', "bad_shape"),
    ("basket/1/update", b'{"id":1,"list":{"MLON":-1}}', "bad_count"),
    ("basket/1/update", b'{"id":1,"list":{"MLON":1000}}', "bad_count"),
    ("basket/1/update", b'{"id":1,"list":{"MLON":1.5}}', "bad_count"),
    ("basket/1/update", b'{"id":1,"list":{"MLON":true}}', "bad_count"),
    ("basket/1/update", b'{"id":1,"list":{"ML ON":1}}', "bad_code"),
    ("basket/1/update", b'{"id":1,"list":{"' + b"A" * 33 + b'":1}}', "bad_code"),
    ("basket/1/update", json.dumps({"id": 1, "list": {"C%d" % i: 1 for i in range(65)}},
                                   separators=(",", ":")).encode(), "too_many_codes"),
    ("basket/1/update", b'{"id":1,"list":{}}' + b" " * 5000, "oversized"),
    ("basket/1/update", b"[" * 3000, "bad_json"),
    ("basket/abc/update", b'{"id":1,"list":{}}', "bad_topic_id"),
    ("basket/01/update", b'{"id":1,"list":{}}', "bad_topic_id"),
    ("basket/1/availability", b"maybe", "bad_availability"),
]


def test_service_rejects_and_counts_bad_updates(broker, sqlite_db, baskets, services):
    env = service_env(broker.port, sqlite_db)
    svc = services(env).start()
    b1 = baskets(1)
    b2 = baskets(2)
    for i, (topic, payload, _) in enumerate(BAD, start=1):
        b1.send_raw(payload, topic=topic)
        # One at a time: a newer message of the basket that comes while this one still waits
        # for the worker would supersede it unread (counted as superseded, not rejected).
        svc.wait_line(r"rejected so far: %d\b" % i)

    # Still alive and pricing: a good update after all that gets its total.
    b1.send({"MLON": 1})
    b1.wait_total(13900)
    # A spoofed update on basket 2's topic claiming to be basket 1 changes nothing.
    b2.send_raw(b'{"id":1,"list":{"MLON":999}}', topic="basket/2/update")
    svc.wait_line(r"rejected so far: %d\b" % (len(BAD) + 1))

    stats = dict(line.split() for line in cli(env, "stats").stdout.splitlines())
    want: dict[str, int] = {}
    for _, _, reason in BAD + [("", b"", "id_mismatch")]:
        want["rejected." + reason] = want.get("rejected." + reason, 0) + 1
    assert {k: int(v) for k, v in stats.items() if k.startswith("rejected.")} == want
    assert int(stats["rejected"]) == len(BAD) + 1

    hist = [json.loads(x) for x in cli(env, "history", "--json").stdout.splitlines()]
    assert [(h["basket"], h["cart"]) for h in hist] == [(1, {"MLON": 1})]
    assert b1.totals() == [13900] and b2.totals() == []
    assert svc.count("Traceback") == 0
    assert svc.proc is not None and svc.proc.poll() is None
