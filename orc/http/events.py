"""`GET /events`: the event log as newline-delimited JSON, from any sequence number, then live.

Each line is `{"Seq": n, "Event": {...}}` with the event's `Type`; while idle, a heartbeat line
`{"Heartbeat": true, "Seq": last}` every `heartbeat` seconds. On trio, hypercorn does not tell
the app that a client has gone; the heartbeat's write is what finds out and ends the stream.
A client resumes with `after=` the last `Seq` it saw, with no gap and no duplicate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from orc.core.events import TASK_EVENTS, AnyEvent, to_wire
from orc.core.validation import Invalid
from orc.http.app import json_response
from orc.nodes.base import StreamLine

EVENT_TYPES = {cls.__name__ for cls in (*TASK_EVENTS, *AnyEvent.__args__)}
_encoder = msgspec.json.Encoder()


def _after() -> int:
    raw = request.args.get("after", "0")
    if not raw.isdigit():
        raise Invalid(f"Expected a sequence number >= 0, got {raw!r} - at the query after")
    return int(raw)


def _types() -> set[str]:
    types = set(request.args.getlist("type"))
    unknown = types - EVENT_TYPES
    if unknown:
        raise Invalid(
            f"unknown event type {sorted(unknown)[0]!r} - at the query type;"
            f" known: {', '.join(sorted(EVENT_TYPES))}"
        )
    return types


def _task_of(event: object) -> str:
    task_id = getattr(event, "task_id", None)
    if task_id is None:
        task = getattr(event, "task", None)
        task_id = getattr(task, "id", "")
    return task_id if isinstance(task_id, str) else ""


STREAM_RETRY = 5  # seconds a refused stream should wait: streams end as clients go


class StreamedLog(Protocol):
    """What the stream reads of a log: a manager's (in files or in etcd) or a worker's."""

    @property
    def first_seq(self) -> int: ...

    @property
    def last_seq(self) -> int: ...

    def follow(
        self, from_seq: int = 1, heartbeat: float | None = None
    ) -> AsyncIterator[tuple[int, Any] | None]: ...


def add_event_stream(
    app: QuartTrio, log: StreamedLog, heartbeat: float = 5.0, max_streams: int = 64
) -> None:
    """`max_streams` open at once at most (ORC_MAX_STREAMS): one more gets 503 with
    Retry-After, so that a crowd of followers cannot take the node's memory and CPU."""
    open_streams = [0]

    @app.get("/events")
    async def events() -> Response:
        after, types, task = _after(), _types(), request.args.get("task", "")
        if open_streams[0] >= max_streams:
            response = json_response(
                {
                    "message": f"{open_streams[0]} event streams are open, the limit"
                    " (ORC_MAX_STREAMS): retry shortly"
                },
                503,
            )
            response.headers["Retry-After"] = str(STREAM_RETRY)
            return response
        if after + 1 < log.first_seq:
            return json_response(
                {
                    "message": f"events up to {log.first_seq - 1} were compacted away;"
                    f" resume from after={log.first_seq - 1} or later",
                    "EarliestSeq": log.first_seq,
                },
                410,
            )
        if after > log.last_seq:
            message = f"after={after} is beyond the log's last sequence {log.last_seq}"
            return json_response({"message": message, "LastSeq": log.last_seq}, 400)

        async def lines() -> AsyncIterator[bytes]:
            open_streams[0] += 1
            try:
                async for item in log.follow(after + 1, heartbeat=heartbeat):
                    if item is None:
                        yield b'{"Heartbeat":true,"Seq":%d}\n' % log.last_seq
                        continue
                    seq, event = item
                    if types and type(event).__name__ not in types:
                        continue
                    if task and _task_of(event) != task:
                        continue
                    # the wire form: an object with `Type` (the log stores it as an array)
                    yield _encoder.encode(StreamLine(seq, to_wire(event))) + b"\n"
            finally:
                open_streams[0] -= 1

        response = Response(lines(), content_type="application/x-ndjson")
        response.timeout = None  # Quart's 60 s default would cut the stream
        return response
