"""`GET /openapi.json`: the route table (orc/http/openapi.py) and the apps' routes are the same
set, both ways, for every kind of node; openapi-spec-validator accepts every document; and a
schemathesis run against a real `orc` process finds no server error and no answer that breaks
the document.

The schemathesis run is bounded (a fixed number of examples per operation, a fixed seed) and
talks only to the orc it started, on 127.0.0.1. That orc has no worker, so no task it accepts
can ever run, and its PATH holds no programs besides.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families
from quart_trio import QuartTrio
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orc.cmd.manager import ManagerActors, manager_http_app
from orc.cmd.worker import worker_node_app
from orc.http.openapi import TABLES, app_routes, document
from orc.http.worker import worker_app
from tests.conftest import ROOT, RunningCluster, make_settings, orc_env, wait_for_state

TOKEN = "openapi-t0ken"
EXAMPLES = int(os.environ.get("ORC_OPENAPI_EXAMPLES", "30"))  # per operation and mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


# -- the table and the apps ---------------------------------------------------------------------


def node_apps(tmp_path: Path) -> dict[str, tuple[str, QuartTrio]]:
    """Every kind of app orc serves, built as the commands build them (the actors are never
    asked anything here: only the routes are read)."""
    settings = make_settings(tmp_path / "data")
    ref: Any = SimpleNamespace(name="nobody")
    log: Any = SimpleNamespace(directory=str(tmp_path / "log"))
    actors = ManagerActors(log, ref, ref, ref, ref, meter=ref)
    journal: Any = SimpleNamespace(log=log)
    return {
        "orc (its manager)": ("manager", manager_http_app(actors, settings, {}, None)),
        "orc manager": ("manager", manager_http_app(actors, settings, {}, ref)),
        "orc (a worker)": ("worker", worker_app(ref, settings.data_dir, settings.max_body)),
        "orc worker": ("worker", worker_node_app(ref, settings, journal, lambda: None)),  # type: ignore[arg-type, return-value]
    }


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def test_every_route_is_in_the_table_and_every_row_is_a_route(tmp_path: Path) -> None:
    served: dict[str, set[tuple[str, str]]] = {"manager": set(), "worker": set()}
    for kind, (role, app) in node_apps(tmp_path).items():
        routes = app_routes(app)
        table = {(op.method, op.path) for op in TABLES[role]}
        assert routes - table == set(), f"{kind}: routes missing from orc/http/openapi.py"
        assert documented(document(role, routes)) == routes, kind
        served[role] |= routes
    for role, table in TABLES.items():
        stale = {(op.method, op.path) for op in table} - served[role]
        assert stale == set(), f"rows of the {role} table that no {role} app serves"


def test_openapi_spec_validator_accepts_every_document(tmp_path: Path) -> None:
    for role in TABLES:
        validate(document(role))  # type: ignore[arg-type]
    for kind, (role, app) in node_apps(tmp_path).items():
        try:
            validate(document(role, app_routes(app)))  # type: ignore[arg-type]
        except Exception as exc:
            raise AssertionError(f"{kind}: {exc}") from exc


def test_every_operation_says_its_errors() -> None:
    for role, table in TABLES.items():
        doc = document(role)
        for op in table:
            answers = doc["paths"][op.path][op.method.lower()]["responses"]
            assert "401" in answers, (role, op.method, op.path)
            for status, answer in answers.items():
                if int(status) >= 400:
                    schema = answer["content"]["application/json"]["schema"]["$ref"]
                    assert schema.endswith(("/Error", "/EventsError")), (op.path, status)
                    if int(status) in (429, 503):
                        assert "Retry-After" in answer["headers"], (op.path, status)


async def test_the_nodes_serve_their_documents(cluster: RunningCluster, tmp_path: Path) -> None:
    apps = node_apps(tmp_path)
    for client, kind in (
        (cluster.manager, "orc (its manager)"),
        (cluster.worker, "orc (a worker)"),
    ):
        r = await client.get("/openapi.json")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        role, app = apps[kind]
        assert r.json() == document(role, app_routes(app))
        validate(r.json())


def test_the_task_body_schema_is_the_edge_s_own_bounds() -> None:
    schemas = document("manager")["components"]["schemas"]
    body = schemas["TaskBody"]["properties"]
    assert body["CPU"]["maximum"] == 1024 and body["Memory"]["maximum"] == 1 << 50
    assert body["Cmd"]["anyOf"][0]["maxItems"] == 256
    assert body["State"]["description"].startswith("set by orc")  # accepted, ignored unread
    assert schemas["TaskBody"]["additionalProperties"] is False
    # what orc answers carries every key
    assert set(schemas["Task"]["required"]) == set(schemas["Task"]["properties"])


async def test_answers_of_a_cluster_that_ran_a_task_fit_the_documents(
    cluster: RunningCluster, tmp_path: Path
) -> None:
    """What schemathesis cannot reach (its orc has no worker): a task that ran, its history
    and logs, the nodes, and a worker's own answers, each checked against its document."""
    r = await cluster.manager.post(
        "/tasks", json={"State": 2, "Task": {"Cmd": [sys.executable, "-c", "print('hi')"]}}
    )
    task_id = r.json()["Task"]["ID"]
    await wait_for_state(cluster.manager, task_id, 3)
    docs = {role: document(role, app_routes(app)) for role, app in node_apps(tmp_path).values()}
    calls = [
        ("manager", cluster.manager, "/tasks", "/tasks"),
        ("manager", cluster.manager, "/tasks/{task_id}", f"/tasks/{task_id}"),
        ("manager", cluster.manager, "/tasks/{task_id}/history", f"/tasks/{task_id}/history"),
        ("manager", cluster.manager, "/tasks/{task_id}/logs", f"/tasks/{task_id}/logs"),
        ("manager", cluster.manager, "/nodes", "/nodes"),
        ("manager", cluster.manager, "/stats", "/stats"),
        ("worker", cluster.worker, "/tasks", "/tasks"),
        ("worker", cluster.worker, "/tasks/{task_id}/logs", f"/tasks/{task_id}/logs"),
        ("worker", cluster.worker, "/stats", "/stats"),
        ("worker", cluster.worker, "/orders", "/orders"),
    ]
    for role, client, template, path in calls:
        r = await client.get(path)
        assert r.status_code == 200, (role, path, r.text)
        answer = docs[role]["paths"][template]["get"]["responses"]["200"]
        schema = {**answer["content"]["application/json"]["schema"], **docs[role]}
        OAS31Validator(schema).validate(r.json())


