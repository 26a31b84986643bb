"""Node attributes over HTTP: ORC_WORKER_ATTRS reaches `GET /nodes` in one process (`orc`) and
through registration and heartbeats (`orc manager` + `orc worker`, here in one process), and
`POST /nodes` refuses attributes out of bounds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio

from orc.cmd.manager import run_manager
from orc.cmd.worker import run_worker
from orc.config import ConfigError, parse_attrs
from orc.http.nodes import decode_registration
from tests.conftest import make_settings, running_cluster


async def test_orc_gives_its_workers_ORC_WORKER_ATTRS(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", ORC_WORKER_COUNT="2", ORC_WORKER_ATTRS="rack=a")
    async with running_cluster(settings) as c:
        nodes = (await c.manager.get("/nodes")).json()
        assert {n["Name"]: n["Attrs"] for n in nodes} == {
            "worker-1": {"rack": "a"},
            "worker-2": {"rack": "a"},
        }
        assert "Orc worker worker-1 attributes: rack=a" in c.lines


async def test_a_worker_registers_and_heartbeats_its_attrs(tmp_path: Path) -> None:
    manager_settings = make_settings(tmp_path / "m", ORC_NODE_TTL="0.6")
    url = f"http://127.0.0.1:{manager_settings.manager_port}"
    worker_settings = make_settings(
        tmp_path / "w", ORC_NODE_TTL="0.6", ORC_WORKER_NAME="w1", ORC_WORKER_ATTRS="rack=a,zone=z1"
    )
    stop, up = trio.Event(), {"manager": trio.Event(), "worker": trio.Event()}

    def started(role: str) -> Callable[[str], None]:
        def announce(line: str) -> None:
            if line.startswith("Starting Orc"):
                up[role].set()

        return announce

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_manager, manager_settings, started("manager"), stop)
        with trio.fail_after(20):
            await up["manager"].wait()
        nursery.start_soon(run_worker, worker_settings, url, started("worker"), stop)
        async with httpx.AsyncClient(base_url=url, timeout=10) as manager:
            with trio.fail_after(20):
                while not (nodes := (await manager.get("/nodes")).json()):
                    await trio.sleep(0.05)
            assert nodes[0]["Name"] == "w1"
            assert nodes[0]["Attrs"] == {"rack": "a", "zone": "z1"}
            # Heartbeats (every TTL/3) carry the same attributes: the node joined once.
            await trio.sleep(0.7)
            again = (await manager.get("/nodes")).json()
            assert again[0]["Attrs"] == {"rack": "a", "zone": "z1"}
            assert again[0]["State"] == "up"
            joined = []
            async with manager.stream("GET", "/events", params={"type": "NodeJoined"}) as r:
                with trio.move_on_after(0.3):
                    async for line in r.aiter_lines():
                        joined.append(line)
            assert len(joined) == 1 and '"Attrs":{"rack":"a","zone":"z1"}' in joined[0], joined
            # A registration with attributes out of bounds is refused, naming them.
            bad = {"Name": "w2", "Address": "127.0.0.1:1", "Drivers": [], "Attrs": {"node": "x"}}
            r = await manager.post("/nodes", json=bad)
            assert r.status_code == 400
            assert "at $.Attrs" in r.json()["message"] and "built in" in r.json()["message"]
        stop.set()


def test_a_registration_without_attrs_and_with_none_are_one() -> None:
    body = b'{"Name": "w1", "Address": "h:1", "Drivers": ["process"], "Attrs": {}}'
    assert decode_registration(body).attrs is None
    body = b'{"Name": "w1", "Address": "h:1", "Drivers": ["process"], "Attrs": {"rack": "a"}}'
    assert decode_registration(body).attrs == {"rack": "a"}


@pytest.mark.parametrize(
    ("items", "attrs"),
    [
        ([""], ()),
        (["rack=a,zone=z1"], (("rack", "a"), ("zone", "z1"))),
        ([" rack = a , zone=z1 ,"], (("rack", "a"), ("zone", "z1"))),
        (["rack=a", "rack=b"], (("rack", "b"),)),  # a later value wins
        (["k=a=b", "e="], (("k", "a=b"), ("e", ""))),
    ],
)
def test_attrs_settings_parse(items: list[str], attrs: tuple[tuple[str, str], ...]) -> None:
    assert parse_attrs(items) == attrs


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("rack", "expected KEY=VALUE, got 'rack'"),
        ("=a", "expected KEY=VALUE, got '=a'"),
        ("9rack=a", "attribute name '9rack'"),
        ("node=w1", "attribute 'node' is built in"),
    ],
)
def test_a_bad_ORC_WORKER_ATTRS_is_a_config_error(raw: str, said: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ORC_WORKER_ATTRS") as caught:
        make_settings(tmp_path, ORC_WORKER_ATTRS=raw)
    assert said in str(caught.value)
