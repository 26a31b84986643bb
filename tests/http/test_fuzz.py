"""Property: any request to any route answers 2xx or 4xx, never 5xx, and orc keeps serving.

One real `orc` process (manager and worker) takes every generated request; between examples
nothing is reset, so the requests pile up as an outside client's would. Bodies are any JSON,
any bytes, and TaskEvents whose fields take hostile values (huge and non-finite numbers, wide
integers, NUL bytes, long strings, bad times). Accepted process tasks cannot run anything: every
generated command's program is a path under /nonexistent (tasks get a fixed PATH of their own,
so an empty PATH for orc would not be enough), and no Docker engine is given.

ORC_FUZZ_EXAMPLES raises the number of examples for a longer soak (default 300).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, orc_env

EXAMPLES = int(os.environ.get("ORC_FUZZ_EXAMPLES", "300"))


class Orc:
    def __init__(self, manager: str, worker: str, proc: subprocess.Popen[bytes], out: Path):
        self.manager, self.worker, self.proc, self.out = manager, worker, proc, out


@pytest.fixture(scope="module")
def orc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orc]:
    tmp = tmp_path_factory.mktemp("fuzz")
    env = {
        **os.environ,
        **orc_env(tmp / "data", ORC_MAX_BODY="65536"),
        "PATH": str(tmp / "no-programs"),
        "PYTHONPATH": str(ROOT),
    }
    out = tmp / "orc.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orc"], env=env, cwd=ROOT, stdout=sink, stderr=sink
        )
    manager = f"http://127.0.0.1:{env['ORC_MANAGER_PORT']}"
    worker = f"http://127.0.0.1:{env['ORC_WORKER_PORT']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{manager}/stats").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError(f"orc did not start:\n{out.read_text()}")
    yield Orc(manager, worker, proc, out)
    proc.kill()
    proc.wait(timeout=30)


# -- what a hostile client sends ---------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
hostile_strings = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=30),
    st.just("a\x00b"),
    st.just("x" * 5000),
    st.sampled_from(["", "2026-13-45T99:99:99Z", "yesterday", "2026-01-01T00:00:00+00:00"]),
)
hostile_numbers = st.one_of(
    st.sampled_from([0, -1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, 1025, 2**31]),
    st.sampled_from([1e308, -1e308, 1e-308, 5e-324, 1e20, 1024.5, -0.0]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
hostile_values = st.one_of(hostile_strings, hostile_numbers, json_values)
NUMBERS = ["CPU", "Memory", "Disk", "State", "RestartCount", "ExitCode"]
STRINGS = [
    "ID", "ContainerID", "Name", "Image", "RestartPolicy", "StartsAt", "FinishedAt",
    "HealthCheck", "CreatedAt", "UpdatedAt", "Driver", "Node", "Error", "StateName",
]  # fmt: skip
LISTS = ["Cmd", "Env"]
MAPS = ["ExposedPorts", "PortBindings", "HostPorts"]


def _hostile(field: str) -> st.SearchStrategy[Any]:
    """Mostly values of the field's own type at its edges; sometimes any type at all."""
    if field in NUMBERS:
        own: st.SearchStrategy[Any] = hostile_numbers
    elif field in STRINGS:
        own = hostile_strings
    elif field in LISTS:
        own = st.lists(hostile_strings, max_size=3) | st.just(["a"] * 2000)
    else:
        own = st.dictionaries(hostile_strings, hostile_strings | json_values, max_size=3)
    return st.one_of(own, own, own, hostile_values)


@st.composite
def task_events(draw: st.DrawFn) -> dict[str, Any]:
    """A TaskEvent that is nearly right: a runnable task with a few fields made hostile."""
    task: dict[str, Any] = {"Name": "fuzz", "Cmd": ["no-such-program", "x"]}
    fields = NUMBERS + STRINGS + LISTS + MAPS
    # Mostly one hostile field at a time, so each one's bound is reached past the others.
    count = draw(st.sampled_from([1, 1, 1, 1, 2, 3]))
    for field in draw(
        st.lists(st.sampled_from(fields), min_size=count, max_size=count, unique=True)
    ):
        task[field] = draw(_hostile(field))
    cmd = task.get("Cmd")
    if isinstance(cmd, list) and cmd and isinstance(cmd[0], str):
        # whatever the arguments, the program is one that does not exist: nothing runs
        task["Cmd"] = [f"/nonexistent/fuzz/{cmd[0]}", *cmd[1:]]
    event: dict[str, Any] = {"State": draw(st.sampled_from([2, 2, 2, 2, 1, 3, 0, 7])), "Task": task}
    if draw(st.booleans()):
        event["ID"] = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    if draw(st.booleans()):
        event["RequestedAt"] = draw(hostile_strings)
    return event