# -- schemathesis against a live orc ----------------------------------------------------------


class Orc(SimpleNamespace):
    base: str
    proc: subprocess.Popen[bytes]
    out: Path


@pytest.fixture(scope="module")
def orc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orc]:
    """A real `orc` with no worker: whatever it accepts stays Pending, nothing ever runs."""
    tmp = tmp_path_factory.mktemp("openapi")
    (tmp / "no-programs").mkdir()
    env = {
        **os.environ,
        **orc_env(tmp / "data", ORC_WORKER_COUNT="0", ORC_TOKEN=TOKEN),
        "PATH": str(tmp / "no-programs"),
        "PYTHONPATH": str(ROOT),
    }
    out = tmp / "orc.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orc"], env=env, cwd=ROOT, stdout=sink, stderr=sink
        )
    base = f"http://127.0.0.1:{env['ORC_MANAGER_PORT']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/stats", headers=_auth()).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError(f"orc did not start:\n{out.read_text()}")
    yield Orc(base=base, proc=proc, out=out)
    proc.kill()
    proc.wait(timeout=30)


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


# The operations schemathesis calls: all of `orc`'s manager but `GET /events`, a stream that
# never ends (its errors are tested in tests/http/test_events_api.py).
FUZZED = sorted(
    (method, path)
    for method, path in documented(document("manager"))
    if path != "/events" and (method, path) != ("POST", "/nodes")  # `orc manager` only
)


@pytest.mark.parametrize(("method", "path"), FUZZED, ids=[f"{m} {p}" for m, p in FUZZED])
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(
    orc: Orc, method: str, path: str
) -> None:
    schema = schemathesis.openapi.from_url(f"{orc.base}/openapi.json", headers=_auth(), timeout=10)
    operation = schema[path][method]
    cases = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=2 * EXAMPLES,
        derandomize=True,  # a fixed seed: the same requests every run
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=orc.base, headers=_auth(), timeout=10)
        assert response.request.url.startswith(orc.base + "/"), response.request.url
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
        case.validate_response(response, checks=CHECKS)
        assert orc.proc.poll() is None, orc.out.read_text()[-4000:]

    check()


def test_the_run_reached_past_the_edge(orc: Orc) -> None:
    """Runs after the schemathesis tests (file order): their requests, as the orc's own
    /metrics counted them, were not all refused at the door; tasks were taken, and unknown
    IDs looked up."""
    text = httpx.get(f"{orc.base}/metrics", headers=_auth(), timeout=10).text
    answered: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "orc_http_requests_total":
                answered[s.labels["method"], s.labels["route"], s.labels["status"]] = s.value
    if not any(method == "POST" for method, _, _ in answered):
        pytest.skip("the schemathesis tests did not run")
    assert answered.get(("POST", "/tasks", "201"), 0) > 0, answered
    assert answered.get(("POST", "/tasks", "400"), 0) > 0, answered
    assert answered.get(("GET", "/tasks/{task_id}", "404"), 0) > 0, answered
    assert answered.get(("GET", "/tasks/{task_id}", "400"), 0) > 0, answered
    assert not [key for key in answered if key[2].startswith("5")], answered
