"""An httpx transport for etcd's short calls (a transaction, a range, a lease renewal) that
waits on the event loop as few times as an HTTP/1.1 exchange allows: one write of the whole
request, then reads until the answer is whole.

Why: under load, the leader's event loop is busy serving its clients, and every await that
yields (a trio checkpoint) puts the call behind a whole round of the other tasks. httpx's
default transport (httpcore) steps the calling task 6 times for a call on a kept-alive
connection (its pool's lock, the write, the reads, giving the connection back); this one 2
(tests/ha/test_transport.py counts them). With a task keeping the loop busy in 2 ms slices,
a transaction of 63 puts took 17 ms through httpcore and 6.6 ms this way (5-6 ms either way
on an idle loop). In the benchmark of three managers on etcd (docs/BENCHMARKS.md) the
leader's transactions went from 42 ms to 5.6 ms on average.

The rest stays httpx's (`httpx.AsyncClient(mounts={"http://": UnaryTransport()})`: TLS
endpoints keep httpx's own transport): the requests, the
timeouts (`timeout` in the request's extensions), the responses and the errors, so
`orc.ha.etcd` handles this transport's failures as any other's. HTTP/1.1 is parsed by h11, as
httpcore and hypercorn do. Streams (etcd's watch) keep httpx's own transport.
"""

from __future__ import annotations

import select
from typing import Any

import h11
import httpx
import trio

IDLE = 4  # kept-alive connections kept per origin
CHUNK = 65536


class _Connection:
    """One kept-alive HTTP/1.1 connection, one exchange at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    def stale(self) -> bool:
        """Whether the server closed it while it was idle (it is readable: an EOF)."""
        poller = select.poll()  # not select.select: it refuses descriptors past 1023
        poller.register(self.stream.socket.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    async def exchange(self, request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"connection"]
        body = request.content
        data = self.h11.send(h11.Request(method=request.method, target=target, headers=headers))
        data = (data or b"") + (self.h11.send(h11.Data(data=body)) or b"") if body else data
        data = (data or b"") + (self.h11.send(h11.EndOfMessage()) or b"")
        await self.stream.send_all(data)
        head: h11.Response | None = None
        chunks: list[bytes] = []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(CHUNK))
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError("the server closed the connection mid-answer")
        assert head is not None
        return httpx.Response(
            head.status_code,
            headers=[(bytes(k), bytes(v)) for k, v in head.headers],
            content=b"".join(chunks),
            request=request,
        )

    def reusable(self) -> bool:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False


def _drop(connection: _Connection | None) -> None:
    if connection is not None:
        connection.stream.socket.close()


class UnaryTransport(httpx.AsyncBaseTransport):
    """Requests with a whole body and a whole answer, over kept-alive connections."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the transport is closed", request=request)
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(
                f"{request.url.scheme}: this transport speaks plain HTTP", request=request
            )
        timeout: dict[str, Any] = request.extensions.get("timeout", {})
        origin = (request.url.host, request.url.port or 80)
        connection = None
        try:
            connection = self._take(origin)
            if connection is None:
                with trio.fail_after(timeout.get("connect") or 30):
                    connection = _Connection(await trio.open_tcp_stream(*origin))
            with trio.fail_after(timeout.get("read") or 30):
                response = await connection.exchange(request)
        except trio.TooSlowError:
            _drop(connection)
            if connection is None:
                raise httpx.ConnectTimeout("no connection in time", request=request) from None
            raise httpx.ReadTimeout("no answer in time", request=request) from None
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            _drop(connection)
            kind = httpx.ConnectError if connection is None else httpx.ReadError
            raise kind(f"{type(exc).__name__}: {exc}", request=request) from None
        except (h11.ProtocolError, httpx.RemoteProtocolError) as exc:
            _drop(connection)
            raise httpx.RemoteProtocolError(str(exc), request=request) from None
        except BaseException:  # cancelled mid-exchange: the connection is in an unknown state
            _drop(connection)
            raise
        if (
            not self._closed
            and connection.reusable()
            and len(self._idle.setdefault(origin, [])) < IDLE
        ):
            self._idle[origin].append(connection)
        else:
            _drop(connection)
        return response

    def _take(self, origin: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(origin, [])
        while idle:
            connection = idle.pop()
            if not connection.stale():
                return connection
            connection.stream.socket.close()
        return None

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.stream.socket.close()
        self._idle.clear()
