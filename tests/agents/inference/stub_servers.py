"""Stub inference servers on 127.0.0.1 with the real readiness and metrics endpoints.

One aiohttp app answers as the chosen server does (shapes from the upstream docs):

- vLLM: `GET /health` 200 with an empty body, 503 with an empty body when not ready;
  `GET /metrics` with `vllm:num_requests_running` / `vllm:num_requests_waiting`.
- TGI: `GET /health` 200 empty, 503 `{"error": "unhealthy", "error_type": "healthcheck"}`;
  `GET /metrics` with `tgi_queue_size` / `tgi_batch_current_size`.
- Triton: `GET /v2/health/ready` 200 (empty body, text/plain) or 503.
- Ollama: `GET /api/version` `{"version": "0.5.1"}`, `GET /api/ps` `{"models": [...]}`.
- generic `http`: `GET /` 200 `ok`.

A test changes `ready`, `in_flight` and `delay_s` while the server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web


@dataclass
class StubServer:
    kind: str
    ready: bool = True
    in_flight: int = 0
    delay_s: float = 0.0
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _pause(self) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)

    async def health(self, _request: web.Request) -> web.Response:
        await self._pause()
        if self.ready:
            return web.Response(status=200)
        if self.kind == "tgi":
            return web.json_response(
                {"error": "unhealthy", "error_type": "healthcheck"}, status=503
            )
        return web.Response(status=503)

    async def triton_ready(self, _request: web.Request) -> web.Response:
        await self._pause()
        return web.Response(status=200 if self.ready else 503, content_type="text/plain")

    async def ollama_version(self, _request: web.Request) -> web.Response:
        await self._pause()
        return web.json_response({"version": "0.5.1"})

    async def ollama_ps(self, _request: web.Request) -> web.Response:
        model = {
            "name": "mistral:latest",
            "model": "mistral:latest",
            "size": 5137025024,
            "size_vram": 5137025024,
            "details": {"format": "gguf", "family": "llama", "parameter_size": "7.2B"},
        }
        return web.json_response({"models": [model] if self.ready else []})

    async def generic(self, _request: web.Request) -> web.Response:
        await self._pause()
        return web.Response(status=200 if self.ready else 503, text="ok")

    async def metrics(self, _request: web.Request) -> web.Response:
        if self.kind == "vllm":
            running, waiting = min(self.in_flight, 2), max(0, self.in_flight - 2)
            label = '{model_name="meta-llama/Llama-3.1-8B-Instruct"}'
            text = (
                "# HELP vllm:num_requests_running Number of requests currently running on GPU.\n"
                "# TYPE vllm:num_requests_running gauge\n"
                f"vllm:num_requests_running{label} {float(running)}\n"
                "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
                "# TYPE vllm:num_requests_waiting gauge\n"
                f"vllm:num_requests_waiting{label} {float(waiting)}\n"
            )
        else:
            text = (
                "# TYPE tgi_queue_size gauge\n"
                f"tgi_queue_size {self.in_flight}\n"
                "# TYPE tgi_batch_current_size gauge\n"
                "tgi_batch_current_size 0\n"
            )
        return web.Response(text=text, content_type="text/plain")

    def app(self) -> web.Application:
        app = web.Application()
        if self.kind in {"vllm", "tgi"}:
            app.router.add_get("/health", self.health)
            app.router.add_get("/metrics", self.metrics)
        elif self.kind == "triton":
            app.router.add_get("/v2/health/ready", self.triton_ready)
        elif self.kind == "ollama":
            app.router.add_get("/api/version", self.ollama_version)
            app.router.add_get("/api/ps", self.ollama_ps)
        else:
            app.router.add_get("/", self.generic)
        return app


@contextlib.asynccontextmanager
async def stub_server(kind: str, **state: object) -> AsyncIterator[StubServer]:
    server = StubServer(kind, **state)  # type: ignore[arg-type]
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()
