"""A small client for etcd's v3 JSON gateway: async (httpx on trio), and a sync range for threads.

Why this and not a library: no maintained etcd client works under trio. python-etcd3 speaks
gRPC, is synchronous and unmaintained; the asyncio clients would need a second event loop. The
gateway (`POST /v3/kv/range`, `/v3/kv/txn`, `/v3/watch`, ...) is etcd's own documented JSON
form of its v3 API, served on the client port of every member, and httpx is already orc's
HTTP client: a few hundred lines here cost less than a gRPC stack orc would carry for one
feature. The shapes here are etcd 3.4's: keys and values are base64 (msgspec's JSON form of
`bytes`), 64-bit integers arrive as strings, fields at their zero value are left out, and
errors are `{"error", "message", "code"}` with a gRPC status code.

Endpoints are tried in turn: a request that cannot reach one (refused, timed out) or that it
cannot serve (no leader, no quorum) goes to the next, and the one that answered is tried first
next time. A request may therefore reach etcd twice; every write orc makes through this client
is built so that doing it twice does what doing it once does (see `orc.ha.log`). When no
endpoint answers the call raises `EtcdUnavailable`; etcd refusing a request (a bad lease, a
request too large) raises `EtcdError` with etcd's message.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from types import TracebackType
from typing import TypeVar

import httpx
import msgspec
import trio

from orc.ha.transport import UnaryTransport

T = TypeVar("T")

DEFAULT_TIMEOUT = 3.0  # seconds one endpoint has to answer; etcd answers in milliseconds

# gRPC status codes (as the gateway reports them) that mean "not now, maybe elsewhere"
_CANCELLED, _UNKNOWN, _DEADLINE_EXCEEDED, _OUT_OF_RANGE, _UNAVAILABLE = 1, 2, 4, 11, 14
LEASE_NOT_FOUND = 5  # gRPC NOT_FOUND, as etcd answers for a lease expired or revoked already


class EtcdError(Exception):
    """etcd refused a request; `message` is etcd's, `code` its gRPC status code (0: none)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint could serve the request: all refused or timed out, or etcd has no leader or
    quorum. A write that met this may or may not have been applied."""


class EtcdCompacted(EtcdError):
    """A watch or a read asked for a revision that etcd's history compaction removed."""

    def __init__(self, message: str, compact_revision: int = 0) -> None:
        super().__init__(message, _OUT_OF_RANGE)
        self.compact_revision = compact_revision


# -- the gateway's messages -----------------------------------------------------------------------


class _Message(msgspec.Struct, omit_defaults=True):
    """A request: fields at their default are left out, as protobuf's JSON form does."""


class Header(msgspec.Struct, frozen=True):
    revision: int = 0  # the store's revision when the request was served
    member_id: int = 0
    raft_term: int = 0


class KeyValue(msgspec.Struct, frozen=True):
    key: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""
    lease: int = 0


class RangeRequest(_Message):
    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: str = "NONE"
    keys_only: bool = False
    count_only: bool = False
    serializable: bool = False


class PutRequest(_Message):
    key: bytes
    value: bytes = b""
    lease: int = 0


class DeleteRangeRequest(_Message):
    key: bytes
    range_end: bytes = b""


class RequestOp(_Message):
    """One operation of a transaction: exactly one field is set (see `put`, `get`, `delete`)."""

    request_range: RangeRequest | None = None
    request_put: PutRequest | None = None
    request_delete_range: DeleteRangeRequest | None = None


class Compare(_Message):
    """One condition of a transaction (see `created`). `target` names the field compared."""

    key: bytes
    target: str  # "VERSION", "CREATE", "MOD", "VALUE", "LEASE"
    result: str = "EQUAL"  # "EQUAL", "GREATER", "LESS", "NOT_EQUAL"
    create_revision: int | None = None
    mod_revision: int | None = None
    version: int | None = None
    value: bytes | None = None


class TxnRequest(_Message):
    compare: list[Compare] = []
    success: list[RequestOp] = []
    failure: list[RequestOp] = []


class RangeResponse(msgspec.Struct, frozen=True):
    header: Header = Header()
    kvs: list[KeyValue] = []
    more: bool = False
    count: int = 0


class PutResponse(msgspec.Struct, frozen=True):
    header: Header = Header()


class DeleteRangeResponse(msgspec.Struct, frozen=True):
    header: Header = Header()
    deleted: int = 0


