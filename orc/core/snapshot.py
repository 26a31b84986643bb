"""Cluster state as bytes: for snapshots (faster start-up) and digests (determinism checks).

The digest is a hash of the same encoding, so the two can never disagree about what "the
state" is. Encoding is deterministic: `apply` builds dicts and sets in log order, so a replay of
the same events yields the same bytes.
"""

from __future__ import annotations

import hashlib

import msgspec

from orc.core.model import NodeInfo, Task, wire_name
from orc.core.state import ClusterState, collector_paused

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ClusterState)


def encode_state(state: ClusterState) -> bytes:
    return _encoder.encode(state)


def decode_state(blob: bytes) -> ClusterState:
    with collector_paused():
        return _decoder.decode(blob)


# The fields of a task and of a node before jobs added theirs: a task of no job (a node that
# declares no attributes) is hashed as it was then, so digests in older logs still match.
_TASK_V1 = msgspec.defstruct(
    "Task",
    [(f.name, f.type, f.default) for f in msgspec.structs.fields(Task)][
        : Task.__struct_fields__.index("job_id")
    ],
    rename=wire_name,
)
_NODE_V1 = msgspec.defstruct(
    "NodeInfo",
    [
        (f.name, f.type) if f.default is msgspec.NODEFAULT else (f.name, f.type, f.default)
        for f in msgspec.structs.fields(NodeInfo)
    ][: NodeInfo.__struct_fields__.index("attrs")],
    rename=wire_name,
)
_TASK_V1_FIELDS = _TASK_V1.__struct_fields__
_NODE_V1_FIELDS = _NODE_V1.__struct_fields__


def _as_v1_task(task: Task) -> msgspec.Struct:
    if task.job_id or task.constraints or task.spread or task.slot or task.job_version:
        return task
    return _TASK_V1(*(getattr(task, f) for f in _TASK_V1_FIELDS))


def _as_v1_node(node: NodeInfo) -> msgspec.Struct:
    if node.attrs:
        return node
    return _NODE_V1(*(getattr(node, f) for f in _NODE_V1_FIELDS))


def state_digest(state: ClusterState) -> str:
    # Sets have no order of their own: sort them so equal states hash alike.
    # Encoded as the three-field state was, so digests in logs written before `node_seqs` and
    # `down` existed still match; those two count only once they hold something.
    canonical = {
        "tasks": {k: _as_v1_task(t) for k, t in state.tasks.items()},
        "nodes": {k: _as_v1_node(n) for k, n in state.nodes.items()},
        "stop_requested": [],
    }
    h = hashlib.blake2b(_encoder.encode(canonical), digest_size=16)
    h.update(_encoder.encode(sorted(state.stop_requested)))
    if state.node_seqs or state.down:
        h.update(_encoder.encode([state.node_seqs, state.down]))
    if state.restarts or state.unhealthy:
        h.update(_encoder.encode([state.restarts, state.unhealthy]))
    if state.quarantined:  # as the two above: digests of logs without quarantines still match
        h.update(_encoder.encode(state.quarantined))
    if state.jobs:  # as above: digests of logs without jobs still match
        h.update(_encoder.encode(state.jobs))
    if state.checked:  # as above: digests of logs without passed health checks still match
        h.update(_encoder.encode(state.checked))
    return h.hexdigest()
