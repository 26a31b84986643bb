"""Where an orc cluster keeps its things in etcd, all under `/orc/<cluster>/`:

    /orc/<cluster>/leader                   the leader's name and address, on its lease
    /orc/<cluster>/managers/<name>          each manager's role and log position, on its lease
    /orc/<cluster>/log/<seq, 20 digits>     one event record per key, msgpack as in the file log
    /orc/<cluster>/snapshot                 the newest snapshot's head (its seq, size, checksum)
    /orc/<cluster>/snapshot/<seq>/<n, 6>    its chunks, when it is too large for the head

Sequence numbers are zero-padded so that key order is seq order: a range is a stretch of log.
"""

from __future__ import annotations

import re

from orc.ha.etcd import prefix_end

SEQ_DIGITS = 20
_CLUSTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class Keys:
    """The keys of one cluster's log, snapshot, leader and managers."""

    def __init__(self, cluster: str) -> None:
        if not _CLUSTER.match(cluster):
            raise ValueError(
                f"cluster name {cluster!r}: 1 to 63 letters, digits, '.', '_' or '-',"
                " starting with a letter or digit"
            )
        self.cluster = cluster
        root = f"/orc/{cluster}/".encode()
        self.leader = root + b"leader"
        self.managers_prefix = root + b"managers/"
        self.managers_end = prefix_end(self.managers_prefix)
        self.log_prefix = root + b"log/"
        self.log_end = prefix_end(self.log_prefix)
        self.snapshot = root + b"snapshot"
        self.chunks_prefix = self.snapshot + b"/"
        self.chunks_end = prefix_end(self.chunks_prefix)

    def manager(self, name: str) -> bytes:
        return self.managers_prefix + name.encode()

    def log(self, seq: int) -> bytes:
        return b"%s%0*d" % (self.log_prefix, SEQ_DIGITS, seq)

    def seq(self, key: bytes) -> int:
        """The seq of a log key."""
        return int(key[len(self.log_prefix) :])

    def chunks(self, seq: int) -> bytes:
        """The prefix of the chunks of the snapshot at `seq`."""
        return b"%s%0*d/" % (self.chunks_prefix, SEQ_DIGITS, seq)

    def chunk(self, seq: int, n: int) -> bytes:
        return b"%s%06d" % (self.chunks(seq), n)