class ResponseOp(msgspec.Struct, frozen=True):
    response_range: RangeResponse | None = None
    response_put: PutResponse | None = None
    response_delete_range: DeleteRangeResponse | None = None


class TxnResponse(msgspec.Struct, frozen=True):
    header: Header = Header()
    succeeded: bool = False
    responses: list[ResponseOp] = []


class _LeaseGrantRequest(_Message):
    ttl: int = msgspec.field(name="TTL")
    id: int = msgspec.field(default=0, name="ID")


class _LeaseIdRequest(_Message):
    id: int = msgspec.field(name="ID")


class LeaseGrantResponse(msgspec.Struct, frozen=True):
    header: Header = Header()
    id: int = msgspec.field(default=0, name="ID")
    ttl: int = msgspec.field(default=0, name="TTL")
    error: str = ""


class _KeepAliveResult(msgspec.Struct, frozen=True):
    header: Header = Header()
    id: int = msgspec.field(default=0, name="ID")
    ttl: int = msgspec.field(default=0, name="TTL")  # 0: the lease is gone


class _StreamError(msgspec.Struct, frozen=True):
    """How the gateway reports an error inside a stream (a watch, a keepalive)."""

    message: str = ""
    grpc_code: int = 0
    http_code: int = 0


class _KeepAliveLine(msgspec.Struct, frozen=True):
    result: _KeepAliveResult | None = None
    error: _StreamError | None = None


class _Empty(_Message):
    pass


class _CompactionRequest(_Message):
    revision: int
    physical: bool = False


class Event(msgspec.Struct, frozen=True):
    """A change a watch saw: `type` is "PUT" or "DELETE" (a delete's `kv` has the key alone)."""

    kv: KeyValue
    type: str = "PUT"


class WatchResponse(msgspec.Struct, frozen=True):
    header: Header = Header()
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    events: list[Event] = []


class _WatchCreate(_Message):
    key: bytes
    range_end: bytes = b""
    start_revision: int = 0


class _WatchRequest(_Message):
    create_request: _WatchCreate


class _WatchLine(msgspec.Struct, frozen=True):
    result: WatchResponse | None = None
    error: _StreamError | None = None


class Status(msgspec.Struct, frozen=True):
    """`/v3/maintenance/status` of one member: `leader` is 0 (and `errors` says why) while the
    member knows no leader."""

    header: Header = Header()
    version: str = ""
    leader: int = 0
    db_size: int = msgspec.field(default=0, name="dbSize")
    raft_index: int = msgspec.field(default=0, name="raftIndex")
    errors: list[str] = []


class Member(msgspec.Struct, frozen=True):
    id: int = msgspec.field(default=0, name="ID")
    name: str = ""
    peer_urls: list[str] = msgspec.field(default_factory=list, name="peerURLs")
    client_urls: list[str] = msgspec.field(default_factory=list, name="clientURLs")


class _MemberList(msgspec.Struct, frozen=True):
    header: Header = Header()
    members: list[Member] = []


class _ErrorBody(msgspec.Struct, frozen=True):
    error: str = ""
    message: str = ""
    code: int = 0


# -- building requests ----------------------------------------------------------------------------


def prefix_end(prefix: bytes) -> bytes:
    """The `range_end` that makes a range hold every key starting with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # etcd's "every key"


def put(key: bytes, value: bytes, lease: int = 0) -> RequestOp:
    return RequestOp(request_put=PutRequest(key, value, lease))


def get(key: bytes, range_end: bytes = b"", *, keys_only: bool = False) -> RequestOp:
    return RequestOp(request_range=RangeRequest(key, range_end, keys_only=keys_only))


def delete(key: bytes, range_end: bytes = b"") -> RequestOp:
    return RequestOp(request_delete_range=DeleteRangeRequest(key, range_end))


def created(key: bytes, revision: int) -> Compare:
    """The condition "`key` was created at `revision`"; with 0, "`key` does not exist"."""
    return Compare(key, "CREATE", create_revision=revision)


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    return msgspec.json.Decoder(kind, strict=False)  # strict=False: int64s come as strings


_encode = msgspec.json.Encoder().encode
_RANGE = _decoder(RangeResponse)
_PUT = _decoder(PutResponse)
_DELETE = _decoder(DeleteRangeResponse)
_TXN = _decoder(TxnResponse)
_GRANT = _decoder(LeaseGrantResponse)
_KEEPALIVE = _decoder(_KeepAliveLine)
_STATUS = _decoder(Status)
_MEMBERS = _decoder(_MemberList)
_WATCH = _decoder(_WatchLine)
_ERROR = _decoder(_ErrorBody)


# -- endpoints and answers ------------------------------------------------------------------------


def parse_endpoints(endpoints: str | Sequence[str]) -> tuple[str, ...]:
    """`"host:2379,http://other:2379"` or a list of such: base URLs, `http://` when none."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    urls = []
    for item in items:
        url = item.strip().rstrip("/")
        if url:
            urls.append(url if "://" in url else f"http://{url}")
    if not urls:
        raise ValueError("no etcd endpoint given")
    return tuple(urls)


