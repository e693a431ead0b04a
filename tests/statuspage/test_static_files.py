"""Serving the status page: `/` and `/static/{name}` with the right types and cache headers,
nothing else (no listing, no traversal), open without a token while `/api/*` stays closed;
and its grid drawing 10,000 GPUs in a real Chromium without freezing the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from orchestrator.config.common import TokenSection
from orchestrator.web.auth import TokenChecker, auth_middleware, digest
from orchestrator.web.statuspage import add_status_page, load_static_files
from tests.statuspage.browser import chromium

STATIC = Path(__file__).resolve().parents[2] / "orchestrator" / "web" / "static"


async def _closed(_request: web.Request) -> web.Response:
    return web.json_response({"secret": True})


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    """The status page on its own, behind the real auth middleware with one token set."""
    checker = TokenChecker([TokenSection(name="op", role="operator", sha256=digest("t" * 20))])
    app = web.Application(middlewares=[auth_middleware(checker)])
    app.router.add_get("/api/v1/state", _closed)
    add_status_page(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_every_shipped_file_is_servable() -> None:
    """A file in static/ that the server would not serve is a mistake (wrong suffix)."""
    shipped = {path.name for path in STATIC.iterdir() if path.is_file()}
    assert set(load_static_files()) == shipped
    assert {"index.html", "app.js", "style.css"} <= shipped


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/grid.js", "text/javascript; charset=utf-8"),
        ("/static/style.css", "text/css; charset=utf-8"),
    ],
)
async def test_files_are_served_open_with_type_and_revalidation(
    base_url: str, path: str, content_type: str
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url + path) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == content_type
            assert response.headers["Cache-Control"] == "no-cache"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            etag = response.headers["ETag"]
            body = await response.read()
        assert body
        async with session.get(base_url + path, headers={"If-None-Match": etag}) as response:
            assert response.status == 304
            assert await response.read() == b""
        async with session.head(base_url + path) as response:
            assert response.status == 200


@pytest.mark.parametrize(
    "path",
    ["/static/", "/static", "/static/nope.js", "/static/..%2Fstatuspage.py", "/static/../api.py"],
)
async def test_nothing_else_is_served(base_url: str, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(base_url + path) as response:
        assert response.status == 404, path


async def test_the_api_beside_the_page_still_needs_a_token(base_url: str) -> None:
    url = base_url + "/api/v1/state"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 401


RENDER_10K = """
(async () => {
  const { FleetGrid } = await import('/static/grid.js');
  const box = document.createElement('div');
  document.body.append(box);
  const grid = new FleetGrid(box, { onExplain: () => {}, onSelectionChange: () => {} });
  const kinds = ['mine:kawpow', 'mine:etchash', 'ai:acme', 'ai:spot', 'idle'];
  const fleet = (turn) => Array.from({ length: 1250 }, (_, n) => ({
    node: `rig-${String(n).padStart(4, '0')}`, status: 'online',
    gpus: Array.from({ length: 8 }, (_, i) => ({
      gpu: `rig-${String(n).padStart(4, '0')}:${i}`, state: (n + i) % 97 ? 'ok' : 'unhealthy',
      workload: kinds[(n + i + turn) % kinds.length], planned_workload: null, telemetry: {},
    })),
  }));
  const first = fleet(0), second = fleet(1);
  let t = performance.now();
  grid.render(first);
  const cells = box.querySelectorAll('button.c').length;
  box.getBoundingClientRect();  // force layout, as the browser must before painting
  const buildMs = performance.now() - t;
  t = performance.now();
  grid.render(second);
  box.getBoundingClientRect();
  const updateMs = performance.now() - t;
  const idle = second[3].gpus[2].workload === 'idle';
  const cls = box.querySelector('[data-gpu="rig-0003:2"]').className;
  const tabStops = box.querySelectorAll('[tabindex="0"]').length;
  return { cells, buildMs, updateMs, cls, idle, tabStops };
})()
"""


@pytest.mark.slow
async def test_the_grid_draws_10000_gpus_without_freezing(base_url: str, tmp_path: Path) -> None:
    """Build once, then update every cell, each well under a second; one tab stop."""
    async with chromium(tmp_path / "profile") as page:
        await page.open(base_url + "/")
        result = await page.evaluate(RENDER_10K)
        assert result["cells"] == 10_000
        assert result["tabStops"] == 1
        assert ("k-idle" in result["cls"].split()) == result["idle"]
        assert result["buildMs"] < 1500, result
        assert result["updateMs"] < 500, result
        assert page.exceptions == []
