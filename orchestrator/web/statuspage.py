"""The built-in status page of `serve`: `/` and its files under `/static/`.

The page is plain HTML, CSS and JavaScript modules shipped as package data in
`orchestrator/web/static/` (no build step, nothing fetched from elsewhere). It reads the
same `/api/v1/*` endpoints as any client, with the bearer token an operator types in (kept in
the tab's sessionStorage), so it needs no privileges of its own: `/` and `/static/*` are
open, like `/healthz`, and say nothing the API would not.

The files are read once when the application is built and served from memory by exact
name: there is no path to traverse and no directory to list. Every response carries its
content type, a strong ETag (a conditional request gets 304) and `Cache-Control: no-cache`,
so a browser revalidates cheaply and an upgraded daemon's page is never mixed with an old
script. The page's Content-Security-Policy allows only its own origin: no inline script,
no third-party anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str

    def response(self, request: web.Request) -> web.Response:
        headers = {"ETag": self.etag, "Cache-Control": "no-cache", **SECURITY_HEADERS}
        if self.etag in _etags(request.headers.get("If-None-Match", "")):
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.body, headers={**headers, "Content-Type": self.content_type})


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def load_static_files() -> dict[str, StaticFile]:
    """Every servable file of the package's `static/` folder, by file name."""
    files = {}
    folder = resources.files("orchestrator.web").joinpath("static")
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if not entry.is_file() or suffix not in CONTENT_TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[entry.name] = StaticFile(body, CONTENT_TYPES[suffix], etag)
    return files


def add_status_page(app: web.Application) -> None:
    """Serve the status page at `/` and its files at `/static/{name}`."""
    files = load_static_files()
    index = files.get("index.html")
    if index is None:
        raise RuntimeError("the status page is missing from the package (static/index.html)")

    async def page(request: web.Request) -> web.Response:
        return index.response(request)

    async def static(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(text="no such file\n")
        return found.response(request)

    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