class _Endpoints:
    """The endpoints, starting with the last one that answered."""

    def __init__(self, endpoints: str | Sequence[str]) -> None:
        self.urls = parse_endpoints(endpoints)
        self._first = 0

    def in_turn(self) -> list[str]:
        return [*self.urls[self._first :], *self.urls[: self._first]]

    def prefer(self, url: str) -> bool:
        """Try `url` first from now on, if it is one of ours; whether it is."""
        url = url.rstrip("/")
        if url in self.urls:
            self._first = self.urls.index(url)
            return True
        return False

    def failed(self, url: str) -> None:
        if self.urls[self._first] == url:
            self._first = (self._first + 1) % len(self.urls)


def _unavailable(code: int, message: str) -> bool:
    if code in (_CANCELLED, _DEADLINE_EXCEEDED, _UNAVAILABLE):
        return True
    return code == _UNKNOWN and "context" in message  # the gateway's own deadline or cancel


def _answer(url: str, status: int, content: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """The decoded answer, or the error it carries as EtcdUnavailable / EtcdError."""
    if status == 200:
        try:
            return decoder.decode(content)
        except msgspec.DecodeError as exc:
            raise EtcdError(f"{url} gave an answer that is not etcd's: {exc}") from None
    try:
        body = _ERROR.decode(content)
    except msgspec.DecodeError:
        hint = " (is it etcd 3.4 or later, serving its v3 gateway?)" if status == 404 else ""
        message = f"{url} answered HTTP {status}{hint}: {content[:200]!r}"
        if status >= 500:
            raise EtcdUnavailable(message) from None
        raise EtcdError(message) from None
    message = body.message or body.error or f"HTTP {status}"
    if _unavailable(body.code, message):
        raise EtcdUnavailable(f"{url}: {message}", body.code)
    if body.code == _OUT_OF_RANGE and "compacted" in message:
        raise EtcdCompacted(message)
    raise EtcdError(message, body.code)


def _describe(exc: httpx.TransportError) -> str:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return f"{kind} ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"


def _range_request(
    key: bytes,
    range_end: bytes,
    limit: int,
    revision: int,
    descending: bool,
    keys_only: bool,
    count_only: bool,
    serializable: bool,
) -> RangeRequest:
    return RangeRequest(
        key,
        range_end,
        limit=limit,
        revision=revision,
        sort_order="DESCEND" if descending else "NONE",
        keys_only=keys_only,
        count_only=count_only,
        serializable=serializable,
    )


class EtcdClient:
    """etcd's v3 API over its JSON gateway, for trio. Close it with `aclose` (or `async with`).

    Every call raises EtcdUnavailable when no endpoint can serve it, EtcdError when etcd
    refuses it. `timeout` bounds each endpoint's answer (a watch waits for events unbounded).
    """

    def __init__(self, endpoints: str | Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._endpoints = _Endpoints(endpoints)
        self.timeout = timeout
        # short calls over plain HTTP through a transport that yields to the event loop as
        # little as it can (orc/ha/transport.py says why; TLS keeps httpx's own); watches
        # stream, so they go through httpx's own transport always
        self._http = httpx.AsyncClient(timeout=timeout, mounts={"http://": UnaryTransport()})
        self._streams = httpx.AsyncClient(timeout=timeout)

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self._endpoints.urls

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._streams.aclose()

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _call(
        self, path: str, request: msgspec.Struct, decoder: msgspec.json.Decoder[T]
    ) -> T:
        body = _encode(request)
        failures = []
        for url in self._endpoints.in_turn():
            try:
                response = await self._http.post(url + path, content=body)
            except httpx.TransportError as exc:
                failures.append(f"{url}: {_describe(exc)}")
                self._endpoints.failed(url)
                continue
            try:
                return _answer(url, response.status_code, response.content, decoder)
            except EtcdUnavailable as exc:
                failures.append(exc.message)
                self._endpoints.failed(url)
        raise EtcdUnavailable(f"no etcd endpoint could serve {path}: {'; '.join(failures)}")

    # -- keys ---------------------------------------------------------------------------------

    async def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        limit: int = 0,
        revision: int = 0,
        descending: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        serializable: bool = False,
    ) -> RangeResponse:
        """The keys in [key, range_end) (`key` alone without `range_end`), in key order.

        `revision` reads the store as it was then (0: now); `serializable` lets a member
        answer from its own copy without asking the leader (may be stale). Beware: etcd
        sorts a `descending` range in full before applying `limit`.
        """
        request = _range_request(
            key, range_end, limit, revision, descending, keys_only, count_only, serializable
        )
        return await self._call("/v3/kv/range", request, _RANGE)

    async def get(self, key: bytes) -> KeyValue | None:
        found = await self.range(key)
        return found.kvs[0] if found.kvs else None

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Set `key`; return the store's revision after the write."""
        answer = await self._call("/v3/kv/put", PutRequest(key, value, lease), _PUT)
        return answer.header.revision

    async def delete(self, key: bytes, range_end: bytes = b"") -> int:
        """Delete `key` (or the keys in [key, range_end)); return how many were deleted."""
        answer = await self._call("/v3/kv/deleterange", DeleteRangeRequest(key, range_end), _DELETE)
        return answer.deleted

    async def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[RequestOp],
        failure: Sequence[RequestOp] = (),
    ) -> TxnResponse:
        """If every `compare` holds, do `success`, else `failure`: atomically, at one revision.

        etcd refuses more than `--max-txn-ops` (128 by default) operations in either branch,
        and a request over `--max-request-bytes` (1.5 MiB by default).
        """
        request = TxnRequest(list(compare), list(success), list(failure))
        return await self._call("/v3/kv/txn", request, _TXN)

    async def compact(self, revision: int) -> None:
        """Drop the history before `revision` (values overwritten or deleted before it);
        a revision already compacted is no error."""
        with contextlib.suppress(EtcdCompacted):
            await self._call("/v3/kv/compaction", _CompactionRequest(revision), _PUT)

    # -- leases -------------------------------------------------------------------------------

    async def grant(self, ttl: int) -> LeaseGrantResponse:
        """A new lease of `ttl` seconds (etcd may grant more: see the answer's `ttl`)."""
        answer = await self._call("/v3/lease/grant", _LeaseGrantRequest(ttl), _GRANT)
        if answer.error:
            raise EtcdError(answer.error)
        return answer

    async def keepalive(self, lease: int) -> int:
        """Renew `lease`; return its TTL from now, 0 when it no longer exists."""
        line = await self._call("/v3/lease/keepalive", _LeaseIdRequest(lease), _KEEPALIVE)
        if line.error is not None:
            raise EtcdUnavailable(line.error.message, line.error.grpc_code)
        return line.result.ttl if line.result is not None else 0

    async def revoke(self, lease: int) -> bool:
        """End `lease` and delete its keys; False when it did not exist (any more)."""
        try:
            await self._call("/v3/lease/revoke", _LeaseIdRequest(lease), _PUT)
        except EtcdError as exc:
            if exc.code == LEASE_NOT_FOUND:
                return False
            raise
        return True

    # -- the cluster --------------------------------------------------------------------------

    async def status(self) -> Status:
        """The status of the first endpoint that answers."""
        return await self._call("/v3/maintenance/status", _Empty(), _STATUS)

    async def members(self) -> list[Member]:
        return (await self._call("/v3/cluster/member/list", _Empty(), _MEMBERS)).members

    async def members_and_leader(self) -> tuple[list[Member], int]:
        """etcd's members, and its raft leader's ID (0 while it knows none)."""
        return await self.members(), (await self.status()).leader

    async def prefer_leader(self) -> bool:
        """Send the next calls to etcd's raft leader first, when it is one of our endpoints:
        a write that reaches a follower is forwarded to the leader, a hop and its CPU for
        nothing. Whether it is (a later election may move the lead: calls still succeed)."""
        members, leader = await self.members_and_leader()
        for member in members:
            if member.id == leader:
                return any(self._endpoints.prefer(url) for url in member.client_urls)
        return False

    # -- watching -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(
        self, key: bytes, range_end: bytes = b"", *, start_revision: int = 0
    ) -> AsyncIterator[Watch]:
        """Watch `key` (or [key, range_end)) from `start_revision` (0: from now on).

        Entered once etcd confirmed the watch, so no change after entering is missed. Iterate
        the `Watch` for the changes, a response at a time. A broken stream raises
        EtcdUnavailable and a `start_revision` etcd compacted away EtcdCompacted: watch again
        from the last revision seen + 1.
        """
        body = _encode(_WatchRequest(_WatchCreate(key, range_end, start_revision)))
        failures = []
        for url in self._endpoints.in_turn():
            async with contextlib.AsyncExitStack() as stack:
                try:
                    watch = await self._open_watch(stack, url, body)
                except (httpx.TransportError, EtcdUnavailable) as exc:
                    reason = exc.message if isinstance(exc, EtcdError) else _describe(exc)
                    failures.append(f"{url}: {reason}")
                    self._endpoints.failed(url)
                    continue
                yield watch
                return
        raise EtcdUnavailable(f"no etcd endpoint could watch: {'; '.join(failures)}")

    async def _open_watch(self, stack: contextlib.AsyncExitStack, url: str, body: bytes) -> Watch:
        timeout = httpx.Timeout(self.timeout, read=None)  # events come when they come
        request = self._streams.build_request(
            "POST", url + "/v3/watch", content=body, timeout=timeout
        )
        response = await self._streams.send(request, stream=True)
        stack.push_async_callback(response.aclose)
        if response.status_code != 200:
            await response.aread()
            _answer(url, response.status_code, response.content, _WATCH)
        lines = response.aiter_lines()
        if isinstance(lines, AsyncGenerator):  # closed before the response (httpx types it
            stack.push_async_callback(lines.aclose)  # as a plain iterator)
        watch = Watch(url, lines)
        with trio.move_on_after(self.timeout) as waited:
            first = await watch.__anext__()
        if waited.cancelled_caught or not first.created:
            raise EtcdUnavailable("the watch was not confirmed")
        return watch


