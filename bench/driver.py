"""The paho-mqtt driver of the round-trip benchmarks: logs in as the backend (the only user
allowed to write basket/<n>/status), sends a command and waits for the basket's update. One
thread drives paho's loop() itself, so no thread hand-off sits inside the timed path."""

from __future__ import annotations

import socket
import time

import paho.mqtt.client as mqtt


class Driver:
    def __init__(self, port: int, user: str, password: str, topics: list[str]) -> None:
        self.got: list[tuple[float, str, bytes, bool]] = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-driver-%d" % id(self))
        c.username_pw_set(user, password)
        c.on_message = self._on_message
        self.client = c
        c.connect("127.0.0.1", port, keepalive=60)
        self.wait(lambda: c.is_connected(), 10)
        # The driver's PUBACK and its next command are two small writes: without this the
        # second waits for the broker's delayed ACK (Nagle), ~40 ms per round trip.
        sock = c.socket()
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
        mids = [c.subscribe(t, 1)[1] for t in topics]
        self.subacked: set[int] = set()
        c.on_subscribe = lambda cl, u, mid, rc, p: self.subacked.add(mid)
        self.wait(lambda: all(m in self.subacked for m in mids), 10)

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        self.got.append((time.perf_counter(), msg.topic, bytes(msg.payload), bool(msg.retain)))

    def wait(self, cond: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not cond():  # type: ignore[operator]
            if time.monotonic() > deadline:
                return False
            self.client.loop(0.01)
        return True

    def wait_live(self, topic: str, timeout: float, start: int = 0) -> tuple[float, bytes] | None:
        """The first non-retained message on `topic` from got[start:]."""
        found: list[tuple[float, bytes]] = []

        def seen() -> bool:
            for t, tp, p, r in self.got[start:]:
                if tp == topic and not r:
                    found.append((t, p))
                    return True
            return False

        return found[0] if self.wait(seen, timeout) else None

    def round_trips(self, status: str, update: str, n: int, timeout: float = 5.0,
                    command: bytes = b"start") -> list[float]:
        """n timed command -> update exchanges; seconds each."""
        out = []
        c = self.client
        for _ in range(n):
            mark = len(self.got)
            t0 = time.perf_counter()
            c.publish(status, command, qos=1)
            while True:
                c.loop(timeout)
                hit = None
                for t, tp, _, _ in self.got[mark:]:
                    if tp == update:
                        hit = t
                        break
                if hit is not None:
                    out.append(hit - t0)
                    break
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError("no update on %s within %.0f s" % (update, timeout))
            del self.got[:]
        return out

    def close(self) -> None:
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001 - the broker may be gone already
            pass