bodies = st.one_of(
    task_events().map(lambda e: json.dumps(e).encode()),
    task_events().map(lambda e: json.dumps(e).encode()),
    task_events().map(lambda e: json.dumps(e).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.just(b""),
)
ids = st.one_of(st.uuids().map(str), st.text(max_size=20), st.just("%00"))
# Submissions reach the deepest code (the log, the scheduler, a worker): most requests are one.
ROUTES = [
    *[("POST", "manager", "/tasks")] * 8,
    *[("POST", "worker", "/tasks")] * 2,
    ("GET", "manager", "/tasks"),
    ("GET", "manager", "/tasks/{id}"),
    ("DELETE", "manager", "/tasks/{id}"),
    ("GET", "manager", "/tasks/{id}/history"),
    ("GET", "manager", "/tasks/{id}/logs"),
    ("GET", "manager", "/stats"),
    ("GET", "manager", "/nodes"),
    ("PUT", "manager", "/tasks"),
    ("GET", "worker", "/tasks"),
    ("DELETE", "worker", "/tasks/{id}"),
    ("GET", "worker", "/stats"),
]


def _known(task: dict[str, Any], **event: Any) -> bytes:
    return json.dumps(
        {"State": 2, **event, "Task": {"Cmd": ["/nonexistent/no-such-program"], **task}}
    ).encode()


# Faults found by hand before (issue 13): each is tried on every run, besides what hypothesis
# generates.
KNOWN = [
    _known({"CPU": 1e308}),
    _known({"Memory": 2**64}),
    _known({"ExposedPorts": {"80/tcp": {"x": 2**70}}}),
    _known({"Cmd": ["/nonexistent/a\x00b"]}),
    _known({"Env": ["A=b\x00c"]}),
    _known({}, RequestedAt="yesterday"),
    _known({"StartsAt": "not a time", "ContainerID": 2**80}),
    _known({"Cmd": ["x"] * 5000}),
    _known({"PortBindings": {"80/tcp": "99999"}}),
]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=st.sampled_from(ROUTES), body=bodies, task_id=ids)
@example(route=("POST", "manager", "/tasks"), body=KNOWN[0], task_id="x")
@example(route=("POST", "manager", "/tasks"), body=KNOWN[1], task_id="x")
@example(route=("POST", "manager", "/tasks"), body=KNOWN[2], task_id="x")
@example(route=("POST", "manager", "/tasks"), body=KNOWN[3], task_id="x")
@example(route=("POST", "manager", "/tasks"), body=KNOWN[4], task_id="x")
@example(route=("POST", "manager", "/tasks"), body=KNOWN[5], task_id="x")
@example(route=("POST", "manager", "/tasks"), body=KNOWN[6], task_id="x")
@example(route=("POST", "manager", "/tasks"), body=KNOWN[7], task_id="x")
@example(route=("POST", "manager", "/tasks"), body=KNOWN[8], task_id="x")
def test_no_request_gets_a_server_error(
    orc: Orc, route: tuple[str, str, str], body: bytes, task_id: str
) -> None:
    method, node, path = route
    base = orc.manager if node == "manager" else orc.worker
    url = base + path.replace("{id}", quote(task_id, safe=""))
    content = body if method in ("POST", "PUT") else None
    try:
        r = httpx.request(method, url, content=content, timeout=10)
    except httpx.HTTPError as exc:
        pytest.fail(f"{method} {url} {body[:200]!r}: no answer ({exc}); orc says:\n{_tail(orc)}")
    assert r.status_code < 500, f"{method} {url} {body[:200]!r} -> {r.status_code} {r.text}"
    if r.status_code >= 400:
        assert r.json()["message"], r.text
    assert orc.proc.poll() is None, f"orc exited:\n{_tail(orc)}"


def test_orc_still_serves_after_the_fuzz(orc: Orc) -> None:
    """Runs after the property (file order): the cluster still takes and runs a task."""
    assert orc.proc.poll() is None, _tail(orc)
    r = httpx.get(f"{orc.manager}/stats", timeout=10)
    assert r.status_code == 200
    body = {"State": 2, "Task": {"Cmd": [sys.executable, "-c", "pass"]}}
    r = httpx.post(f"{orc.manager}/tasks", json=body, timeout=10)
    assert r.status_code == 201, r.text
    task_id = r.json()["Task"]["ID"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        task = httpx.get(f"{orc.manager}/tasks/{task_id}", timeout=10).json()
        if task["State"] == 3:
            return
        time.sleep(0.1)
    raise AssertionError(f"task did not complete: {task}\n{_tail(orc)}")


def _tail(orc: Orc) -> str:
    return orc.out.read_text(errors="replace")[-4000:]
