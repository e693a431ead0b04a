"""Embedding aiohttp: start an application on host:port with `AppRunner`, stop it cleanly.

Daemons embed aiohttp (STYLE point 14) rather than handing the loop to `run_app`, so the
HTTP listener starts after what it reports on and stops before it. `metrics_handler`
serves a Prometheus registry that the daemon injects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


@dataclass(slots=True)
class HttpListener:
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_http(app: web.Application, *, host: str, port: int) -> HttpListener:
    """Listen on host:port (port 0 picks a free one) and return the bound address."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound_port = port
    server = site._server
    if server is not None:
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            bound_port = sockets[0].getsockname()[1]
    return HttpListener(runner, host, bound_port)


def metrics_handler(
    registry: CollectorRegistry, *, extra_text: Callable[[], str] | None = None
) -> Handler:
    """`/metrics`: the registry's exposition, then `extra_text()` (families written as text)."""

    async def handler(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        if extra_text is not None:
            body += extra_text().encode()
        response = web.Response(body=body)
        response.content_type = "text/plain"
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return handler
