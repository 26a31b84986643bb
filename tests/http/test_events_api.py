"""GET /events: the log as NDJSON, resumable, filtered, live."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import trio

from tests.conftest import RunningCluster, make_settings, running_cluster, wait_for_state


async def _read_lines(client: httpx.AsyncClient, params: dict, count: int) -> list[dict]:
    lines: list[dict] = []
    with trio.fail_after(10):
        async with client.stream("GET", "/events", params=params) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/x-ndjson"
            async for line in r.aiter_lines():
                lines.append(json.loads(line))
                if len(lines) == count:
                    break
    return lines


async def _run_task(cluster: RunningCluster) -> str:
    task_id = str(uuid.uuid4())
    body = {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": ["true"]}}
    assert (await cluster.manager.post("/tasks", json=body)).status_code == 201
    await wait_for_state(cluster.manager, task_id, 3)
    return task_id


async def test_stream_resumes_without_gap_or_duplicate(cluster: RunningCluster) -> None:
    await _run_task(cluster)
    first = await _read_lines(cluster.manager, {"after": 0}, 3)
    assert [line["Seq"] for line in first] == [1, 2, 3]
    assert first[0]["Event"]["Type"] == "NodeJoined"
    # Reconnect after the last seen sequence: the rest follows, then live events.
    await _run_task(cluster)
    rest = await _read_lines(cluster.manager, {"after": first[-1]["Seq"]}, 5)
    seqs = [line["Seq"] for line in rest]
    assert seqs == list(range(4, 9))
    types = [line["Event"]["Type"] for line in rest]
    assert types == ["TaskStarted", "TaskExited", "TaskSubmitted", "TaskScheduled", "TaskStarted"]


async def test_live_events_and_filters(cluster: RunningCluster) -> None:
    stats = (await cluster.manager.get("/stats")).json()
    got: list[dict] = []

    async def listen() -> None:
        params = {"after": stats["LogSeq"], "type": "TaskExited"}
        got.extend(await _read_lines(cluster.manager, params, 1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen)
        task_id = await _run_task(cluster)
    assert got[0]["Event"]["Type"] == "TaskExited"
    assert got[0]["Event"]["TaskID"] == task_id
    other = await _run_task(cluster)
    by_task = await _read_lines(cluster.manager, {"task": other}, 4)
    assert {line["Event"].get("TaskID") or line["Event"]["Task"]["ID"] for line in by_task} == {
        other
    }


async def test_heartbeat_while_idle(cluster: RunningCluster) -> None:
    stats = (await cluster.manager.get("/stats")).json()
    [line] = await _read_lines(cluster.manager, {"after": stats["LogSeq"]}, 1)
    assert line == {"Heartbeat": True, "Seq": stats["LogSeq"]}


async def test_bad_queries(cluster: RunningCluster) -> None:
    r = await cluster.manager.get("/events", params={"after": "x"})
    assert r.status_code == 400 and "after" in r.json()["message"]
    r = await cluster.manager.get("/events", params={"type": "Nope"})
    assert r.status_code == 400 and "Nope" in r.json()["message"]
    r = await cluster.manager.get("/events", params={"after": 10**9})
    assert r.status_code == 400 and "beyond" in r.json()["message"]


async def test_compacted_sequence_is_410_with_the_earliest_left(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data",
        ORC_SEGMENT_BYTES="2000",
        ORC_SNAPSHOT_EVERY="10",
        ORC_RETAIN_EVENTS="0",
        ORC_DIGEST_EVERY="0",
    )
    async with running_cluster(settings) as cluster:
        for _ in range(8):
            await _run_task(cluster)
        r = await cluster.manager.get("/events", params={"after": 0})
        assert r.status_code == 410
        earliest = r.json()["EarliestSeq"]
        assert earliest > 1
        assert f"after={earliest - 1}" in r.json()["message"]
        lines = await _read_lines(cluster.manager, {"after": earliest - 1}, 1)
        assert lines[0]["Seq"] == earliest


async def test_task_history_tells_its_life_with_time_per_state(cluster: RunningCluster) -> None:
    task_id = await _run_task(cluster)
    r = await cluster.manager.get(f"/tasks/{task_id}/history")
    assert r.status_code == 200, r.text
    story = r.json()
    assert story["task"]["ID"] == task_id and story["task"]["StateName"] == "Completed"
    assert [p["state"] for p in story["periods"]] == [
        "Pending",
        "Scheduled",
        "Running",
        "Completed",
    ]
    assert [row["event"] for row in story["rows"]][:2] == ["submitted", "scheduled"]
    assert set(story["totals"]) == {"Pending", "Scheduled", "Running"}
    assert all(seconds >= 0 for seconds in story["totals"].values())

    unknown = await cluster.manager.get(f"/tasks/{uuid.uuid4()}/history")
    assert unknown.status_code == 404 and "no task" in unknown.json()["message"]
    bad = await cluster.manager.get("/tasks/not-a-uuid/history")
    assert bad.status_code == 400


async def test_task_history_of_a_damaged_log_is_503_naming_the_damage(
    cluster: RunningCluster,
) -> None:
    """The manager keeps running on what it already read; the history, read from disk, cannot
    be told, and the client learns where the log is damaged."""
    task_id = await _run_task(cluster)
    segment = sorted((cluster.settings.data_dir / "log").glob("*.seg"))[0]
    data = bytearray(segment.read_bytes())
    data[40] ^= 0xFF  # inside the first frame, far from the tail
    segment.write_bytes(bytes(data))
    r = await cluster.manager.get(f"/tasks/{task_id}/history")
    assert r.status_code == 503, r.text
    message = r.json()["message"]
    assert f"cannot tell the history of task {task_id}" in message
    assert segment.name in message and "offset" in message
    assert (await cluster.manager.get(f"/tasks/{task_id}")).status_code == 200
