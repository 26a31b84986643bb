"""`GET /cluster` of a single manager with its file log (no etcd): a cluster of one, itself
the leader, its log's position, `Etcd` null. Highly available managers answer it from etcd
(tests/ha)."""

from __future__ import annotations

from orc.cmd.manager import manager_name
from tests.conftest import RunningCluster


async def test_a_single_manager_is_a_cluster_of_one(cluster: RunningCluster) -> None:
    r = await cluster.manager.get("/cluster")
    assert r.status_code == 200, r.text
    view = r.json()
    name = manager_name(cluster.settings)
    assert name == f"127.0.0.1:{cluster.settings.manager_port}"
    assert view["Cluster"] == "orc" and view["Etcd"] is None
    assert view["Leader"]["Name"] == name
    assert view["Leader"]["Address"] == f"http://{name}"
    (me,) = view["Managers"]
    assert (me["Name"], me["Role"]) == (name, "leader")
    stats = (await cluster.manager.get("/stats")).json()
    assert me["LogSeq"] == stats["LogSeq"] > 0  # the workers joined
