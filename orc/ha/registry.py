"""Who the managers of a cluster are, and the view of the cluster that `GET /cluster` shows.

Each manager keeps an entry under `/orc/<cluster>/managers/<name>` (its address, its role, how
far its log goes), put again every few seconds on a lease of its own: a manager that dies
leaves the list within the lease's TTL, one that stops leaves it at once (`Registration`).
Any manager can then say who the others are (`cluster_view`), with the leader as the leader key
names it and the etcd members as etcd lists them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
import trio

from orc.ha.election import Leader, read_leader
from orc.ha.etcd import LEASE_NOT_FOUND, EtcdClient, EtcdError
from orc.ha.keys import Keys

logger = logging.getLogger("orc.ha")

LEADER, STANDBY = "leader", "standby"


class ManagerEntry(msgspec.Struct, rename="pascal", frozen=True):
    """One manager as it says itself: its name, its API's address, its role, the seq its log
    (its state) has reached, and when it said so (RFC 3339)."""

    name: str
    address: str
    role: str
    log_seq: int
    heartbeat: str | None = None


class EtcdMember(msgspec.Struct, frozen=True):
    """An etcd member: its name, its client URLs, whether it is etcd's own leader now."""

    name: str = msgspec.field(name="Name")
    client_urls: list[str] = msgspec.field(name="ClientURLs")
    is_leader: bool = msgspec.field(name="IsLeader")


class EtcdView(msgspec.Struct, rename="pascal", frozen=True):
    """The etcd this manager uses: the endpoints it was given, the members, and the first and
    last seq of the log as this manager sees it."""

    endpoints: list[str]
    members: list[EtcdMember]
    log_first_seq: int
    log_last_seq: int


class ClusterView(msgspec.Struct, rename="pascal", frozen=True):
    """`GET /cluster`: who leads, every manager, and the etcd behind them (null for a single
    manager with its file log)."""

    cluster: str
    leader: Leader | None
    managers: list[ManagerEntry]
    etcd: EtcdView | None


_ENTRY = msgspec.json.Decoder(ManagerEntry)


class Registration:
    """This manager's entry in etcd while `run` runs: put at once, then again every `every`
    seconds and soon after each `changed()`, on a lease of `ttl` seconds that each round
    renews. Cancelling `run` revokes the lease: the entry goes at once."""

    def __init__(
        self,
        client: EtcdClient,
        cluster: str,
        entry: Callable[[], ManagerEntry],
        ttl: int,
        every: float,
    ) -> None:
        self.client = client
        self.key = Keys(cluster).manager(entry().name)
        self.entry = entry
        self.ttl = ttl
        self.every = every
        self._lease = 0
        self._wake = trio.Event()

    def changed(self) -> None:
        """Put the entry again soon (the role or the log moved)."""
        self._wake.set()

    async def run(self) -> None:
        said = ""
        try:
            while True:
                problem = ""
                try:
                    await self._put()
                except EtcdError as exc:
                    problem = exc.message
                    if exc.code == LEASE_NOT_FOUND:
                        self._lease = 0
                if problem != said:
                    if problem:
                        logger.warning("cannot publish this manager in etcd: %s", problem)
                    said = problem
                with trio.move_on_after(self.every):
                    await self._wake.wait()
                self._wake = trio.Event()
        finally:
            await self._revoke()

    async def _put(self) -> None:
        if self._lease and await self.client.keepalive(self._lease) == 0:
            self._lease = 0  # ran out while etcd could not be reached
        if not self._lease:
            self._lease = (await self.client.grant(self.ttl)).id
        await self.client.put(self.key, msgspec.json.encode(self.entry()), lease=self._lease)

    async def _revoke(self) -> None:
        lease, self._lease = self._lease, 0
        if not lease:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(self.client.timeout):
            try:
                await self.client.revoke(lease)
            except EtcdError as exc:
                logger.info("leaving the managers' list: %s (its lease will run out)", exc)


async def managers(client: EtcdClient, cluster: str) -> list[ManagerEntry]:
    """Every manager's entry, by name (an entry that is not one, of another orc, is left out)."""
    keys = Keys(cluster)
    found = await client.range(keys.managers_prefix, keys.managers_end)
    entries = []
    for kv in found.kvs:
        try:
            entries.append(_ENTRY.decode(kv.value))
        except msgspec.DecodeError:
            continue
    return entries


async def cluster_view(
    client: EtcdClient, cluster: str, log_first_seq: int, log_last_seq: int
) -> ClusterView:
    """The cluster as etcd says it now. Each manager's role is the leader key's word (an entry
    says the role its manager had when it was last put). Raises EtcdError (EtcdUnavailable
    when no endpoint answers)."""
    leader = await read_leader(client, cluster)
    entries = [
        msgspec.structs.replace(e, role=LEADER if leader and e.name == leader.name else STANDBY)
        for e in await managers(client, cluster)
    ]
    members, leader_id = await client.members_and_leader()
    return ClusterView(
        cluster,
        leader,
        entries,
        EtcdView(
            list(client.endpoints),
            [
                EtcdMember(m.name, list(m.client_urls), m.id == leader_id)
                for m in sorted(members, key=lambda m: m.name)
            ],
            log_first_seq,
            log_last_seq,
        ),
    )
