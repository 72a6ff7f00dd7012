"""Just enough socket for MQTTClient.service() without a network: recv() hands out the given
chunks (at most n bytes at a time), then 'would block'; send() keeps what the client wrote."""

from __future__ import annotations


class ChunkSock:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.sent = bytearray()

    def recv(self, n: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError(11, "would block")
        c = self.chunks.pop(0)
        if len(c) > n:
            self.chunks.insert(0, c[n:])
            c = c[:n]
        return c

    def send(self, data: bytes | memoryview) -> int:
        self.sent.extend(data)
        return len(data)

    def close(self) -> None:
        pass
