"""The whole system: real Mosquitto, the backend service, and the real controller under both
interpreters. start from the command line -> items -> running totals at the basket ->
checkout writes a receipt and ends the session."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.support.broker import Broker
from tests.support.process import ControllerProc
from tests.support.service_proc import ServiceProc, cli, service_env

MLON, BLUE, APPL = 13900, 14980, 26900  # data/catalog_sample.csv


def test_full_loop_with_the_real_basket(controller: Callable[..., ControllerProc],
                                        broker: Broker, tmp_path: Path) -> None:
    env = service_env(broker.port, {"BASKET_DB": str(tmp_path / "basket.db")})
    svc = ServiceProc(env).start()
    try:
        c = controller().start()
        svc.wait_line(r"basket 1 is online")
        r = cli(env, "start", "1")
        assert r.returncode == 0, r.stderr
        c.wait_log("session started")
        mark = c.mark()
        c.items("MLON", "MLON", "BLUE")
        c.wait_log("TOTAL %s KRW" % format(2 * MLON + BLUE, ","), start=mark)
        mark = c.mark()
        c.items("-MLON", "APPL=2")
        expected = MLON + BLUE + 2 * APPL
        c.wait_log("[display] basket 1 | 4 items | TOTAL %s KRW" % format(expected, ","),
                   start=mark)
        mark = c.mark()
        r = cli(env, "checkout", "1")
        assert r.returncode == 0, r.stderr
        assert "total %d won" % expected in r.stdout
        c.wait_log("session ended", start=mark)
        receipts = [json.loads(x) for x in cli(env, "receipts", "--json").stdout.splitlines()]
        assert [(rc["basket"], rc["total"]) for rc in receipts] == [(1, expected)]
        lines = {ln["code"]: ln["count"] for ln in receipts[0]["lines"]}
        assert lines == {"MLON": 1, "BLUE": 1, "APPL": 2}
        # After the session the basket is idle: items are ignored, nothing is priced.
        mark = c.mark()
        c.items("MLON")
        c.wait_log("ignored", start=mark)
    finally:
        svc.stop()
