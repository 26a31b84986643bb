"""The Docker test images, built locally from busybox-static with `docker import`.

There is no image registry here, so every image the tests and benchmarks run is a tar of a
tiny root filesystem (the static busybox, its applet links, an HTTP service) imported with a
different `CMD`:

- `http`: an HTTP server on port 80 (EXPOSE 80/tcp). `GET /health` answers 200, `GET /healthfail`
  answers 500, `/` a hello page, other paths 404. `nc -ll -e` accepts connections; a small sh
  script answers /healthfail and hands every other request to busybox `httpd -i`.
- `exit0`: prints a line on stdout and one on stderr, exits 0.
- `exit3`: prints a line, exits 3.
- `oom`: holds 200 MiB in memory (`head -c 200m /dev/zero | tail`), so it is OOM-killed under
  any smaller `Memory` limit.
- `sleep`: sleeps for an hour (a long-running task with no port).

Run `python -m tests.images [TAG]` (or `scripts/build-test-images.sh`) to build them all as
`orc-test/<name>:TAG` (default `latest`); `--remove` removes them again.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tarfile
import time

import docker

BUSYBOX = "/bin/busybox"
REPO = "orc-test"

SERVE = r"""#!/bin/sh
# One HTTP connection (run by `nc -ll -e`): /healthfail answers 500 here; every other
# request goes to busybox httpd in inetd mode, which serves /www (/health answers 200).
CR=$(printf '\r')
read -r method path proto
while read -r line; do [ -z "${line%"$CR"}" ] && break; done
case "$path" in
/healthfail | /healthfail\?*)
    printf 'HTTP/1.0 500 Internal Server Error\r\nContent-Type: text/plain\r\n'
    printf 'Content-Length: 5\r\nConnection: close\r\n\r\nfail\n'
    ;;
*)
    printf '%s %s HTTP/1.0\r\n\r\n' "$method" "$path" | exec httpd -i -h /www -c /dev/null
    ;;
esac
"""

APPLETS = ["sh", "cat", "echo", "printf", "sleep", "head", "tail", "dd", "true", "false"]
APPLETS += ["env", "ls", "httpd", "nc", "yes", "id", "ps", "kill", "wc"]

IMAGES: dict[str, dict[str, object]] = {
    "http": {
        # sh as PID 1 with a TERM trap, so `docker stop` ends it at once (PID 1 ignores
        # signals it has no handler for, and the stop would wait out the whole grace period)
        "Cmd": ["sh", "-c", "trap 'exit 0' TERM; nc -ll -p 80 -e /bin/serve & wait"],
        "ExposedPorts": {"80/tcp": {}},
    },
    "exit0": {"Cmd": ["sh", "-c", "echo hello from exit0; echo and to stderr >&2; exit 0"]},
    "exit3": {"Cmd": ["sh", "-c", "echo about to fail; exit 3"]},
    "oom": {"Cmd": ["sh", "-c", "head -c 200m /dev/zero | tail"]},
    "sleep": {"Cmd": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]},
}


def rootfs_tar() -> bytes:
    """A root filesystem: /bin/busybox, links for the applets, /www and /bin/serve."""
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(name: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, now
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "www", "tmp", "etc", "proc", "sys", "dev"):
            add_dir(d)
        with open(BUSYBOX, "rb") as f:
            add_file("bin/busybox", f.read(), 0o755)
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "busybox", now
            tar.addfile(info)
        add_file("bin/serve", SERVE.encode(), 0o755)
        add_file("www/index.html", b"<h1>hello from the orc test image</h1>\n")
        add_file("www/health", b"ok\n")
        add_file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
    return buf.getvalue()


def _changes(config: dict[str, object]) -> list[str]:
    changes = [f"CMD {json.dumps(config['Cmd'])}"]
    changes += [f"EXPOSE {port}" for port in config.get("ExposedPorts", {})]  # type: ignore[attr-defined]
    return changes


def build(client: docker.DockerClient, tag: str = "latest") -> dict[str, str]:
    """Import every test image as `orc-test/<name>:<tag>`; returns name -> reference."""
    data = rootfs_tar()
    built = {}
    for name, config in IMAGES.items():
        ref = f"{REPO}/{name}:{tag}"
        client.api.import_image_from_data(
            data, repository=f"{REPO}/{name}", tag=tag, changes=_changes(config)
        )
        built[name] = ref
    return built


def remove(client: docker.DockerClient, tag: str = "latest") -> None:
    for name in IMAGES:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(f"{REPO}/{name}:{tag}", force=True)


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    tag = args[0] if args else "latest"
    client = docker.from_env(version="auto")
    if "--remove" in argv:
        remove(client, tag)
        print(f"removed {REPO}/*:{tag}")
        return 0
    for name, ref in build(client, tag).items():
        print(f"{name:6} {ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
