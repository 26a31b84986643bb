"""Settings: code defaults, overridden by `.env`, overridden by the real environment."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import msgspec

from orc.core.placement import POLICIES, attrs_problem

# A cluster's name in etcd's keys (`/orc/<cluster>/...`): orc.ha.keys checks the same pattern
# (not imported here: the client commands load this module and need none of etcd's client).
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_MANAGER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

DEFAULTS: dict[str, str] = {
    "ORC_MANAGER_HOST": "localhost",
    "ORC_MANAGER_PORT": "8000",
    "ORC_WORKER_HOST": "localhost",
    "ORC_WORKER_PORT": "8888",
    "ORC_WORKER_COUNT": "1",
    "ORC_DATA_DIR": "./data",
    "ORC_STOP_GRACE": "5",
    "ORC_MAX_BODY": "1048576",
    "ORC_SEGMENT_BYTES": "67108864",
    "ORC_LOG_LEVEL": "INFO",
    "ORC_SCHEDULER": "epvm",
    "ORC_DOCKER_HOST": "",
    "ORC_DOCKER_HOST_IP": "127.0.0.1",
    "ORC_DOCKER_PING": "2",
    "ORC_DOCKER_PULL_TIMEOUT": "10",
    "ORC_DIGEST_EVERY": "10000",
    "ORC_SNAPSHOT_EVERY": "100000",
    "ORC_RETAIN_EVENTS": "100000",
    "ORC_TASK_RETENTION": "86400",
    "ORC_RESTART_MAX": "3",
    "ORC_RESTART_BACKOFF": "1",
    "ORC_RESTART_BACKOFF_MAX": "300",
    "ORC_RESTART_RESET": "600",
    "ORC_HEALTH_INTERVAL": "10",
    "ORC_HEALTH_TIMEOUT": "2",
    "ORC_HEALTH_FAILURES": "3",
    "ORC_NODE_TTL": "10",
    "ORC_WORKERS": "",
    "ORC_TOKEN": "",
    "ORC_WORKER_NAME": "",
    "ORC_WORKER_ATTRS": "",
    "ORC_MAX_TASKS": "1000000",
    "ORC_MAX_PENDING": "10000",
    "ORC_MAX_STREAMS": "64",
    "ORC_ORDERS_MAX_BODY": "67108864",
    "ORC_MANAGER_NAME": "",
    "ORC_ETCD_ENDPOINTS": "",
    "ORC_CLUSTER": "orc",
    "ORC_LEASE_TTL": "5",
}

SCHEDULERS = POLICIES  # the placement policies ORC_SCHEDULER may name
_N = TypeVar("_N", int, float)  # a checked number keeps its kind: a count stays an int


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    manager_host: str
    manager_port: int
    worker_host: str
    worker_port: int
    worker_count: int
    data_dir: Path
    stop_grace: float
    max_body: int
    segment_bytes: int
    log_level: str
    scheduler: str = "epvm"
    # docker driver: engine address ("" = DOCKER_HOST or the local socket), the host IP that
    # published ports bind to, seconds between engine probes, seconds a pull may take
    docker_host: str = ""
    docker_host_ip: str = "127.0.0.1"
    docker_ping: float = 2.0
    docker_pull_timeout: float = 10.0
    # upkeep, in events: a state digest every N, a snapshot every N (0: never), and how many
    # events before the newest snapshot compaction keeps
    digest_every: int = 10_000
    snapshot_every: int = 100_000
    retain_events: int = 100_000
    # restart policies (docs/restarts.md): restarts in a row at most, the first backoff and its
    # cap in seconds, and how long a run must last to end a streak (seconds)
    restart_max: int = 3
    restart_backoff: float = 1.0
    restart_backoff_max: float = 300.0
    restart_reset: float = 600.0
    # health checks: seconds between checks, seconds a check may take, failures in a row that
    # make a task unhealthy
    health_interval: float = 10.0
    health_timeout: float = 2.0
    health_failures: int = 3
    # separate processes (`orc manager`, `orc worker`): seconds of silence before a node is
    # down, a static worker list ("host:port,..."), the bearer token every request must carry
    # ("" = none), this worker's name ("" = worker-<port>)
    node_ttl: float = 10.0
    # seconds an ended task stays known (then `TaskPurged` forgets it); 0: forever
    task_retention: float = 86400.0
    workers: tuple[str, ...] = ()
    token: str = ""
    worker_name: str = ""
    # this worker's attributes (`rack=a,zone=z1`), for jobs' constraints and spread
    worker_attrs: tuple[tuple[str, str], ...] = ()
    # load limits (docs/operations.md): tasks the manager holds at most, tasks waiting to be
    # placed at most (more submissions get 503 / 429 with Retry-After), and concurrent
    # streams (`GET /events`) per node
    max_tasks: int = 1_000_000
    max_pending: int = 10_000
    max_streams: int = 64
    # a worker's POST /orders body at most (a reconcile names every task placed on the node)
    orders_max_body: int = 64 << 20
    # highly available managers (docs/ha.md): this manager's name ("" = host:port), the etcd
    # endpoints that hold the log and the election (() = the file log, one manager), the
    # cluster's name in etcd's keys, and the leader's lease in whole seconds
    manager_name: str = ""
    etcd_endpoints: tuple[str, ...] = ()
    cluster: str = "orc"
    lease_ttl: int = 5


class ConfigError(ValueError):
    pass


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments and blank lines skipped; optional quotes stripped."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def load(env: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    merged = dict(DEFAULTS)
    merged.update(read_dotenv(dotenv if dotenv is not None else Path(".env")))
    merged.update(
        {k: v for k, v in (os.environ if env is None else env).items() if k.startswith("ORC_")}
    )

    def number(key: str, kind: type[int] | type[float]) -> int | float:
        try:
            return kind(merged[key])
        except ValueError:
            raise ConfigError(
                f"setting {key}={merged[key]!r} is not a{'n integer' if kind is int else ' number'}"
            ) from None

    scheduler = merged["ORC_SCHEDULER"].strip().lower()
    if scheduler not in SCHEDULERS:
        raise ConfigError(
            f"setting ORC_SCHEDULER={merged['ORC_SCHEDULER']!r} is not a scheduler:"
            f" use one of {', '.join(SCHEDULERS)}"
        )

    return Settings(
        manager_host=merged["ORC_MANAGER_HOST"],
        manager_port=int(number("ORC_MANAGER_PORT", int)),
        worker_host=merged["ORC_WORKER_HOST"],
        worker_port=int(number("ORC_WORKER_PORT", int)),
        worker_count=int(number("ORC_WORKER_COUNT", int)),
        # absolute: the process launcher works in a directory of its own, where a relative
        # path would name another place
        data_dir=Path(merged["ORC_DATA_DIR"]).absolute(),
        stop_grace=float(number("ORC_STOP_GRACE", float)),
        max_body=int(number("ORC_MAX_BODY", int)),
        segment_bytes=int(number("ORC_SEGMENT_BYTES", int)),
        log_level=merged["ORC_LOG_LEVEL"].upper(),
        scheduler=scheduler,
        docker_host=merged["ORC_DOCKER_HOST"],
        docker_host_ip=merged["ORC_DOCKER_HOST_IP"],
        docker_ping=float(number("ORC_DOCKER_PING", float)),
        docker_pull_timeout=float(number("ORC_DOCKER_PULL_TIMEOUT", float)),
        digest_every=int(number("ORC_DIGEST_EVERY", int)),
        snapshot_every=int(number("ORC_SNAPSHOT_EVERY", int)),
        retain_events=int(number("ORC_RETAIN_EVENTS", int)),
        restart_max=_at_least("ORC_RESTART_MAX", int(number("ORC_RESTART_MAX", int)), 0),
        restart_backoff=_at_least("ORC_RESTART_BACKOFF", number("ORC_RESTART_BACKOFF", float), 0),
        restart_backoff_max=_at_least(
            "ORC_RESTART_BACKOFF_MAX", number("ORC_RESTART_BACKOFF_MAX", float), 0
        ),
        restart_reset=_at_least("ORC_RESTART_RESET", number("ORC_RESTART_RESET", float), 0),
        health_interval=_more_than_0("ORC_HEALTH_INTERVAL", number("ORC_HEALTH_INTERVAL", float)),
        health_timeout=_more_than_0("ORC_HEALTH_TIMEOUT", number("ORC_HEALTH_TIMEOUT", float)),
        health_failures=_at_least(
            "ORC_HEALTH_FAILURES", int(number("ORC_HEALTH_FAILURES", int)), 1
        ),
        node_ttl=_positive("ORC_NODE_TTL", float(number("ORC_NODE_TTL", float))),
        task_retention=_at_least("ORC_TASK_RETENTION", number("ORC_TASK_RETENTION", float), 0),
        workers=_workers(merged["ORC_WORKERS"]),
        token=merged["ORC_TOKEN"],
        worker_name=merged["ORC_WORKER_NAME"].strip(),
        worker_attrs=_worker_attrs(merged["ORC_WORKER_ATTRS"]),
        max_tasks=_at_least("ORC_MAX_TASKS", int(number("ORC_MAX_TASKS", int)), 1),
        max_pending=_at_least("ORC_MAX_PENDING", int(number("ORC_MAX_PENDING", int)), 1),
        max_streams=_at_least("ORC_MAX_STREAMS", int(number("ORC_MAX_STREAMS", int)), 1),
        orders_max_body=_at_least(
            "ORC_ORDERS_MAX_BODY", int(number("ORC_ORDERS_MAX_BODY", int)), 1024
        ),
        manager_name=manager_name(merged["ORC_MANAGER_NAME"], "setting ORC_MANAGER_NAME"),
        etcd_endpoints=etcd_endpoints(merged["ORC_ETCD_ENDPOINTS"], "setting ORC_ETCD_ENDPOINTS"),
        cluster=_cluster(merged["ORC_CLUSTER"]),
        lease_ttl=int(_at_least("ORC_LEASE_TTL", int(number("ORC_LEASE_TTL", int)), 1)),
    )


def _positive(key: str, value: float) -> float:
    if value <= 0:
        raise ConfigError(f"setting {key}={value:g} must be more than 0")
    return value


def _workers(raw: str) -> tuple[str, ...]:
    """`host:port,host:port` as a tuple; each must name a port."""
    workers = tuple(w.strip() for w in raw.split(",") if w.strip())
    for w in workers:
        host, _, port = w.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"setting ORC_WORKERS: {w!r} is not host:port")
    return workers


def parse_attrs(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """`KEY=VALUE` items (each may hold several, comma-separated) as a node's attributes, a
    later value of a key winning; ConfigError saying what is wrong when one is not KEY=VALUE
    or breaks the bounds (`orc.core.placement.attrs_problem`): the caller names the source."""
    attrs: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"expected KEY=VALUE, got {part.strip()!r}")
            attrs[key.strip()] = value.strip()
    if problem := attrs_problem(attrs):
        raise ConfigError(problem)
    return tuple(attrs.items())


def _worker_attrs(raw: str) -> tuple[tuple[str, str], ...]:
    try:
        return parse_attrs([raw])
    except ConfigError as exc:
        raise ConfigError(f"setting ORC_WORKER_ATTRS={raw!r}: {exc}") from None


def _at_least(key: str, value: _N, least: float) -> _N:
    if value < least:
        raise ConfigError(f"setting {key}={value:g} must be at least {least:g}")
    return value


def _more_than_0(key: str, value: float) -> float:
    if value <= 0:
        raise ConfigError(f"setting {key}={value:g} must be more than 0")
    return value


def etcd_endpoints(raw: str, source: str) -> tuple[str, ...]:
    """`URL,URL,...` (or `host:port`, taken as http://) as etcd base URLs; () for none. Each
    must name a host and a port; ConfigError naming `source` (the setting or the flag)."""
    urls = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        url = item.rstrip("/") if "://" in item else f"http://{item.rstrip('/')}"
        scheme, _, rest = url.partition("://")
        host, _, port = rest.rpartition(":")
        if scheme not in ("http", "https") or not host or "/" in rest or not port.isdigit():
            raise ConfigError(
                f"{source}: {item!r} is not an etcd client URL like http://127.0.0.1:2379"
            )
        urls.append(url)
    return tuple(urls)


def manager_name(raw: str, source: str) -> str:
    """A manager's name, as the other managers and `GET /cluster` show it ("" = host:port)."""
    name = raw.strip()
    if name and not _MANAGER_NAME.match(name):
        raise ConfigError(
            f"{source}={name!r}: 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a"
            " letter or digit"
        )
    return name


def _cluster(raw: str) -> str:
    name = raw.strip()
    if not CLUSTER_NAME.match(name):
        raise ConfigError(
            f"setting ORC_CLUSTER={name!r}: 1 to 63 letters, digits, '.', '_' or '-', starting"
            " with a letter or digit"
        )
    return name
