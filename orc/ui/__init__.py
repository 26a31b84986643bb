"""The web dashboard: static files (plain HTML, CSS and JavaScript modules, no build step),
served by the manager at `/ui/`.

The page reads and changes the cluster only through the manager's public API (`GET /tasks`,
`GET /events`, ...), as any other client does, so this room knows nothing else of orc. The files
hold no cluster data: they are served without the token (a browser cannot attach one to a page
it navigates to), and the page itself asks for the token and sends it on every API call.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import NotFound

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/ui"

# Named here rather than guessed by `mimetypes`, which reads the machine's /etc/mime.types and
# so may answer differently from one host to the next (`.js` as text/plain breaks module loading).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

# The page loads nothing from elsewhere and talks only to the manager that served it.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Asset(NamedTuple):
    body: bytes
    content_type: str
    etag: str


def load_assets(folder: Path = STATIC) -> dict[str, Asset]:
    """Every file under `folder` with a known type, keyed by its path relative to it. Read once
    at start-up: the files are small, and a request then costs no disk access."""
    assets = {}
    for path in sorted(folder.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type:
            body = path.read_bytes()
            etag = hashlib.sha256(body).hexdigest()[:16]
            assets[path.relative_to(folder).as_posix()] = Asset(body, content_type, etag)
    return assets


def _serve(asset: Asset) -> Response:
    # `no-cache` still lets the browser keep a copy, but it asks each time; the ETag makes the
    # answer a bodiless 304 when nothing changed, so a new orc's files are never stale.
    if request.if_none_match.contains(asset.etag):
        response = Response(b"", status=304)
    else:
        response = Response(asset.body, content_type=asset.content_type)
    response.set_etag(asset.etag)
    response.headers["Cache-Control"] = "no-cache"
    response.headers.update(SECURITY_HEADERS)
    return response


def add_dashboard(app: QuartTrio, folder: Path = STATIC) -> tuple[str, ...]:
    """Serve the dashboard at `/ui/` (`/ui` redirects there). Returns the path prefixes it
    serves, which need no token."""
    assets = load_assets(folder)

    @app.get(PREFIX)
    async def dashboard_redirect() -> Response:
        # Relative, so that it still points right behind a proxy that mounts orc under a path.
        response = Response(b"", status=308)
        response.headers["Location"] = "ui/"
        return response

    @app.get(PREFIX + "/")
    async def dashboard_index() -> Response:
        return _serve(assets["index.html"])

    @app.get(PREFIX + "/<path:name>")
    async def dashboard_file(name: str) -> Response:
        asset = assets.get(name)
        if asset is None:
            raise NotFound()
        return _serve(asset)

    return (PREFIX,)
