"""Readiness probes for inference servers: is the model loaded and are requests served?

One GET per probe, bounded by `timeout_s`, on the endpoint each server documents:

- vLLM: `GET /health`: 200 (empty body) when the engine is healthy; 503 when the engine is
  dead, and in newer versions while warming up or draining.
- TGI: `GET /health`: 200 when working; 503 `{"error": "unhealthy", "error_type":
  "healthcheck"}` when down.
- Triton (KServe v2): `GET /v2/health/ready`: 200 (empty body) when every model is ready
  (with the default `--strict-readiness`), otherwise non-200.
- Ollama: `GET /api/version` answers `{"version": "0.5.1"}` once the server runs; Ollama
  loads models on first use, so a running server is ready. `GET /api/ps` then lists the
  loaded models (`{"models": [{"name": ...}]}`), reported in the detail, best effort.
- generic `http`: the URL answers 200.

A profile's `url` is the server's base address (the server's own path is added) or a full
URL with a path (read as given), like the miner readers. A probe never raises: anything that
goes wrong is "not ready" with a one-line reason, which is what both of its callers (the
switch executor's health step and the watchdog) need to decide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

READY_PATHS: dict[str, str] = {
    "vllm": "/health",
    "tgi": "/health",
    "triton": "/v2/health/ready",
    "ollama": "/api/version",
    "http": "/",
}
INFERENCE_SERVERS: tuple[str, ...] = tuple(READY_PATHS)
_MAX_BODY_BYTES = 64 * 1024
_OK = 200


@dataclass(frozen=True, slots=True)
class Readiness:
    """One probe's answer."""

    ready: bool
    detail: str  # "HTTP 200", "HTTP 503: unhealthy", "timeout after 2.0 s", ...
    status: int | None = None  # the HTTP status, when one came back
    models: tuple[str, ...] = ()  # Ollama: the models loaded now


def base_url(url: str) -> str:
    """`scheme://host:port` of a URL (`http://` is assumed when missing)."""
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def readiness_url(server: str, url: str) -> str:
    """The URL to probe: `url` as given when it has a path, else the server's own path."""
    if server not in READY_PATHS:
        raise ValueError(f"unknown inference server {server!r}; valid: {INFERENCE_SERVERS}")
    if "://" not in url:
        url = f"http://{url}"
    if urlsplit(url).path not in {"", "/"}:
        return url
    return base_url(url) + READY_PATHS[server]


async def probe_readiness(
    session: aiohttp.ClientSession, server: str, url: str, *, timeout_s: float
) -> Readiness:
    """Ask `server` at `url` whether it is ready; never raises for what the server does."""
    target = readiness_url(server, url)
    status, body, error = await _get(session, target, timeout_s=timeout_s)
    if error is not None:
        return Readiness(ready=False, detail=error)
    assert status is not None  # noqa: S101  (no error means a status came back)
    if status != _OK:
        return Readiness(ready=False, detail=_status_detail(status, body), status=status)
    if server != "ollama":
        return Readiness(ready=True, detail=f"HTTP {status}", status=status)
    version = _json_field(body, "version")
    if not isinstance(version, str):
        return Readiness(
            ready=False, detail="HTTP 200 but no version: not an Ollama server", status=status
        )
    models = await _ollama_models(session, target, timeout_s=timeout_s)
    loaded = ", ".join(models) if models else "none loaded"
    return Readiness(
        ready=True, detail=f"ollama {version}; models: {loaded}", status=status, models=models
    )


async def _ollama_models(
    session: aiohttp.ClientSession, version_url: str, *, timeout_s: float
) -> tuple[str, ...]:
    status, body, error = await _get(
        session, base_url(version_url) + "/api/ps", timeout_s=timeout_s
    )
    if error is not None or status != _OK:
        return ()
    models = _json_field(body, "models")
    if not isinstance(models, list):
        return ()
    return tuple(
        str(model["name"]) for model in models if isinstance(model, dict) and "name" in model
    )


async def _get(
    session: aiohttp.ClientSession, url: str, *, timeout_s: float
) -> tuple[int | None, bytes, str | None]:
    """(status, body, None) or (None, b"", reason)."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            body = await response.content.read(_MAX_BODY_BYTES)
            return response.status, body, None
    except TimeoutError:
        return None, b"", f"{url}: no answer in {timeout_s} s"
    except (aiohttp.ClientError, OSError) as error:
        return None, b"", f"{url}: {error.__class__.__name__}: {error}"


def _json_field(body: bytes, key: str) -> object:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document.get(key) if isinstance(document, dict) else None


def _status_detail(status: int, body: bytes) -> str:
    error = _json_field(body, "error")
    return f"HTTP {status}: {error}" if isinstance(error, str) else f"HTTP {status}"
