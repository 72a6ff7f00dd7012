"""The state file against a failing disk and against bad entries: the controller under both
interpreters, a real Mosquitto, paho as the service. The tests run as root, which chmod does
not stop, so a write is made to fail by turning the file's directory into a regular file
(ENOTDIR for everyone)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.peer import Peer
from tests.support.process import ControllerProc

UPD = "basket/1/update"
STATUS = "basket/1/status"


class Disk:
    """A state directory that can be made to refuse every write and given back."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="basket-disk-"))
        self.dir = self.root / "state"
        self.dir.mkdir()
        self.file = self.dir / "state.json"
        self._aside = self.root / "state.aside"

    def fail(self) -> None:
        self.dir.rename(self._aside)
        self.dir.write_text("not a directory\n")

    def restore(self) -> None:
        self.dir.unlink()
        self._aside.rename(self.dir)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def test_a_refused_state_write_is_retried_and_holds_the_update(
        controller: Callable[..., ControllerProc], broker: Broker, backend: Peer) -> None:
    disk = Disk()
    try:
        c = controller(CART_STATE_FILE=str(disk.file)).start()
        backend.publish(STATUS, b"start")
        c.wait_log("session started")
        c.items("APPL")
        at = backend.wait_payload(UPD, b'{"id":1,"list":{"APPL":1}}')
        assert json.loads(disk.file.read_text())["list"] == {"APPL": 1}

        disk.fail()  # the disk is full
        mark = c.mark()
        c.items("MLON")
        c.wait_log("cannot write state file", start=mark)
        c.items("MLON")
        time.sleep(3.5)  # retried after 1 s and 2 s meanwhile
        newer = [p for p in backend.payloads(UPD)[at:] if b"MLON" in p]
        assert newer == [], newer  # nothing published while its state is not on disk
        out = c.output(mark)
        assert out.count("cannot write state file") == 1, out  # once per streak
        assert "Traceback" not in out

        disk.restore()  # space is back: the next retry lands, then the update goes out
        backend.wait_payload(UPD, b'{"id":1,"list":{"APPL":1,"MLON":2}}', start=at, timeout=8)
        assert json.loads(disk.file.read_text())["list"] == {"APPL": 1, "MLON": 2}
        c.wait_log("failed attempt(s)", start=mark)

        # A restart publishes the newest cart, never the one from before the failure.
        c.kill()
        peer = Peer(broker.port)
        try:
            peer.subscribe(UPD)
            peer.wait_payload(UPD, b'{"id":1,"list":{"APPL":1,"MLON":2}}')  # retained
            mark2 = peer.mark()
            c.start()
            c.wait_log("restored shopping state with 3 item(s)")
            peer.wait_payload(UPD, b'{"id":1,"list":{"APPL":1,"MLON":2}}', start=mark2)
            time.sleep(0.3)
            assert set(peer.payloads(UPD)[mark2:]) == {b'{"id":1,"list":{"APPL":1,"MLON":2}}'}
        finally:
            peer.close()
    finally:
        disk.close()


def _many(n: int) -> dict[str, int]:
    return {"C%03d" % i: 1 for i in range(n)}


BAD_STATES = {
    "unknown-shaped code": {"state": "shopping", "list": {"no such code!": 1}},
    "count 5000": {"state": "shopping", "list": {"MLON": 5000}},
    "count -3": {"state": "shopping", "list": {"MLON": -3}},
    "100 codes": {"state": "shopping", "list": _many(100)},
    "wrong types": {"state": "shopping", "list": {"MLON": "2", "APPL": [1]}},
}


@pytest.mark.parametrize("case", sorted(BAD_STATES))
def test_state_file_with_out_of_range_entries_starts_idle(
        controller: Callable[..., ControllerProc], backend: Peer, case: str) -> None:
    c = controller()
    c.state_file.write_text(json.dumps(BAD_STATES[case]))
    c.start(wait_connected=False)
    deadline = time.monotonic() + 15
    while "connected to" not in c.output() and time.monotonic() < deadline:
        assert c.proc is not None
        if c.proc.poll() is not None:
            raise AssertionError("the basket stopped (exit %s):\n%s" % (c.returncode,
                                                                        c.output()))
        time.sleep(0.05)
    c.wait_log("connected to")
    out = c.output()
    assert "WARNING" in out and "starting idle" in out, out
    assert "configuration error" not in out and "Traceback" not in out, out
    assert "[display] basket 1 | ready" in out, out
    backend.wait_payload(UPD, b'{"id":1,"list":{}}')
    c.items("MLON")  # idle: items are ignored until `start`
    c.wait_log("ignored")
    assert c.alive()
    c.signal(2)
    assert c.wait() != 2
