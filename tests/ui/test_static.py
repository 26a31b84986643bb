"""How the manager serves the dashboard's files (no browser needed): content types, the
redirect, caching, and the token, which guards the API but not the page's own files."""

from __future__ import annotations

from pathlib import Path

import httpx

from orc.ui import CONTENT_TYPES, STATIC, load_assets
from tests.conftest import RunningCluster, make_settings, running_cluster


def test_every_file_of_the_dashboard_is_served() -> None:
    """A file whose type is not in CONTENT_TYPES would be left out without a word."""
    files = {p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()}
    assert set(load_assets()) == files
    assert {"index.html", "app.js", "style.css"} <= files


def test_the_page_loads_nothing_from_elsewhere() -> None:
    """No external network: every script, style and fetch stays on the manager."""
    for path in STATIC.rglob("*"):
        if path.suffix in {".html", ".js", ".css"}:
            text = path.read_text()
            assert "http://" not in text.replace("http://www.w3.org", ""), path
            assert "https://" not in text, path


async def test_files_come_with_their_content_types(cluster: RunningCluster) -> None:
    m = cluster.manager
    r = await m.get("/ui")
    assert r.status_code == 308
    assert r.headers["Location"] == "ui/"
    assert httpx.URL("http://x/ui").join(r.headers["Location"]).path == "/ui/"

    r = await m.get("/ui/")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "connect-src 'self'" in r.headers["Content-Security-Policy"]
    assert '<script type="module" src="app.js">' in r.text
    for name, kind in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ]:
        r = await m.get(f"/ui/{name}")
        assert r.status_code == 200, name
        assert r.headers["Content-Type"] == kind == CONTENT_TYPES[Path(name).suffix]
        assert r.content == (STATIC / name).read_bytes()


async def test_unknown_files_are_404_in_orc_s_error_shape(cluster: RunningCluster) -> None:
    for path in ["/ui/nope.js", "/ui/..%2Ftasks", "/ui/static/app.js", "/ui/%2e%2e/pyproject.toml"]:
        r = await cluster.manager.get(path)
        assert r.status_code == 404, path
        assert r.json()["message"]


async def test_an_unchanged_file_is_a_bodiless_304(cluster: RunningCluster) -> None:
    first = await cluster.manager.get("/ui/app.js")
    assert first.headers["Cache-Control"] == "no-cache"
    again = await cluster.manager.get(
        "/ui/app.js", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


async def test_the_token_guards_the_api_not_the_page(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", ORC_TOKEN="t0ken")
    async with running_cluster(settings) as running:
        m = running.manager
        assert (await m.get("/ui/")).status_code == 200
        assert (await m.get("/ui/app.js")).status_code == 200
        assert (await m.get("/ui")).status_code == 308
        assert (await m.get("/tasks")).status_code == 401
        # only the dashboard's own prefix is open, not whatever starts with its letters
        assert (await m.get("/uix")).status_code == 401
        r = await m.get("/tasks", headers={"Authorization": "Bearer t0ken"})
        assert r.status_code == 200
