"""The transport of etcd's short calls (orc/ha/transport.py), against real sockets: a small
HTTP/1.1 server of the test's own that answers, closes, stalls or talks nonsense on cue, and
etcd itself. What it is for is pinned too: a call on a kept-alive connection steps the
calling task only a few times (2), where httpx's own transport steps it three times as often."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import httpx
import pytest
import trio

from orc.ha.etcd import EtcdClient, EtcdUnavailable
from orc.ha.transport import UnaryTransport
from tests.ha.conftest import EtcdCluster

Handler = Callable[[trio.SocketStream], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


async def _read_request(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(body) < length:
        body += await stream.receive_some(65536)
    return head


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        serve = partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


async def test_answers_come_whole_and_a_kept_alive_connection_is_used_again() -> None:
    connections = 0

    async def answer_all(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        while await _read_request(stream):
            await stream.send_all(OK)

    async with (
        serving(answer_all) as url,
        httpx.AsyncClient(transport=UnaryTransport(), timeout=5) as client,
    ):
        for _ in range(3):
            r = await client.post(url + "/v3/kv/range", content=b"{}")
            assert (r.status_code, r.json()) == (200, {"ok": True})
    assert connections == 1


async def test_a_connection_the_server_closed_while_idle_is_not_used_again() -> None:
    async def answer_once(stream: trio.SocketStream) -> None:
        await _read_request(stream)
        await stream.send_all(OK)
        await stream.aclose()

    async with (
        serving(answer_once) as url,
        httpx.AsyncClient(transport=UnaryTransport(), timeout=5) as client,
    ):
        for _ in range(3):
            await trio.sleep(0.05)  # the server's close has arrived
            r = await client.post(url + "/x", content=b"{}")
            assert r.status_code == 200


async def test_no_answer_is_a_read_timeout_and_no_server_a_connect_error() -> None:
    async def stall(stream: trio.SocketStream) -> None:
        await _read_request(stream)
        await trio.sleep_forever()

    async with (
        serving(stall) as url,
        httpx.AsyncClient(transport=UnaryTransport(), timeout=0.3) as client,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url + "/x", content=b"{}")
    async with httpx.AsyncClient(transport=UnaryTransport(), timeout=1) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(url + "/x", content=b"{}")  # the server is gone


async def test_nonsense_and_a_cut_answer_are_transport_errors() -> None:
    async def nonsense(stream: trio.SocketStream) -> None:
        await _read_request(stream)
        await stream.send_all(b"SPDY/9 what\r\n\r\n")

    async def cut(stream: trio.SocketStream) -> None:
        await _read_request(stream)
        await stream.send_all(OK[:-4])
        await stream.aclose()

    for handler in (nonsense, cut):
        async with (
            serving(handler) as url,
            httpx.AsyncClient(transport=UnaryTransport(), timeout=2) as client,
        ):
            with pytest.raises(httpx.TransportError):
                await client.post(url + "/x", content=b"{}")


async def _steps(transport: httpx.AsyncBaseTransport, url: str) -> int:
    """How many times the calling task is stepped for one call on a kept-alive connection."""
    steps = 0
    me = trio.lowlevel.current_task()

    class Count(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            nonlocal steps
            steps += task is me

    async with httpx.AsyncClient(transport=transport, timeout=5) as client:
        await client.post(url + "/x", content=b"{}")  # connects
        instrument = Count()
        trio.lowlevel.add_instrument(instrument)
        try:
            await client.post(url + "/x", content=b"{}")
        finally:
            trio.lowlevel.remove_instrument(instrument)
    return steps


async def test_a_call_yields_to_the_event_loop_only_a_few_times() -> None:
    async def answer_all(stream: trio.SocketStream) -> None:
        while await _read_request(stream):
            await stream.send_all(OK)

    async with serving(answer_all) as url:
        lean = await _steps(UnaryTransport(), url)
        usual = await _steps(httpx.AsyncHTTPTransport(), url)
    assert lean <= 3, lean
    assert usual > 2 * lean, (usual, lean)


async def test_etcd_through_it(etcd: EtcdCluster) -> None:
    async with EtcdClient(etcd.endpoints, timeout=5) as client:
        revision = await client.put(b"/orc-test/transport", b"v")
        found = await client.get(b"/orc-test/transport")
        assert found is not None and found.value == b"v" and found.mod_revision == revision


async def test_it_speaks_plain_http_only_and_says_so() -> None:
    """`https://` endpoints go through httpx's own transport (`EtcdClient` picks it)."""
    async with httpx.AsyncClient(transport=UnaryTransport(), timeout=1) as client:
        with pytest.raises(httpx.UnsupportedProtocol, match="plain HTTP"):
            await client.post("https://127.0.0.1:1/x", content=b"{}")


async def test_an_https_endpoint_goes_through_httpx_own_transport() -> None:
    async with EtcdClient("https://127.0.0.1:9", timeout=1) as client:
        with pytest.raises(EtcdUnavailable, match="ConnectError"):  # not UnsupportedProtocol
            await client.get(b"/x")
