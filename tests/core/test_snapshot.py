"""The state as bytes: encoding round trip, and a digest that ignores set order."""

from __future__ import annotations

from orc.core.snapshot import decode_state, encode_state, state_digest
from orc.core.state import ClusterState


def test_state_encoding_roundtrip_and_digest_is_order_free() -> None:
    a = ClusterState()
    a.stop_requested.update({"x", "y", "z"})
    b = ClusterState()
    b.stop_requested.update({"z", "y", "x"})
    assert decode_state(encode_state(a)) == a
    assert state_digest(a) == state_digest(b)
    b.stop_requested.discard("x")
    assert state_digest(a) != state_digest(b)
