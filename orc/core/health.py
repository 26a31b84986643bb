"""Health policy: where a task is checked, and how failures in a row are counted.

Pure: the HealthChecker actor (orc/shell/health.py) does the checking and the waiting.
"""

from __future__ import annotations

from orc.core.model import NodeInfo, Task


def health_url(task: Task, node: NodeInfo | None) -> str | None:
    """Where to check `task`, or None: no `HealthCheck`, no host port yet, or no node."""
    if not task.health_check or not task.host_ports or node is None:
        return None
    host = node.address.rsplit(":", 1)[0] if ":" in node.address else node.address
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    path = task.health_check if task.health_check.startswith("/") else f"/{task.health_check}"
    for key in sorted(task.host_ports):
        for binding in task.host_ports[key] or ():
            port = binding.get("HostPort")
            if port:
                return f"http://{host}:{port}{path}"
    return None


def count_failures(failures: int, failed: bool) -> int:
    """Consecutive failures after one more check: any success starts the count again."""
    return failures + 1 if failed else 0
