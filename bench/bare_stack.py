"""The HTTP stack orc is built on, with nothing of orc in it: the floor under bench/launch.py.

    .venv/bin/python bench/bare_stack.py PORT

A quart-trio app on hypercorn, configured as orc's (no access log), whose `POST /tasks` reads
the JSON body, decodes it with msgspec and answers it back with 201: the least any handler of
that route does. It prints `ready` once it listens.
"""

from __future__ import annotations

import sys

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

app = QuartTrio(__name__)


@app.post("/tasks")
async def post_task() -> Response:
    body = msgspec.json.decode(await request.get_data())
    return Response(msgspec.json.encode(body), status=201, content_type="application/json")


async def main(port: int) -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: serve(app, config, task_status=task_status))
        print("ready", flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
