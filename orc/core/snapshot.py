"""Cluster state as bytes: for snapshots (faster start-up) and digests (determinism checks).

The digest is a hash of the same encoding, so the two can never disagree about what "the
state" is. Encoding is deterministic: `apply` builds dicts and sets in log order, so a replay of
the same events yields the same bytes.
"""

from __future__ import annotations

import hashlib

import msgspec

from orc.core.state import ClusterState, collector_paused

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ClusterState)


def encode_state(state: ClusterState) -> bytes:
    return _encoder.encode(state)


def decode_state(blob: bytes) -> ClusterState:
    with collector_paused():
        return _decoder.decode(blob)


def state_digest(state: ClusterState) -> str:
    # Sets have no order of their own: sort them so equal states hash alike.
    # Encoded as the three-field state was, so digests in logs written before `node_seqs` and
    # `down` existed still match; those two count only once they hold something.
    canonical = {"tasks": state.tasks, "nodes": state.nodes, "stop_requested": []}
    h = hashlib.blake2b(_encoder.encode(canonical), digest_size=16)
    h.update(_encoder.encode(sorted(state.stop_requested)))
    if state.node_seqs or state.down:
        h.update(_encoder.encode([state.node_seqs, state.down]))
    if state.restarts or state.unhealthy:
        h.update(_encoder.encode([state.restarts, state.unhealthy]))
    if state.quarantined:  # as the two above: digests of logs without quarantines still match
        h.update(_encoder.encode(state.quarantined))
    return h.hexdigest()
