"""The docker driver: a task's `Image` as a Docker container, through the Docker SDK.

Every SDK call blocks, so each runs in a thread: calls that finish (create, start, inspect,
stop, logs) share the driver's `CapacityLimiter`, and each running container has one more
thread blocked in `container.wait()`, under a separate, larger limiter so that waiting
containers never hold up launches. That blocking wait is how an exit is noticed within
milliseconds, with no polling.

Containers carry labels: `orc.task-id`, `orc.node`, `orc.cluster` (the data dir's cluster ID,
so two orc installations on one engine never adopt each other's containers) and `orc.task`
(the task as JSON, so a restarted worker can rebuild what it was running).

When a container ends (by itself or stopped), its output is appended to
`<root>/<task id>/stdout|stderr`, how it ended goes to `<root>/<task id>/exit`, and the
container is removed: logs outlive the container, and `find` reports an ended task after an
orc restart just as the process driver does.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import msgspec
import requests.exceptions
import trio
import urllib3.exceptions
from docker.utils import kwargs_from_env

from orc.core.model import HostPort, Task
from orc.drivers.base import (
    DriverUnavailable,
    Exit,
    Handle,
    LaunchError,
    LaunchIntent,
    checked_cmd,
    own_handle,
    read_exit_record,
    read_intent,
    read_output,
    record_exit,
    run_key,
    task_environment,
    write_intent,
)

log = logging.getLogger("orc.docker")

T = TypeVar("T")

LABEL_TASK = "orc.task-id"
LABEL_NODE = "orc.node"
LABEL_CLUSTER = "orc.cluster"
LABEL_SPEC = "orc.task"
LABEL_LAUNCH = "orc.launch"

IMAGE_CACHE_S = 10.0  # how long an image's inspect is reused between launches

_NAME_OK = re.compile(r"[^a-zA-Z0-9_.-]")
# the engine is not there, or the connection to it broke mid-answer
_UNREACHABLE = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    ConnectionError,
)


class EngineUnavailable(Exception):
    """No Docker engine answers at the configured address."""


class DockerHandle(Handle):
    """A container that runs a task: one we started, or one adopted after a restart. The
    driver needs `container_id` (on every handle) and the run's `launch` ID and `attempt`,
    which go into its exit record."""

    __slots__ = ("attempt", "launch")

    def __init__(
        self,
        task_id: str,
        container_id: str,
        host_ports: dict[str, list[HostPort]] | None,
        launch: str = "",
        attempt: int = 0,
    ) -> None:
        super().__init__(task_id, container_id, host_ports)
        self.launch = launch
        self.attempt = attempt


def _run_of(container: dict[str, Any]) -> tuple[str | None, int] | None:
    """Which run of its task (`run_key`) a listed container runs; None if it cannot tell."""
    try:
        return run_key(msgspec.json.decode(container["Labels"][LABEL_SPEC], type=Task))
    except (KeyError, TypeError, msgspec.DecodeError):
        return None


def _port_key(port: str) -> str:
    return port if "/" in port else f"{port}/tcp"


def _host_ports(attrs: dict[str, Any]) -> dict[str, list[HostPort]] | None:
    """`NetworkSettings.Ports` as the seed shows it, without ports that are not published."""
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    published = {
        port: [{"HostIp": b["HostIp"], "HostPort": b["HostPort"]} for b in bindings]
        for port, bindings in ports.items()
        if bindings
    }
    return published or None


def _exit_of(state: dict[str, Any], memory: int) -> Exit:
    code = int(state.get("ExitCode", 0) or 0)
    if state.get("OOMKilled"):
        limit = f"limit {memory} bytes" if memory else "no limit set"
        return Exit(code or 137, f"killed: out of memory ({limit})")
    if code == 0:
        return Exit(0, "")
    error = state.get("Error") or ""
    return Exit(code, f"exited with status {code}" + (f": {error}" if error else ""))


class DockerDriver:
    name = "docker"

    def __init__(
        self,
        root: Path,
        node: str,
        cluster: str,
        stop_grace: float = 5.0,
        host_ip: str = "127.0.0.1",
        base_url: str = "",
        pull_timeout: float = 10.0,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        self.root = root
        self.node = node
        self.cluster = cluster
        self.stop_grace = stop_grace
        self.host_ip = host_ip
        self.base_url = base_url
        self.pull_timeout = pull_timeout
        self.limiter = limiter or trio.CapacityLimiter(8)
        self.wait_limiter = trio.CapacityLimiter(1024)
        self._client: docker.DockerClient | None = None
        self._images: dict[str, tuple[float, dict[str, Any]]] = {}
        self._client_lock = threading.Lock()
        # launch IDs: this driver's own start with `_ours` (see base.LaunchIntent)
        self._ours = f"{uuid.uuid4().hex[:12]}."
        self._launches = itertools.count(1)

    # -- plumbing ------------------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs = kwargs_from_env()
        if self.base_url:
            kwargs["base_url"] = self.base_url
            kwargs.pop("tls", None)
        return kwargs  # type: ignore[return-value]  # the stubs' TypedDict: a dict of SDK kwargs

    def client(self) -> docker.DockerClient:
        """The SDK client, made on first use (in a thread: it asks the engine its version)."""
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = docker.DockerClient(
                        **self._client_kwargs(), version="auto", timeout=60, max_pool_size=64
                    )
                except docker.errors.DockerException as exc:
                    raise EngineUnavailable(f"no Docker engine answers: {exc}") from None
            return self._client

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    def workdir(self, task_id: str) -> Path:
        return self.root / task_id

    def _labels(self, task_id: str) -> list[str]:
        return [
            f"{LABEL_CLUSTER}={self.cluster}",
            f"{LABEL_NODE}={self.node}",
            *([f"{LABEL_TASK}={task_id}"] if task_id else []),
        ]

    def _containers(self, task_id: str = "") -> list[dict[str, Any]]:
        """This node's containers (of one task), newest first, as the engine lists them: no
        inspect per container, which would race with removals."""
        found = self.client().api.containers(all=True, filters={"label": self._labels(task_id)})
        return sorted(found, key=lambda c: c.get("Created", 0), reverse=True)

    # -- engine --------------------------------------------------------------------------------

    async def ping(self, timeout: float = 2.0) -> bool:
        """Whether an engine answers now (a short, separate request so it never hangs)."""

        def probe() -> bool:
            try:
                api = docker.APIClient(
                    **self._client_kwargs(),
                    version="1.24",
                    timeout=timeout,  # type: ignore[arg-type]  # a float is fine; stubs say int
                )
                try:
                    return bool(api.ping())
                finally:
                    api.close()
            except Exception:
                return False

        return await trio.to_thread.run_sync(probe)

    async def prepare(self) -> None:
        """Nothing to do ahead of launches: images are looked up (and cached) as they launch."""

    # -- launch --------------------------------------------------------------------------------

    async def start(self, task: Task) -> DockerHandle | Exit:
        cmd = checked_cmd(task)
        env = [f"{name}={value}" for name, value in task_environment(task).items()]
        launch = f"{self._ours}{next(self._launches)}"
        try:
            return await self._call(self._start_sync, task, cmd, env, launch)
        except EngineUnavailable as exc:
            raise LaunchError(str(exc)) from None
        except _UNREACHABLE as exc:
            raise LaunchError(f"the Docker engine stopped answering: {exc}") from None
        except docker.errors.APIError as exc:
            reason = exc.explanation or exc
            raise LaunchError(f"docker could not run {task.image}: {reason}") from None
        except OSError as exc:
            raise LaunchError(f"cannot prepare {self.workdir(task.id)}: {exc}") from None

    def _start_sync(
        self, task: Task, cmd: list[str], env: list[str], launch: str
    ) -> DockerHandle | Exit:
        """Create, start, inspect: the low-level API, three engine calls (the image's own
        inspect is cached for a few seconds), as few as a direct SDK launch makes. The intent
        is written first; a task seen before by an earlier orc is looked for first (`find`),
        so an attempt whose order comes again after a restart never runs twice."""
        workdir = self.workdir(task.id)
        try:
            workdir.mkdir(parents=True)
        except FileExistsError:
            earlier = read_intent(workdir)
            if earlier is None or not earlier[0].launch.startswith(self._ours):
                found = self._find_sync(task)
                if found is not None:
                    return found
            (workdir / "exit").unlink(missing_ok=True)  # an earlier run's end
        write_intent(workdir, LaunchIntent(launch, task.restart_count, task))
        api = self.client().api
        try:
            image = self._image(api, task.image)
            cid = self._create(api, task, self._create_options(api, task, image, cmd, env, launch))
        except docker.errors.ImageNotFound:
            self._images.pop(task.image, None)  # removed since we looked: look (or pull) again
            image = self._image(api, task.image)
            cid = self._create(api, task, self._create_options(api, task, image, cmd, env, launch))
        try:
            api.start(cid)
            attrs = api.inspect_container(cid)
        except docker.errors.APIError:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(cid, force=True)
            raise
        return DockerHandle(task.id, cid, _host_ports(attrs), launch, task.restart_count)

    def _create_options(
        self,
        api: docker.APIClient,
        task: Task,
        image: dict[str, Any],
        cmd: list[str],
        env: list[str],
        launch: str,
    ) -> dict[str, Any]:
        """The container's settings. Its environment is the task's `Env` and orc's task
        variables (the image's own ENV under them), nothing of orc's."""
        exposed = set((image.get("Config") or {}).get("ExposedPorts") or {})
        exposed |= {_port_key(p) for p in task.exposed_ports or {}}
        bindings = {_port_key(p): h for p, h in (task.port_bindings or {}).items()}
        exposed |= set(bindings)
        # every exposed port is published on host_ip: on the bound host port, or one Docker picks
        publish = {
            port: (self.host_ip, int(bindings[port])) if bindings.get(port) else (self.host_ip,)
            for port in sorted(exposed)
        }
        host_config = api.create_host_config(
            port_bindings=publish,
            mem_limit=task.memory or None,
            memswap_limit=task.memory or None,
            nano_cpus=round(task.cpu * 1e9) if task.cpu else None,
        )
        return {
            "image": task.image,
            "command": cmd or None,
            "environment": env,
            "labels": {
                LABEL_TASK: task.id,
                LABEL_NODE: self.node,
                LABEL_CLUSTER: self.cluster,
                LABEL_SPEC: msgspec.json.encode(task).decode(),
                LABEL_LAUNCH: launch,
            },
            "ports": [tuple(port.split("/", 1)) for port in sorted(exposed)],
            "host_config": host_config,
        }

    def _image(self, api: docker.APIClient, ref: str) -> dict[str, Any]:
        """The local image's inspect, or pulled once; a failed pull says which image and why."""
        cached = self._images.get(ref)
        if cached is not None and time.monotonic() - cached[0] < IMAGE_CACHE_S:
            return cached[1]
        try:
            attrs = api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            attrs = self._pull(api, ref)
        self._images[ref] = (time.monotonic(), attrs)
        return attrs

    def _pull(self, api: docker.APIClient, ref: str) -> dict[str, Any]:
        log.info("image %s is not present locally: pulling it", ref)
        puller = docker.APIClient(
            **self._client_kwargs(),
            version=api.api_version,
            timeout=self.pull_timeout,  # type: ignore[arg-type]  # a float is fine; stubs say int
        )
        try:
            puller.pull(ref)
        except docker.errors.APIError as exc:
            raise LaunchError(
                f"image {ref} is not present locally and could not be pulled: "
                f"{exc.explanation or exc}"
            ) from None
        except _UNREACHABLE as exc:
            raise LaunchError(
                f"image {ref} is not present locally and pulling it did not finish within"
                f" {self.pull_timeout:g} s: {exc}"
            ) from None
        finally:
            puller.close()
        try:
            return api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            raise LaunchError(
                f"image {ref} is not present locally and the pull gave no image"
            ) from None

    def _create(self, api: docker.APIClient, task: Task, options: dict[str, Any]) -> str:
        """Create with the task's Name; a name already taken gets a suffix, and we say so."""
        name = _NAME_OK.sub("-", task.name).lstrip("-_.") if task.name else ""
        candidates = [name, f"{name}-{task.id[:8]}", f"{name}-{uuid.uuid4().hex[:8]}"]
        for i, candidate in enumerate(candidates if name else [""]):
            try:
                created = api.create_container(name=candidate or None, **options)
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and i + 1 < len(candidates):
                    continue
                raise
            if candidate != name:
                log.warning(
                    "task %s: container name %r is taken; using %r", task.id, name, candidate
                )
            return created["Id"]
        raise AssertionError("unreachable")

    # -- exit and stop -------------------------------------------------------------------------

    async def wait(self, handle: Handle) -> Exit:
        """Until the container ends; then keep its logs and how it ended, and remove it."""
        handle = own_handle(handle, DockerHandle)
        try:
            while True:
                try:
                    result = await trio.to_thread.run_sync(
                        self._wait_sync, handle, limiter=self.wait_limiter, abandon_on_cancel=True
                    )
                    break
                except _UNREACHABLE:
                    log.warning(
                        "task %s: lost the Docker engine while waiting for container %s; retrying",
                        handle.task_id,
                        handle.container_id[:12],
                    )
                    await trio.sleep(1.0)
        finally:
            handle.exited.set()
        return result

    def _wait_sync(self, handle: DockerHandle) -> Exit:
        client = self.client()
        cid = handle.container_id
        try:
            client.api.wait(cid, timeout=None)
            attrs = client.api.inspect_container(cid)
        except docker.errors.APIError as exc:
            gone = isinstance(exc, docker.errors.NotFound)
            reason = "was removed outside orc" if gone else f"could not be followed: {exc}"
            result = Exit(None, f"container {cid[:12]} {reason}")
            record_exit(self.workdir(handle.task_id), result, handle.launch, handle.attempt)
            return result
        spec = (attrs.get("HostConfig") or {}).get("Memory") or 0
        result = _exit_of(attrs.get("State") or {}, spec)
        self._archive(client, handle, result)
        return result

    def _archive(self, client: docker.DockerClient, handle: DockerHandle, result: Exit) -> None:
        """Keep the container's output and how it ended, then remove the container."""
        task_id, cid = handle.task_id, handle.container_id
        workdir = self.workdir(task_id)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            out = client.api.logs(cid, stdout=True, stderr=False)
            err = client.api.logs(cid, stdout=False, stderr=True)
        except docker.errors.APIError as exc:
            log.warning("task %s: could not read the logs of %s: %s", task_id, cid[:12], exc)
            out = err = b""
        with open(workdir / "stdout", "ab") as f:
            f.write(out)
        with open(workdir / "stderr", "ab") as f:
            f.write(err)
        record_exit(workdir, result, handle.launch, handle.attempt)
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(cid, force=True)

    async def stop(self, handle: Handle) -> None:
        """`docker stop` with the grace period (SIGTERM, then SIGKILL), then removal by `wait`."""
        handle = own_handle(handle, DockerHandle)
        handle.stop_requested = True

        def stop_sync() -> None:
            with contextlib.suppress(docker.errors.NotFound):
                self.client().api.stop(handle.container_id, timeout=int(self.stop_grace + 0.999))

        try:
            await self._call(stop_sync)
        except (*_UNREACHABLE, EngineUnavailable, docker.errors.APIError) as exc:
            log.warning("task %s: stopping %s failed: %s", handle.task_id, handle.container_id, exc)
        await handle.exited.wait()

    # -- recovery ------------------------------------------------------------------------------

    async def find(self, task: Task) -> DockerHandle | Exit | None:
        """After a restart: the running container of this attempt to adopt, how it ended, or
        None if it never ran."""
        try:
            return await self._call(self._find_sync, task)
        except (*_UNREACHABLE, EngineUnavailable) as exc:
            raise DriverUnavailable(f"cannot look for its container: {exc}") from None

    def _find_sync(self, task: Task) -> DockerHandle | Exit | None:
        """A container made but never started (orc died between create and start) runs the
        run that was meant: it is started now and adopted, never made again."""
        client = self.client()
        attempt = task.restart_count
        run = run_key(task)
        containers = [c for c in self._containers(task.id) if _run_of(c) == run]
        running = [c for c in containers if c["State"] in ("running", "restarting", "paused")]
        created = [c for c in containers if c["State"] == "created"]
        for c in running[:1] or created[:1] or containers[:1]:
            handle = DockerHandle(
                task.id, c["Id"], None, (c.get("Labels") or {}).get(LABEL_LAUNCH, ""), attempt
            )
            with contextlib.suppress(docker.errors.NotFound):
                if c in created:
                    log.warning(
                        "task %s: starting container %s, made before orc stopped",
                        task.id,
                        c["Id"][:12],
                    )
                    client.api.start(c["Id"])  # already started (304): nothing happens
                attrs = client.api.inspect_container(c["Id"])
                if (attrs.get("State") or {}).get("Running") or c in running:
                    handle.host_ports = _host_ports(attrs)
                    return handle
                memory = (attrs.get("HostConfig") or {}).get("Memory") or 0
                result = _exit_of(attrs.get("State") or {}, memory)
                self._archive(client, handle, result)
                return result
        # no container: if this run's was made, it ended and was removed; its end is recorded
        workdir = self.workdir(task.id)
        intent, ended = read_intent(workdir), read_exit_record(workdir)
        if intent is None or ended is None or run_key(intent[0].task) != run:
            return None
        return ended.exit if ended.launch == intent[0].launch else None

    async def saved_tasks(self) -> list[Task]:
        """Tasks with a container of this node and cluster (to adopt after a restart)."""

        def saved() -> list[Task]:
            tasks = []
            for c in self._containers():
                with contextlib.suppress(KeyError, msgspec.DecodeError):
                    tasks.append(msgspec.json.decode(c["Labels"][LABEL_SPEC], type=Task))
            return tasks

        try:
            return await self._call(saved)
        except (*_UNREACHABLE, EngineUnavailable) as exc:
            log.warning("node %s: cannot list containers to adopt: %s", self.node, exc)
            return []

    # -- logs ----------------------------------------------------------------------------------

    async def logs(self, task_id: str) -> tuple[bytes, bytes]:
        """Output kept from ended containers, then the live container's output."""

        def read() -> tuple[bytes, bytes]:
            out, err = read_output(self.workdir(task_id))
            with contextlib.suppress(*_UNREACHABLE, EngineUnavailable, docker.errors.APIError):
                api = self.client().api
                for c in self._containers(task_id):
                    out += api.logs(c["Id"], stdout=True, stderr=False)
                    err += api.logs(c["Id"], stdout=False, stderr=True)
            return out, err

        return await self._call(read)
