"""The job routes (orc/http/jobs.py) against a real manager in process: every bad request is a
400 naming the field, an unknown job a 404 on every route, and a job's life (submit, the same
again, plan, scale, a new version, versions, revert, its tasks, stop) answered as documented,
each answer fitting the OpenAPI document."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import trio
from openapi_schema_validator import OAS31Validator

from orc.http.openapi import document
from tests.conftest import RunningCluster

SLEEP = [sys.executable, "-c", "import time; time.sleep(30)"]


def job(**fields: Any) -> dict[str, Any]:
    return {"ID": "web", "Task": {"Cmd": SLEEP}, **fields}


async def refused(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    message = r.json()["message"]
    assert words in message, message


def fits(r: httpx.Response, method: str, template: str) -> Any:
    """The answer's body, checked against the manager's document."""
    doc = document("manager")
    answer = doc["paths"][template][method.lower()]["responses"][str(r.status_code)]
    schema = {**answer["content"]["application/json"]["schema"], **doc}
    body = r.json()
    OAS31Validator(schema).validate(body)
    return body


async def test_a_bad_job_spec_is_a_400_naming_the_field(cluster: RunningCluster) -> None:
    m = cluster.manager
    bad: list[tuple[Any, str]] = [
        (job(Count=-1), "Job.Count: must be a whole number from 0 to 10000"),
        (job(Count=10001), "Job.Count: must be a whole number from 0 to 10000"),
        (job(Count="3"), "Expected int, got str - at $.Job.Count"),
        (job(Type="x"), "Job.Type: must be one of 'service', 'batch', 'system'"),
        (job(Foo=1), "Object contains unknown field Foo - at $.Job"),
        (job(ID="-web"), "Job.ID: must be 1 to 64 letters"),
        (
            job(Type="batch", Periodic={"Cron": "every day"}),
            "Job.Periodic.Cron: 'every day' is not a cron expression of five fields",
        ),
        (job(Periodic={"Cron": "*/5 * * * *"}), "Job.Periodic: only a batch job may be periodic"),
        (
            job(Constraints=[{"Attribute": "rack", "Operator": "regexp", "Value": "("}]),
            "Job.Constraints[0].Value: not a regular expression",
        ),
        (
            job(Constraints=[{"Attribute": "rack", "Operator": "~"}]),
            "Job.Constraints[0].Operator: must be one of '=', '!=', 'regexp'",
        ),
        (job(Type="system", Count=3), "Job.Count: a system job runs one task per node"),
        ({"ID": "web"}, "Object missing required field Task - at $.Job"),
        ({"ID": "web", "Task": {}}, "needs an Image (run as a Docker container) or a Cmd"),
        ({"ID": "web", "Task": {"Cmd": []}}, "Expected a non-empty argv list, got [] - at $.Job"),
        (
            {"ID": "web", "Task": {"Cmd": ["x"], "CPU": 5000}},
            "Job.Task.CPU: must be a finite number between 0 and 1024",
        ),
        ({"ID": "web", "Task": {"Cmd": ["x"], "ID": "x"}}, "Job.Task.ID: must be empty"),
        (
            {"ID": "web", "Task": {"Cmd": ["x"], "Driver": "docker"}},
            "Driver docker needs an Image - at $.Job.Task.Image",
        ),
        ([], "Expected object, got array - at $.Job"),
    ]
    for body, words in bad:
        await refused(await m.post("/jobs", json=body), 400, words)
        # a plan checks its spec as a submission does
        await refused(await m.post("/jobs/web/plan", json=body), 400, words)
    await refused(await m.post("/jobs", content=b""), 400, "request body is empty")
    await refused(await m.post("/jobs", content=b"{"), 400, "malformed JSON")
    r = await m.post("/jobs/api/plan", json=job())
    await refused(r, 400, "the body's ID 'web' is not the path's job 'api'")
    assert (await m.get("/jobs")).json() == []  # none of it made a job

    # the small bodies name their fields alone
    r = await m.put("/jobs/web/scale", json={"Count": -1})
    await refused(r, 400, "Count: must be a whole number from 0 to 10000")
    await refused(await m.put("/jobs/web/scale", json={}), 400, "missing required field Count")
    r = await m.post("/jobs/web/revert", json={"Version": -1})
    await refused(r, 400, "Version: must be a version number of the job")
    r = await m.post("/jobs/web/revert", json={"Version": 1, "Count": 2})
    await refused(r, 400, "Object contains unknown field Count - at $")


async def test_a_bad_job_id_is_a_400_and_an_unknown_job_a_404_on_every_route(
    cluster: RunningCluster,
) -> None:
    m = cluster.manager
    routes: list[tuple[str, str, Any]] = [
        ("GET", "/jobs/{}", None),
        ("DELETE", "/jobs/{}", None),
        ("PUT", "/jobs/{}/scale", {"Count": 2}),
        ("GET", "/jobs/{}/versions", None),
        ("POST", "/jobs/{}/revert", {"Version": 0}),
        ("POST", "/jobs/{}/plan", job(ID="-x")),
    ]
    for method, path, body in routes:
        r = await m.request(method, path.format("-x"), json=body)
        await refused(r, 400, "not a job ID: '-x' (a job ID is 1 to 64 letters")
        if path.endswith("/plan"):
            continue  # a plan of a job orc does not know is the plan of a new job
        r = await m.request(method, path.format("nope"), json=body)
        await refused(r, 404, "no job with ID nope")
    await refused(await m.get("/tasks", params={"job": "a b"}), 400, "not a job ID: 'a b'")
    assert (await m.get("/tasks", params={"job": "nope"})).json() == []
    assert (await m.get("/jobs")).json() == []


async def wait_running(m: httpx.AsyncClient, job_id: str, count: int) -> dict[str, Any]:
    view: dict[str, Any] = {}
    with trio.move_on_after(15):
        while True:
            view = (await m.get(f"/jobs/{job_id}")).json()
            if view["Tasks"]["Running"] == count and view["Tasks"]["Pending"] == 0:
                return view
            await trio.sleep(0.05)
    raise AssertionError(f"job {job_id} never ran {count} tasks: {view}")


async def test_a_job_s_life_through_the_api(cluster: RunningCluster) -> None:
    m = cluster.manager
    r = await m.post("/jobs", json=job(Count=2, Name="the web"))
    assert r.status_code == 201, r.text
    accepted = fits(r, "POST", "/jobs")
    assert (accepted["ID"], accepted["Version"]) == ("web", 0)
    again = await m.post("/jobs", json=job(Count=2, Name="the web"))
    assert again.status_code == 200, again.text
    assert again.json()["Version"] == 0 and "unchanged" in again.json()["Message"]

    view = fits(await m.get("/jobs/web"), "GET", "/jobs/{job_id}")
    assert (view["ID"], view["Name"], view["Type"], view["Count"]) == (
        "web",
        "the web",
        "service",
        2,
    )
    assert view["Spec"]["Task"]["Driver"] == "process"  # the edge decided it
    listed = fits(await m.get("/jobs"), "GET", "/jobs")
    assert [j["ID"] for j in listed] == ["web"]
    await wait_running(m, "web", 2)

    tasks = fits(await m.get("/tasks", params={"job": "web"}), "GET", "/tasks")
    assert len(tasks) == 2 and {t["JobID"] for t in tasks} == {"web"}
    assert sorted(t["Slot"] for t in tasks) == [0, 1]
    alone = await m.post("/tasks", json={"State": 2, "Task": {"Cmd": SLEEP}})
    assert alone.status_code == 201
    assert len((await m.get("/tasks", params={"job": "web"})).json()) == 2
    assert len((await m.get("/tasks")).json()) == 3

    r = await m.post("/jobs/web/plan", json=job(Count=3, Name="the web"))
    planned = fits(r, "POST", "/jobs/{job_id}/plan")
    assert planned["Changed"] and not planned["Created"] and not planned["RollingUpdate"]
    assert planned["Changes"] == ["Count: 2 -> 3"]
    assert [p["Node"] for p in planned["Placements"]] == ["worker-1"]
    assert len((await m.get("/tasks", params={"job": "web"})).json()) == 2  # a plan changes nothing

    r = await m.put("/jobs/web/scale", json={"Count": 3})
    scaled = fits(r, "PUT", "/jobs/{job_id}/scale")
    assert scaled["Version"] == 0 and scaled["Message"] == "count 2 -> 3"
    await wait_running(m, "web", 3)

    env = {"Cmd": SLEEP, "Env": ["COLOUR=blue"]}
    r = await m.post("/jobs", json=job(Count=3, Name="the web", Task=env))
    assert r.status_code == 200, r.text
    assert r.json()["Version"] == 1 and "rolling update" in r.json()["Message"]
    versions = fits(await m.get("/jobs/web/versions"), "GET", "/jobs/{job_id}/versions")
    assert [v["Version"] for v in versions] == [1, 0]
    assert versions[0]["Current"] and not versions[1]["Current"]

    r = await m.post("/jobs/web/revert", json={"Version": 7})
    await refused(r, 404, "job web has no version 7")
    r = await m.post("/jobs/web/revert", json={"Version": 0})
    reverted = fits(r, "POST", "/jobs/{job_id}/revert")
    assert reverted["Version"] == 2, reverted
    versions = (await m.get("/jobs/web/versions")).json()
    assert [v["Version"] for v in versions] == [2, 1, 0]
    assert versions[0]["Spec"]["Task"].get("Env") is None

    r = await m.delete("/jobs/web")
    stopped = fits(r, "DELETE", "/jobs/{job_id}")
    assert stopped["ID"] == "web"
    assert (await m.get("/jobs/web")).json()["Status"] == "stopped"
    again = (await m.delete("/jobs/web")).json()
    assert again["Message"] == "stopped already"
    r = await m.put("/jobs/web/scale", json={"Count": 1})
    assert r.status_code == 200, r.text
