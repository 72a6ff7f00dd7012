# link.Link, the base both MQTT clients share: its own state, the keepalive pings, the dead-link
# verdict and poll(), against a socket that only records (no network).
from _util import raises

from mqtt_controller import packet
from mqtt_controller.compat import ticks_add, ticks_ms
from mqtt_controller.link import Link
from mqtt_controller.mqtt import MQTTClient


class Sock:
    def __init__(self):
        self.closed = 0
        self.sent = bytearray()

    def recv(self, n):
        raise OSError(11, "would block")

    def send(self, data):
        self.sent.extend(data)
        return len(data)

    def close(self):
        self.closed += 1


class Pinger(Link):
    """The smallest client: counts what the base asks of it."""

    def __init__(self, keepalive_s):
        super().__init__(keepalive_s)
        self.pings = 0
        self.acked = 0
        self.serviced = []

    def service(self, readable=True):
        self.serviced.append(readable)
        self._ping_if_due()
        return []

    def send_acks(self):
        self.acked += 1

    def _send_ping(self):
        self.pings += 1
        self._note_tx()


def quiet_for(link, ms):
    """As if nothing came or went for ms."""
    link._rx_at = link._tx_at = ticks_add(ticks_ms(), -ms)


def test_the_base_sets_up_its_own_state():
    link = Pinger(60)
    assert (link.keepalive_s, link.sock, link.next_ms()) == (60, None, None)
    raises(OSError, link.poll, 0)
    sock = Sock()
    link._opened(sock)
    assert link.sock is sock
    assert 29000 <= link.ping_due_ms() <= 30000 and link.next_ms() == link.ping_due_ms()
    link.close()
    link.close()
    assert (sock.closed, link.sock) == (1, None)


def pollable():
    import socket

    return socket.socket()  # never connected: poll() has something to say about it at once


def test_keepalive_off_never_pings_nor_declares_the_link_dead():
    link = Pinger(0)
    link._opened(pollable())
    quiet_for(link, 10 ** 6)
    assert link.ping_due_ms() is None and link.next_ms() is None
    assert link.poll(0) == [] and link.pings == 0
    link.close()


def test_a_quiet_link_pings_once_then_waits_for_the_answer():
    link = Pinger(60)
    link._opened(pollable())
    quiet_for(link, 30000)
    assert link.ping_due_ms() == 0
    assert link.poll(1000) == []
    assert (link.pings, link.acked, len(link.serviced)) == (1, 1, 1)
    link._tx_at = link._rx_at  # the ping went out long ago and nothing came back
    link.service(False)
    assert link.pings == 1  # one ping out at a time
    assert link._pong() and not link._pong()  # the answer; then a PINGRESP never asked for
    link.close()


def test_a_silent_broker_is_a_dead_link_after_one_and_a_half_keepalives():
    link = Pinger(60)
    link._opened(Sock())
    quiet_for(link, 90000)
    e = raises(OSError, link.service, False)
    assert "no packet from the broker for 90 s: link dead" in str(e)


def test_the_builtin_client_pings_on_the_wire():
    c = MQTTClient("t", "127.0.0.1", keepalive=2)
    c._opened(Sock())
    quiet_for(c, 1000)
    assert c.service(False) == []
    assert bytes(c.sock.sent) == packet.pingreq()
    assert 1900 <= c.next_ms() <= 2000  # now only the dead-link verdict: 3 s after a packet