class Watch:
    """The responses of one watch stream (`EtcdClient.watch`)."""

    def __init__(self, url: str, lines: AsyncIterator[str]) -> None:
        self._url = url
        self._lines = lines

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchResponse:
        while True:
            try:
                line = await anext(self._lines)
            except StopAsyncIteration:
                raise EtcdUnavailable(f"{self._url}: the watch stream ended") from None
            except httpx.TransportError as exc:
                raise EtcdUnavailable(f"{self._url}: watch: {_describe(exc)}") from None
            if line.strip():
                break
        try:
            decoded = _WATCH.decode(line)
        except msgspec.DecodeError as exc:
            raise EtcdError(f"{self._url} sent a watch line that is not etcd's: {exc}") from None
        if decoded.error is not None:
            raise EtcdUnavailable(f"{self._url}: watch: {decoded.error.message}")
        result = decoded.result
        if result is None:
            raise EtcdError(f"{self._url} sent an empty watch line")
        if result.canceled:
            if result.compact_revision:
                raise EtcdCompacted(
                    f"the watch starts before revision {result.compact_revision},"
                    " which etcd compacted away",
                    result.compact_revision,
                )
            raise EtcdError(f"{self._url}: the watch was canceled: {result.cancel_reason}")
        return result


class SyncEtcdClient:
    """The blocking range alone: for reading a log from a thread (`EtcdLog.records`)."""

    def __init__(self, endpoints: str | Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._endpoints = _Endpoints(endpoints)
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SyncEtcdClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        limit: int = 0,
        revision: int = 0,
        descending: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        serializable: bool = False,
    ) -> RangeResponse:
        """As `EtcdClient.range`, blocking."""
        body = _encode(
            _range_request(
                key, range_end, limit, revision, descending, keys_only, count_only, serializable
            )
        )
        failures = []
        for url in self._endpoints.in_turn():
            try:
                response = self._http.post(url + "/v3/kv/range", content=body)
            except httpx.TransportError as exc:
                failures.append(f"{url}: {_describe(exc)}")
                self._endpoints.failed(url)
                continue
            try:
                return _answer(url, response.status_code, response.content, _RANGE)
            except EtcdUnavailable as exc:
                failures.append(exc.message)
                self._endpoints.failed(url)
        raise EtcdUnavailable(f"no etcd endpoint could serve /v3/kv/range: {'; '.join(failures)}")
