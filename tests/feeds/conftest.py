"""Fixtures: a real aiohttp server on 127.0.0.1 serving recorded payloads, and a client session.

`serve(routes)` starts a server whose routes answer with the given handlers and returns its
base URL. The payload builders are in `payloads.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from tests.feeds.payloads import Handler

Serve = Callable[[dict[str, Handler]], Awaitable[str]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(routes: dict[str, Handler]) -> str:
        app = web.Application()
        for spec, handler in routes.items():
            method, _, path = spec.partition(" ")
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()
