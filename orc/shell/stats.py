"""Node statistics in the seed's shape (the Go goprocinfo structs and their JSON keys), from psutil.

Memory figures are kB, as /proc/meminfo gives them and the seed reports them.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def _kb(value: int) -> int:
    return value // 1024


def mem_stats() -> dict[str, int]:
    vm = psutil.virtual_memory()
    sw = psutil.swap_memory()
    return {
        "mem_total": _kb(vm.total),
        "mem_free": _kb(vm.free),
        "mem_available": _kb(vm.available),
        "buffers": _kb(getattr(vm, "buffers", 0)),
        "cached": _kb(getattr(vm, "cached", 0)),
        "active": _kb(getattr(vm, "active", 0)),
        "inactive": _kb(getattr(vm, "inactive", 0)),
        "swap_total": _kb(sw.total),
        "swap_free": _kb(sw.free),
        "shmem": _kb(getattr(vm, "shared", 0)),
        "slab": _kb(getattr(vm, "slab", 0)),
    }


def disk_stats(path: Path) -> dict[str, int]:
    usage = psutil.disk_usage(str(path))
    try:
        free_inodes = os.statvfs(path).f_ffree
    except OSError:
        free_inodes = 0
    return {"all": usage.total, "used": usage.used, "free": usage.free, "freeInodes": free_inodes}


def cpu_stats() -> dict[str, float | str]:
    t = psutil.cpu_times()
    return {
        "id": "cpu",
        "user": t.user,
        "nice": t.nice,
        "system": t.system,
        "idle": t.idle,
        "iowait": getattr(t, "iowait", 0.0),
        "irq": getattr(t, "irq", 0.0),
        "softirq": getattr(t, "softirq", 0.0),
        "steal": getattr(t, "steal", 0.0),
        "guest": getattr(t, "guest", 0.0),
        "guest_nice": getattr(t, "guest_nice", 0.0),
    }


def load_stats() -> dict[str, float | int]:
    one, five, fifteen = os.getloadavg()
    running, total, last_pid = 0, 0, 0
    try:
        fields = Path("/proc/loadavg").read_text().split()
        running, total = (int(x) for x in fields[3].split("/"))
        last_pid = int(fields[4])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "last1min": one,
        "last5min": five,
        "last15min": fifteen,
        "process_running": running,
        "process_total": total,
        "last_pid": last_pid,
    }


def node_stats(data_dir: Path, task_count: int) -> dict[str, object]:
    """Blocking (reads /proc): call it in a thread."""
    return {
        "MemStats": mem_stats(),
        "DiskStats": disk_stats(data_dir if data_dir.exists() else Path("/")),
        "CPUStats": cpu_stats(),
        "LoadStats": load_stats(),
        "TaskCount": task_count,
    }


def capacity(data_dir: Path) -> tuple[int, int, int]:
    """Cores, memory bytes and disk bytes this node offers."""
    disk = psutil.disk_usage(str(data_dir if data_dir.exists() else Path("/"))).total
    return os.cpu_count() or 1, psutil.virtual_memory().total, disk
