"""What the manager's and the worker's HTTP apps share: JSON replies, JSON errors, serving."""

from __future__ import annotations

import hmac
import logging
import math
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, current_app, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors import ActorError
from orc.core.messages import Reply
from orc.core.model import Task, TaskEvent, for_wire
from orc.core.validation import Invalid, check_task_event, decode_task_event
from orc.http import wire
from orc.http.metrics import instrument

log = logging.getLogger("orc.http")
DRAIN_SECONDS = 5.0  # how long a refused body may take to arrive (see `_discard_body`)
_encoder = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status=status, content_type="application/json")


def error(status: int, message: str) -> Response:
    return json_response(wire.Error(message), status)


def no_content() -> Response:
    """204: no body, so no body type either (Quart would otherwise say text/html)."""
    response = Response(b"", status=204)
    del response.headers["Content-Type"]
    return response


def wire_tasks(tasks: list[Task]) -> list[Task]:
    return [for_wire(t) for t in tasks]


def wire_event(event: TaskEvent) -> TaskEvent:
    task = for_wire(event.task) if event.task is not None else None
    return msgspec.structs.replace(event, task=task)


def reply_response(reply: Reply) -> Response:
    if reply.status >= 400:
        response = error(reply.status, reply.message)
        if reply.retry_after:
            response.headers["Retry-After"] = str(math.ceil(reply.retry_after))
        return response
    if reply.status == 204:
        return no_content()
    if reply.body is not None:  # a job's view, a plan, ...: a msgspec struct (or a list)
        return json_response(reply.body, reply.status)
    if reply.event is not None:
        return json_response(wire_event(reply.event), reply.status)
    if reply.task is not None:
        return json_response(for_wire(reply.task), reply.status)
    return Response(b"", status=reply.status)


async def read_task_event() -> TaskEvent:
    """The checked TaskEvent in the request body; raises Invalid."""
    body = await request.get_data(cache=False)
    assert isinstance(body, bytes)
    return check_task_event(decode_task_event(body), str(uuid.uuid4()))


def check_id(task_id: str) -> str:
    try:
        return str(uuid.UUID(task_id))
    except ValueError:
        raise Invalid(f"Expected a UUID, got {task_id!r} - at the path /tasks/{{id}}") from None


def allow_larger_bodies(app: QuartTrio, limits: dict[str, int]) -> None:
    """Let the routes at these exact paths take bodies up to their own limit, past
    ORC_MAX_BODY: node-to-node routes such as a worker's `POST /orders`, whose reconcile lists
    every task the manager places on the node. Quart sets a request's limit as it makes the
    request, so the limit is chosen there, by path."""
    base = app.request_class

    class Request(base):  # type: ignore[valid-type, misc]
        def __init__(self, method: str, scheme: str, path: str, *args: Any, **kw: Any) -> None:
            if path in limits:
                kw["max_content_length"] = limits[path]
            super().__init__(method, scheme, path, *args, **kw)

    app.request_class = Request


def create_app(name: str, max_body: int) -> QuartTrio:
    # no `static_folder`: Quart would serve `./static/` of whatever directory orc runs in
    app = QuartTrio(name, static_folder=None)
    instrument(app)  # first: its clock starts before any other hook may answer; GET /metrics
    app.config["MAX_CONTENT_LENGTH"] = max_body
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.config["ORC_TOKEN"] = ""  # set by `require_token`
    app.config["ORC_OPEN_PATHS"] = ()  # set by `open_paths`

    @app.before_request
    async def check_token() -> Response | None:
        token = current_app.config["ORC_TOKEN"]
        if not token or _is_open(request.path, current_app.config["ORC_OPEN_PATHS"]):
            return None
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return None
        why = "a wrong token" if given else "no token"
        return error(401, f"{why}: send the header `Authorization: Bearer <ORC_TOKEN>`")

    @app.errorhandler(Invalid)
    async def invalid(exc: Invalid) -> Response:
        return error(400, str(exc))

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        message = exc.description or exc.name
        if exc.code == 413:
            message = f"request body too large: at most {max_body} bytes"
        elif exc.code == 405:
            message = f"method {request.method} not allowed on {request.path}"
        elif exc.code == 404:
            message = f"no route {request.path}"
        response = error(exc.code or 500, message)
        allowed = getattr(exc, "valid_methods", None)
        if exc.code == 405 and allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))  # RFC 9110 15.5.6
        if exc.code == 413:
            response.headers["Connection"] = "close"
        return response

    @app.after_request
    async def finish_reading(response: Response) -> Response:
        await _discard_body()
        return response

    @app.errorhandler(ActorError)
    async def actor_error(exc: ActorError) -> Response:
        log.error("request %s %s failed: %s", request.method, request.path, exc)
        response = error(503, f"orc could not answer: {exc}; retry shortly")
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.exception("request %s %s failed", request.method, request.path)
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    return app


async def _discard_body(limit: float = DRAIN_SECONDS) -> None:
    """Before any answer goes out, let the client finish sending its body (unread bodies are
    dropped as they arrive).

    quart-trio stops reading a request's body once its response is sent. An answer given
    before the body was read (a 405, 404 or 401 from routing, a 413 for a body too large)
    then leaves the rest of the body in the connection, and the client's next request on it
    hangs behind those bytes. `Body._complete` is Quart's own end-of-body event (there is no
    public one); a client that never finishes gets its answer after `limit` seconds anyway.
    A body that was read, or a request without one, is complete already: this costs nothing.
    """
    complete = getattr(request.body, "_complete", None)
    if complete is not None:
        with trio.move_on_after(limit):
            await complete.wait()


def require_token(app: QuartTrio, token: str) -> QuartTrio:
    """With a non-empty `token`, every request must carry `Authorization: Bearer <token>`."""
    app.config["ORC_TOKEN"] = token
    return app


def open_paths(app: QuartTrio, prefixes: tuple[str, ...]) -> None:
    """Serve `prefixes`, and every path under them, without the token. Only for what holds no
    data: the dashboard's static files, which a browser fetches as it navigates and so cannot
    send a header with (the page then sends the token on every API call it makes)."""
    app.config["ORC_OPEN_PATHS"] = (*app.config["ORC_OPEN_PATHS"], *prefixes)


def _is_open(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


async def serve_app(
    app: QuartTrio,
    host: str,
    port: int,
    shutdown: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 2.0
    # Hypercorn closes a keep-alive connection after 1,000 requests by default; a client that
    # streams tasks in (or a manager calling a worker) would see a reset connection mid-burst.
    config.keep_alive_max_requests = sys.maxsize
    try:
        await serve(app, config, shutdown_trigger=shutdown, task_status=task_status)  # type: ignore[arg-type]
    except* OSError as group:
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        reason = getattr(first, "strerror", None) or first
        raise OSError(f"cannot listen on {host}:{port}: {reason}") from None


def logs_response(logs: tuple[bytes, bytes]) -> Response:
    """A task's output as JSON `{"Stdout": ..., "Stderr": ...}` (UTF-8, bad bytes replaced)."""
    out, err = logs
    return json_response(wire.Logs(out.decode("utf-8", "replace"), err.decode("utf-8", "replace")))
