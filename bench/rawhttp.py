"""A minimal keep-alive HTTP/1.1 client on trio sockets, for benchmarks only.

httpx spends about 4 ms of CPU per request on this machine, so a benchmark driven by it
measures httpx. This client does nothing but write a request and read a Content-Length body.
"""

from __future__ import annotations

import json
from typing import Any

import trio


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.stream: trio.SocketStream | None = None
        self.buffer = b""

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream(self.host, self.port)
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        await self.stream.send_all(head.encode() + payload)
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        header, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        while len(self.buffer) < length:
            await self._fill()
        data, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, (json.loads(data) if data else None)

    async def _fill(self) -> None:
        assert self.stream is not None
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


class Pool:
    """`size` connections, each used by one request at a time."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.free = [Connection(host, port) for _ in range(size)]
        self.available = trio.Semaphore(size)
        self.all = list(self.free)

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.available:
            conn = self.free.pop()
            try:
                return await conn.request(method, path, body)
            finally:
                self.free.append(conn)

    async def aclose(self) -> None:
        for conn in self.all:
            await conn.aclose()
