# The link both MQTT clients stand on (umqtt.robust-style: this base sets up and owns every
# attribute it uses; a client adds the protocol): the socket, when a packet last came and went,
# the keepalive pings and the dead-link verdict, and poll(). The policy itself is pure:
# packet.ping_schedule().
from mqtt_controller import packet
from mqtt_controller.compat import readable, ticks_diff, ticks_ms


class Link:
    """A client subclasses this, calls _opened(sock) once connected, _note_rx() / _note_tx()
    on traffic, _pong() on a PINGRESP and _ping_if_due() at the end of service(); it provides
    service(), _send_ping() and, when it holds work, _work_waiting()."""

    def __init__(self, keepalive_s):
        self.keepalive_s = keepalive_s  # the setting (s): the most the link stays quiet; 0: off
        self.sock = None
        self._rx_at = 0  # ticks of the last packet from the broker
        self._tx_at = 0  # ticks of the last write to it
        self._ping_out = False  # a PINGREQ waits for its PINGRESP
        self.refused = []  # optional subscriptions the broker refused on this connection

    # -- state, for the client ----------------------------------------------------------------
    def _opened(self, sock):
        """sock is the link from now on (close() closes it); the keepalive clock starts."""
        self.sock = sock
        self._rx_at = self._tx_at = ticks_ms()
        self._ping_out = False
        self.refused = []

    def take_refused(self):
        """The optional subscriptions (subscribe(..., optional=True)) the broker refused since
        the last call: the link stays up without them."""
        out, self.refused = self.refused, []
        return out

    def _note_rx(self):
        self._rx_at = ticks_ms()

    def _note_tx(self):
        self._tx_at = ticks_ms()

    def _pong(self):
        """A PINGRESP came: True when it answers our PINGREQ."""
        asked = self._ping_out
        self._ping_out = False
        return asked

    def close(self):
        sock, self.sock = self.sock, None
        close_socket(sock)

    # -- keepalive ----------------------------------------------------------------------------
    def _schedule(self):
        now = ticks_ms()
        return packet.ping_schedule(self.keepalive_s, ticks_diff(now, self._rx_at),
                                    ticks_diff(now, self._tx_at), self._ping_out)

    def ping_due_ms(self):
        """ms until the keepalive wants the link looked at (a ping, or the dead-link verdict);
        None with keepalive off."""
        if not self.keepalive_s:
            return None
        return self._schedule()[1]

    def _ping_if_due(self):
        """Pings when the link has been quiet for half the keepalive; raises OSError when the
        broker has been silent for 1.5 x keepalive."""
        if not self.keepalive_s:
            return
        action = self._schedule()[0]
        if action == packet.DEAD:
            raise OSError("no packet from the broker for %d s: link dead"
                          % (self.keepalive_s * 3 // 2))
        if action == packet.PING:
            self._send_ping()
            self._ping_out = True

    # -- the loop's side ----------------------------------------------------------------------
    def next_ms(self):
        """Milliseconds until the link needs service even if nothing arrives."""
        if self.sock is None:
            return None
        if self._work_waiting():
            return 0
        return self.ping_due_ms()

    def poll(self, timeout_ms):
        """Waits at most timeout_ms for traffic (less when the keepalive is due), services the
        link and acknowledges what it handed over; returns the messages."""
        if self.sock is None:
            raise OSError("not connected")
        nxt = self.next_ms()
        wait = timeout_ms if nxt is None else min(timeout_ms, nxt)
        msgs = self.service(readable(self.sock, wait))
        self.send_acks()
        return msgs

    # -- what a client provides ---------------------------------------------------------------
    def service(self, readable=True):
        """Handles what arrived (reading only when `readable`, or when it knows more is
        buffered), then _ping_if_due(); returns [(topic, payload or None if oversized)]."""
        raise NotImplementedError

    def _send_ping(self):
        raise NotImplementedError

    def _work_waiting(self):
        """True when the loop should come back at once (packets read and not handled yet)."""
        return False

    def send_acks(self):
        """Acknowledges the messages service() handed over, once the caller handled them."""

    def drop_acks(self):
        """The messages service() handed over were not handled (the basket is stopping): they
        stay unacknowledged, and the broker delivers them again."""


def close_socket(sock):
    """Closes sock (None: nothing to close); a link already broken may fail to: no matter."""
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
