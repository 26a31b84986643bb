"""Real etcd members for the tests of orc/ha: one for most tests, three for the quorum test.

Each member gets its own data dir under the test's tmp_path and free client and peer ports,
with fast heartbeats and elections (50 ms, 500 ms) so that a cluster settles in well under a
second. Skipped when no `etcd` binary is installed, unless ORC_REQUIRE_ETCD=1, which makes that
a failure. Members are killed at the end of each test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orc.ha.etcd import EtcdClient
from tests.conftest import free_port

ETCD = shutil.which("etcd")


@dataclass
class Member:
    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class EtcdCluster:
    members: list[Member]

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def client(self, timeout: float = 2.0) -> EtcdClient:
        return EtcdClient(self.endpoints, timeout=timeout)


def _start(tmp_path: Path, count: int) -> EtcdCluster:
    if ETCD is None:
        if os.environ.get("ORC_REQUIRE_ETCD") == "1":
            pytest.fail("ORC_REQUIRE_ETCD=1 but no etcd is installed (Debian: etcd-server)")
        pytest.skip("no etcd installed (set ORC_REQUIRE_ETCD=1 to fail instead)")
    members = [
        Member(
            f"m{i}",
            f"http://127.0.0.1:{free_port()}",
            f"http://127.0.0.1:{free_port()}",
            tmp_path / f"etcd-m{i}",
        )
        for i in range(count)
    ]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    for m in members:
        with (tmp_path / f"etcd-{m.name}.log").open("wb") as log:
            m.proc = subprocess.Popen(
                [
                    ETCD,
                    f"--name={m.name}",
                    f"--data-dir={m.data_dir}",
                    f"--listen-client-urls={m.client_url}",
                    f"--advertise-client-urls={m.client_url}",
                    f"--listen-peer-urls={m.peer_url}",
                    f"--initial-advertise-peer-urls={m.peer_url}",
                    f"--initial-cluster={initial}",
                    "--initial-cluster-state=new",
                    "--heartbeat-interval=50",
                    "--election-timeout=500",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    cluster = EtcdCluster(members)
    try:
        _wait_ready(cluster, tmp_path)
    except BaseException:
        for m in members:
            m.kill()
        raise
    return cluster


def _wait_ready(cluster: EtcdCluster, tmp_path: Path) -> None:
    """Until every member answers its status with a leader known."""
    deadline = time.monotonic() + 15
    with httpx.Client(timeout=1) as http:
        for m in cluster.members:
            while True:
                try:
                    r = http.post(f"{m.client_url}/v3/maintenance/status", json={})
                    if r.status_code == 200 and r.json().get("leader"):
                        break
                except httpx.TransportError:
                    pass
                assert m.proc is not None
                if m.proc.poll() is not None or time.monotonic() > deadline:
                    logs = (tmp_path / f"etcd-{m.name}.log").read_text(errors="replace")
                    raise AssertionError(f"etcd member {m.name} did not start:\n{logs[-3000:]}")
                time.sleep(0.05)


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One etcd member, shared by the session's tests: each works in its own `cluster`."""
    cluster = _start(tmp_path_factory.mktemp("etcd"), 1)
    yield cluster
    for m in cluster.members:
        m.kill()


@pytest.fixture
def cluster() -> str:
    """A cluster name of this test's own, so that tests sharing a member never meet."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def etcd3(tmp_path: Path) -> Iterator[EtcdCluster]:
    """Three etcd members in one cluster."""
    cluster = _start(tmp_path, 3)
    yield cluster
    for m in cluster.members:
        m.kill()


@pytest.fixture
async def client(etcd: EtcdCluster) -> AsyncIterator[EtcdClient]:
    async with etcd.client() as c:
        yield c
