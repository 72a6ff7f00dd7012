"""YRM100 emulator on a pty -> the controller with ITEM_SOURCE=rfid:<pty> -> real Mosquitto ->
a paho peer sees the cart follow the tags: appear, weaken below the threshold, disappear."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.peer import Peer
from tests.support.process import ControllerProc
from tools.yrm100_emulator import Yrm100Emulator, make_epc

UPD = "basket/1/update"


@pytest.fixture
def readers() -> Iterator[list[Yrm100Emulator]]:
    emus = [Yrm100Emulator(), Yrm100Emulator()]
    yield emus
    for e in emus:
        e.close()


def test_tags_drive_the_cart(controller: Callable[..., ControllerProc], backend: Peer,
                             readers: list[Yrm100Emulator]) -> None:
    a, b = readers
    c = controller(ITEM_SOURCE="rfid:%s,%s" % (a.path, b.path), RFID_CYCLE_MS="200",
                   RFID_ABSENCE="2").start()
    at = backend.wait_payload(UPD, b'{"id":1,"list":{}}')
    melon1, melon2, blue = make_epc("MLON", 1), make_epc("MLON", 2), make_epc("BLUE", 1)
    a.set_tag(melon1, -40)
    b.set_tag(melon2, -45)  # the second reader sees the other melon
    b.set_tag(blue, -70)  # too weak: below RFID_RSSI_MIN (-58)
    backend.publish("basket/1/status", b"start")
    at = backend.wait_payload(UPD, b'{"id":1,"list":{"MLON":2}}', start=at)
    b.set_tag(blue, -50)  # now strong enough
    at = backend.wait_payload(UPD, b'{"id":1,"list":{"BLUE":1,"MLON":2}}', start=at)
    b.set_tag(melon2, -80)  # weakens below the threshold: it leaves
    at = backend.wait_payload(UPD, b'{"id":1,"list":{"BLUE":1,"MLON":1}}', start=at)
    a.remove_tag(melon1)
    b.remove_tag(blue)
    backend.wait_payload(UPD, b'{"id":1,"list":{}}', start=at)
    assert "Traceback" not in c.output()
