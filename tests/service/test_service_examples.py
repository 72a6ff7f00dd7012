"""The two examples against a real broker: the subscriber sees every basket topic, the
publisher sends start, a total and end to one basket."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time

from tests.support.fake_basket import total_message
from tests.support.service_proc import ROOT, service_env


def test_service_examples_publish_and_watch(broker, baskets, tmp_path):
    env = service_env(broker.port, {"BASKET_DB": str(tmp_path / "b.db")})
    b1 = baskets(1)
    b1.send({"MLON": 1})
    watcher = subprocess.Popen([sys.executable, "examples/mqtt_subscriber.py"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert watcher.stdout is not None
    out = watcher.stdout
    threading.Thread(target=lambda: [lines.put(x.rstrip("\n")) for x in out], daemon=True).start()
    seen: list[str] = []

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 10
        while text not in seen:
            seen.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))

    try:
        wait_for('basket/1/update (retained) {"id":1,"list":{"MLON":1}}')
        r = subprocess.run([sys.executable, "examples/mqtt_publish_examples.py", "--basket", "1",
                            "--total", "13900", "--pause", "0"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        b1.wait_status(b"end")
        assert b1.statuses() == [b"start", total_message(1, 13900), b"end"]
        wait_for("basket/1/status end")
        assert "basket/1/status start" in seen
        assert "basket/1/status " + total_message(1, 13900).decode() in seen
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(10)
