# MQTT_CLIENT=umqtt: micropython-lib's umqtt.simple behind the client interface the runtime
# uses (mqtt.MQTTClient's), for boards that already ship it. umqtt.simple blocks: publish(qos=1)
# and subscribe() wait for their acknowledgement, so nothing is ever in flight here; it
# acknowledges each message as it reads it (send_acks() and drop_acks() are the base's no-ops).
# Keepalive pings and dead-link detection come from link.Link. The built-in client stays the
# default.
import select

from mqtt_controller.link import Link, close_socket
from mqtt_controller.packet import REFUSALS, MQTTException

_MAX_READS = 16  # packets handled per service() call: a flood cannot starve the loop


def client_for(cfg):
    """The client the runtime should use for cfg: None (the built-in one) or a UMQTTClient.
    Raises ValueError naming MQTT_CLIENT when umqtt cannot be used."""
    if getattr(cfg, "mqtt_client", "builtin") != "umqtt":
        return None
    if cfg.tls:
        raise ValueError("MQTT_CLIENT: umqtt does not do TLS here; use MQTT_CLIENT=builtin "
                         "with MQTT_TLS=1")
    try:
        from umqtt.simple import MQTTClient as Simple  # noqa: F401
    except ImportError:
        raise ValueError("MQTT_CLIENT: umqtt.simple is not installed (`make board-libs` puts it "
                         "in lib/; most ESP32 firmware has it built in)")
    return UMQTTClient(cfg.client_id, cfg.host, cfg.port, cfg.user, cfg.password,
                       cfg.keepalive)


class UMQTTClient(Link):
    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive=60,
                 clean_session=False, max_packet=4096, timeout_ms=10000):
        from umqtt.simple import MQTTClient as Simple

        super().__init__(keepalive)
        if user is not None and password is None:
            password = ""  # umqtt.simple sends the password field whenever a user is given
        self.c = Simple(client_id, host, port, user, password, keepalive)
        self.c.set_callback(self._on_message)
        self.clean_session = clean_session
        self.max_packet = max_packet
        self.timeout_ms = timeout_ms
        self.inflight = {}  # umqtt acknowledges QoS 1 before publish() returns: always empty
        self._queue = []

    def _on_message(self, topic, msg):
        if isinstance(topic, (bytes, bytearray)):
            topic = bytes(topic).decode()
        if len(msg) > self.max_packet:  # already read: umqtt has no bound, we only refuse it
            msg = None
        self._queue.append((topic, msg))

    # -- connection ---------------------------------------------------------------------------
    def set_last_will(self, topic, payload, retain=False, qos=0):
        self.c.set_last_will(topic, payload, retain, qos)

    def connect(self):
        """Returns session_present; OSError for the link, MQTTException for a refusal."""
        self.close()
        self._queue = []
        try:
            present = self.c.connect(clean_session=self.clean_session)
        except OSError:
            self.close()
            raise
        except Exception as e:  # umqtt: MQTTException(code), or AssertionError on a bad CONNACK
            self.close()
            raise _translate(e)
        self._opened(self.c.sock)
        return bool(present)

    def disconnect(self):
        if self.sock is not None:
            try:
                self.c.disconnect()
            except OSError:
                pass
        self.close()

    def close(self):
        sock, self.c.sock = self.c.sock, None
        if sock is not self.sock:  # umqtt's socket of a connect() that failed half-way
            close_socket(sock)
        super().close()

    # -- blocking calls, with a read timeout so a dead link cannot hang them ------------------
    def _blocking(self, fn, *args):
        if self.sock is None:
            raise OSError("not connected")
        self.sock.settimeout(self.timeout_ms / 1000)
        try:
            result = fn(*args)
        except OSError:
            raise
        except Exception as e:
            raise _translate(e)
        self._note_tx()
        self._note_rx()
        return result

    def subscribe(self, topic, qos=1, optional=False):
        try:
            self._blocking(self.c.subscribe, topic, qos)
        except MQTTException as e:  # umqtt.simple raises on SUBACK 0x80 (code 5 here)
            if not optional or e.code != 5:
                raise
            self.refused.append(topic)

    def publish(self, topic, payload, retain=False, qos=0):
        self._blocking(self.c.publish, topic, payload, retain, qos)
        return 0

    # -- the loop's side ----------------------------------------------------------------------
    def service(self, readable=True):
        if self.sock is None:
            raise OSError("not connected")
        if readable:
            p = select.poll()
            p.register(self.sock, select.POLLIN)
            n = 0
            while n < _MAX_READS and p.poll(0):
                n += 1
                try:
                    op = self.c.check_msg()  # reads one whole packet; EOF raises OSError
                except OSError:
                    raise
                except Exception as e:
                    raise _translate(e)
                self._note_rx()
                if op is not None:  # not a PUBLISH or PINGRESP: umqtt left its body unread
                    self._skip_body(op)
                else:  # a PINGRESP, or a PUBLISH: either way the broker is there
                    self._pong()
        self._ping_if_due()
        msgs, self._queue = self._queue, []
        return msgs

    def _skip_body(self, op):
        self.sock.setblocking(True)
        self.sock.settimeout(self.timeout_ms / 1000)
        n = self.c._recv_len()
        while n > 0:
            chunk = self.sock.read(min(n, 256))
            if not chunk:
                raise OSError("connection closed by the broker")
            n -= len(chunk)
        if op & 0xF0 == 0x20:
            raise MQTTException("unexpected CONNACK")

    def _send_ping(self):
        self.sock.setblocking(True)
        self.c.ping()
        self._note_tx()

    def _work_waiting(self):
        return bool(self._queue)


def _translate(e):
    """umqtt.simple's exceptions as the project's: a refusal keeps its return code."""
    if isinstance(e, MQTTException):
        return e
    code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
    if type(e).__name__ == "MQTTException" and code == 0x80:
        return MQTTException("subscription refused: not authorized", 5)
    if type(e).__name__ == "MQTTException" and code:
        return MQTTException("connection refused: %s" % REFUSALS.get(code, "code %d" % code),
                             code)
    return MQTTException("umqtt: %s %s" % (type(e).__name__, e))
