"""Highly available managers: the event log in etcd, and the election of the one that writes it.

`etcd` is a client for etcd's v3 JSON gateway; `log.EtcdLog` is an event log with the interface
of `eventlog.EventLog`, every write fenced on the leader key; `election.Election` decides which
manager leads and hands it that fence. The room stands on `orc.core` (the events and their
upcasters) and `eventlog` (its errors and record decoding), below the shell.
"""

from orc.ha.election import Election, Leader, read_leader
from orc.ha.etcd import EtcdClient, EtcdError, EtcdUnavailable
from orc.ha.log import CorruptEtcdLog, EtcdLog, Fence, NotLeader

__all__ = [
    "CorruptEtcdLog",
    "Election",
    "EtcdClient",
    "EtcdError",
    "EtcdLog",
    "EtcdUnavailable",
    "Fence",
    "Leader",
    "NotLeader",
    "read_leader",
]
