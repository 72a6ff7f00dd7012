"""ITEM_SOURCE=stdin: items typed on standard input reach the cart, and the end of input (a
closed pipe, /dev/null under a service manager) leaves an idle basket that sleeps, not spins."""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.common import cpu_ns
from tests.support.peer import Peer
from tests.support.process import ControllerProc


def test_end_of_stdin_leaves_an_idle_basket(backend: Peer,
                                            controller: Callable[..., ControllerProc]) -> None:
    c = controller(ITEM_SOURCE="stdin")
    c.start(stdin=True)
    backend.publish("basket/1/status", b"start")
    c.wait_log("session started")
    mark = backend.mark()
    c.send(b"MLON\nBLUE\n")
    c.close_stdin()
    backend.wait_payload("basket/1/update", b'{"id":1,"list":{"BLUE":1,"MLON":1}}', start=mark)
    c.wait_log("end of input on standard input")
    before = cpu_ns(c.pid)
    time.sleep(2.0)
    used = (cpu_ns(c.pid) - before) / 1e9
    assert used < 0.2, "%.2f s of CPU in 2 s after the end of input: busy loop" % used
    assert c.alive()  # still running: commands keep working
    backend.publish("basket/1/status", b"end")
    c.wait_log("session ended")
