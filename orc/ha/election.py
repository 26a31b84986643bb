"""Which manager leads: an election on a leased etcd key, and the fence every leader write carries.

Each candidate holds a lease (`ttl` seconds, renewed every `ttl / 3`) and campaigns with one
transaction: "if the leader key does not exist, create it on my lease, with my name and
address; else read it". The one whose transaction created the key leads; the revision at which
it did is its `Fence`, which every write of its log compares (`orc.ha.log`). The others watch the
key and campaign again when it is deleted: when the leader resigns, or when etcd ends its lease
because the renewals stopped (a crash, a pause, a partition), at most `ttl` after the last one.

A leader steps down on its own as soon as it can tell it may have lost the lead: etcd says its
lease is gone, the key was deleted, or no renewal succeeded for `ttl` since the last one was
sent (etcd cannot have ended the lease before that, so the leader notices first). A leader
that cannot tell (paused, or cut off before it could look) still never writes after losing the
lead: its fence no longer matches the key, and etcd refuses the write.

An `Election` is one candidacy: it campaigns until it wins, leads until it loses the lead or
resigns, and then `run` returns. Campaign again with a new one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import msgspec
import trio

from orc.clock import now
from orc.ha.etcd import (
    LEASE_NOT_FOUND,
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    EtcdUnavailable,
    KeyValue,
    TxnResponse,
    created,
    delete,
    get,
    put,
)
from orc.ha.keys import Keys
from orc.ha.log import Fence

logger = logging.getLogger("orc.ha")

_RETRY_FIRST, _RETRY_MAX = 0.05, 1.0  # seconds between retries while etcd is unavailable


class Leader(msgspec.Struct, rename="pascal", frozen=True):
    """The value of the leader key: who leads, where its API is, since when (RFC 3339)."""

    name: str
    address: str
    since: str


_LEADER = msgspec.json.Decoder(Leader)


def _leader_of(kv: KeyValue | None) -> Leader | None:
    if kv is None:
        return None
    try:
        return _LEADER.decode(kv.value)
    except msgspec.DecodeError:
        return Leader("?", "", "")  # something leads, though not an orc manager of this version


async def read_leader(client: EtcdClient, cluster: str) -> Leader | None:
    """Who leads `cluster` now, as etcd says; None while no one does."""
    return _leader_of(await client.get(Keys(cluster).leader))


class Election:
    """One manager's candidacy for the lead of `cluster`. Run `run` in a nursery.

    `on_lost` is called (from the election's task) the moment it steps down after leading;
    `lost` is set then too.
    """

    def __init__(
        self,
        client: EtcdClient,
        cluster: str,
        name: str,
        address: str,
        ttl: float = 5.0,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.keys = Keys(cluster)
        self.name = name
        self.address = address
        self.ttl = max(1, math.ceil(ttl))  # etcd's leases are whole seconds
        self.on_lost = on_lost
        self.lost = trio.Event()
        self._decided = trio.Event()  # won, or over without winning
        self._fence: Fence | None = None
        self._leader: Leader | None = None
        self._lease = 0
        self._lease_until = 0.0  # trio time until which etcd surely keeps the lease
        self._scope: trio.CancelScope | None = None
        self._over = False

    @property
    def is_leader(self) -> bool:
        return self._fence is not None

    @property
    def fence(self) -> Fence | None:
        """The leader key and the revision this candidate created it at, while it leads."""
        return self._fence

    def holds(self) -> bool:
        """Whether this candidate surely leads now: it won, and the lease etcd last renewed
        cannot have run out yet by this process's clock. etcd fences a leader's log writes;
        what it sends elsewhere (orders to workers) is sent only while this holds, so that a
        leader paused past its lease sends nothing before it notices that it lost the lead."""
        return self._fence is not None and trio.current_time() < self._lease_until

    @property
    def lease(self) -> int:
        """The ID of the lease the candidacy holds now (0 before it has one)."""
        return self._lease

    def leader(self) -> Leader | None:
        """Who leads, as this candidate last saw it (itself while it leads); None if no one."""
        return self._leader

    async def wait_leader(self) -> Fence:
        """Wait until this candidate leads; its fence. RuntimeError if the candidacy ended
        (lost, resigned or cancelled) first."""
        await self._decided.wait()
        if self._fence is None:
            raise RuntimeError(f"the candidacy of {self.name} is over: it does not lead")
        return self._fence

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Campaign until this candidate wins, lead until the lead is lost or resigned, return.

        Started at once (etcd may be unreachable: it keeps trying). Cancelling it ends the
        candidacy without resigning, as a crash would: the lease ends within `ttl`.
        """
        try:
            with trio.CancelScope() as self._scope:
                if self._over:
                    task_status.started()
                    return
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    await self._grant()
                    nursery.start_soon(self._keep_alive)
                    fence, self._leader = await self._campaign()
                    self._fence = fence
                    self._decided.set()
                    logger.info(
                        "%s leads cluster %s (revision %d)",
                        self.name,
                        self.keys.cluster,
                        fence.revision,
                    )
                    await self._hold(fence)
        finally:
            self._end("its candidacy ended")

    async def resign(self) -> None:
        """Give the lead up at once (delete the key, if still ours) and end the candidacy:
        another candidate can lead without waiting for the lease to run out."""
        fence, lease = self._fence, self._lease
        self._end("it resigned")
        with trio.CancelScope(shield=True), trio.move_on_after(self.client.timeout):
            try:
                if fence is not None:
                    await self.client.txn([created(fence.key, fence.revision)], [delete(fence.key)])
                if lease:
                    await self.client.revoke(lease)
            except EtcdError as exc:
                logger.warning("%s resigning: %s (its lease will run out)", self.name, exc)

    # -- inside ------------------------------------------------------------------------------

    def _end(self, why: str) -> None:
        """Step down (if leading) and end the candidacy."""
        self._over = True
        led, self._fence = self._fence is not None, None
        if led:
            self._leader = None
            logger.warning("%s no longer leads cluster %s: %s", self.name, self.keys.cluster, why)
            self.lost.set()
            if self.on_lost is not None:
                self.on_lost()
        self._decided.set()
        if self._scope is not None:
            self._scope.cancel()

    async def _grant(self) -> None:
        """A new lease, retrying while etcd is unavailable."""
        retry = _RETRY_FIRST
        while True:
            sent = trio.current_time()
            try:
                granted = await self.client.grant(self.ttl)
            except EtcdUnavailable as exc:
                logger.warning("%s cannot get a lease yet: %s", self.name, exc)
                await trio.sleep(retry)
                retry = min(retry * 2, _RETRY_MAX)
                continue
            self._lease = granted.id
            self._lease_until = sent + granted.ttl
            return

    async def _keep_alive(self) -> None:
        """Renew the lease every ttl/3. A leader steps down when etcd says the lease is gone,
        or once no renewal succeeded for `ttl` since the last one was sent; a candidate that is
        not leading takes a new lease."""
        while True:
            sent = trio.current_time()
            remaining: int | None = None
            with trio.move_on_at(self._lease_until if self.is_leader else math.inf):
                try:
                    remaining = await self.client.keepalive(self._lease)
                except EtcdError as exc:
                    logger.warning("%s cannot renew its lease: %s", self.name, exc)
            if remaining == 0:
                if self.is_leader:
                    self._end("etcd says its lease is gone")
                    return
                await self._grant()
                continue
            if remaining is not None:
                self._lease_until = sent + remaining
            elif self.is_leader and trio.current_time() >= self._lease_until:
                self._end(f"its lease could not be renewed for {self.ttl} s")
                return
            await trio.sleep_until(sent + self.ttl / 3)

    async def _campaign(self) -> tuple[Fence, Leader]:
        """Create the leader key on our lease when it does not exist; until then, wait for it
        to be deleted and try again."""
        key = self.keys.leader
        retry = _RETRY_FIRST
        while True:
            me = Leader(self.name, self.address, now())
            value = msgspec.json.encode(me)
            try:
                reply = await self.client.txn(
                    [created(key, 0)], [put(key, value, self._lease)], [get(key)]
                )
            except EtcdUnavailable as exc:
                logger.warning("%s cannot campaign yet: %s", self.name, exc)
                await trio.sleep(retry)
                retry = min(retry * 2, _RETRY_MAX)
                continue
            except EtcdError as exc:
                if exc.code != LEASE_NOT_FOUND:
                    raise
                await self._grant()  # it ran out meanwhile
                continue
            retry = _RETRY_FIRST
            if reply.succeeded:
                return Fence(key, reply.header.revision), me
            holder = _held(reply)
            if holder is None:
                continue  # deleted in between
            if holder.lease == self._lease:  # an attempt whose answer was lost created it
                return Fence(key, holder.create_revision), _leader_of(holder) or me
            self._leader = _leader_of(holder)
            await self._until_deleted(reply.header.revision)

    async def _until_deleted(self, revision: int) -> None:
        """Watch the leader key from after `revision` until it is deleted, or the watch breaks,
        or `2 * ttl` passed (a member cut off without a word would otherwise keep us waiting
        forever): the campaign looks again."""
        try:
            with trio.move_on_after(2 * self.ttl):
                await self._watch_until_deleted(revision)
        except (EtcdUnavailable, EtcdCompacted) as exc:
            logger.info("%s watching the leader key: %s", self.name, exc)
            await trio.sleep(_RETRY_FIRST)

    async def _watch_until_deleted(self, revision: int) -> None:
        async with self.client.watch(self.keys.leader, start_revision=revision + 1) as watch:
            async for response in watch:
                for event in response.events:
                    if event.type == "DELETE":
                        self._leader = None
                        return
                    self._leader = _leader_of(event.kv)

    async def _hold(self, fence: Fence) -> None:
        """Lead until the key is deleted or is no longer ours (then step down)."""
        revision = fence.revision
        while True:
            try:
                async with self.client.watch(fence.key, start_revision=revision + 1) as watch:
                    async for response in watch:
                        revision = max(revision, response.header.revision)
                        for event in response.events:
                            if event.type == "DELETE":
                                self._end("the leader key was deleted")
                                return
            except EtcdCompacted:
                current = await self._current()
                if current is None or current.create_revision != fence.revision:
                    self._end("the leader key is no longer its own")
                    return
            except EtcdUnavailable as exc:
                logger.warning("%s watching its leader key: %s", self.name, exc)
                await trio.sleep(_RETRY_FIRST)

    async def _current(self) -> KeyValue | None:
        while True:
            try:
                return await self.client.get(self.keys.leader)
            except EtcdUnavailable:
                await trio.sleep(_RETRY_FIRST)


def _held(reply: TxnResponse) -> KeyValue | None:
    found = reply.responses[0].response_range if reply.responses else None
    return found.kvs[0] if found is not None and found.kvs else None
