"""`GET /jobs/{id}/history`: a job's story from the live log, as `orc replay --job ID --json`
tells it, on an in-process cluster that ran the job's tasks."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import trio
from openapi_schema_validator import OAS31Validator

from orc.http.history import _job_history
from orc.http.openapi import document
from orc.replay.read import read
from tests.conftest import RunningCluster

SERVICE = {"ID": "web", "Count": 2, "Task": {"Cmd": ["sleep", "30"]}}


async def wait_running(cluster: RunningCluster, job_id: str, count: int) -> dict:
    view: dict = {}
    with trio.move_on_after(20):
        while True:
            view = (await cluster.manager.get(f"/jobs/{job_id}")).json()
            if view.get("Tasks", {}).get("Running") == count:
                return view
            await trio.sleep(0.05)
    raise AssertionError(f"job {job_id} never ran {count} tasks; last seen {view}")


async def test_a_job_s_history_tells_its_versions_decisions_and_tasks(
    cluster: RunningCluster,
) -> None:
    m = cluster.manager
    r = await m.post("/jobs", json=SERVICE)
    assert r.status_code == 201, r.text
    await wait_running(cluster, "web", 2)

    r = await m.get("/jobs/web/history")
    assert r.status_code == 200, r.text
    story = r.json()
    assert story["job"]["ID"] == "web" and story["job"]["Tasks"]["Running"] == 2
    assert [(v["version"], v["reason"]) for v in story["versions"]] == [(0, "submitted")]
    assert story["events"][0]["event"] == "job-registered"
    places = [e for e in story["events"] if e["action"] == "place"]
    assert len(places) == 2 and all(e["reason"] for e in places)
    assert sorted(t["slot"] for t in story["tasks"]) == [0, 1]
    for task in story["tasks"]:
        assert task["state"] == "Running" and task["node"] == "worker-1"
        fate = [f["what"] for f in task["fate"]]
        assert f"created for slot {task['slot']} of version 0" in fate
        assert "started on worker-1" in fate
    # as the API's document says
    doc = document("manager")
    answer = doc["paths"]["/jobs/{job_id}/history"]["get"]["responses"]["200"]
    OAS31Validator({**answer["content"]["application/json"]["schema"], **doc}).validate(story)
    # the same story the replay tells of the log on disk
    log_dir = cluster.settings.data_dir / "log"
    here = await trio.to_thread.run_sync(_job_history, partial(read, log_dir), "web")
    assert [e.seq for e in here.events][: len(story["events"])] == [
        e["seq"] for e in story["events"]
    ]

    unknown = await m.get("/jobs/nope/history")
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "no job with ID nope"
    bad = await m.get("/jobs/-bad-/history")
    assert bad.status_code == 400 and "not a job ID" in bad.json()["message"]
    assert (await m.delete("/jobs/web")).status_code == 200


async def test_a_job_s_history_of_a_damaged_log_is_503(cluster: RunningCluster) -> None:
    m = cluster.manager
    spec = {"ID": "once", "Type": "batch", "Task": {"Cmd": [sys.executable, "-c", "pass"]}}
    assert (await m.post("/jobs", json=spec)).status_code == 201
    segment = sorted(Path(cluster.settings.data_dir / "log").glob("*.seg"))[0]
    data = bytearray(segment.read_bytes())
    data[40] ^= 0xFF  # inside the first frame, far from the tail
    segment.write_bytes(bytes(data))
    r = await m.get("/jobs/once/history")
    assert r.status_code == 503, r.text
    assert "cannot tell the history of job once" in r.json()["message"]
    assert segment.name in r.json()["message"]
