"""One entry point per use: `parse_miner` for bytes in hand, `read_miner` for a live miner or
a saved file.

Each supported miner is described by one `MinerApi` record: its parser, its transport (HTTP or
the sgminer TCP protocol), the paths to try in order (later paths serve older versions that
answer 404 on the first), and optional extra requests whose answers are merged into the
parser's input (XMRig's ``/2/backends``, TeamRedMiner's ``pools`` and ``devdetails``). A failed
extra request costs only the data it would have added.

`url` is the miner's API address: ``http://127.0.0.1:4067`` (``http://`` may be left out) or,
for TeamRedMiner, ``tcp://127.0.0.1:4028`` / ``127.0.0.1:4028``. When the URL carries a path
other than ``/``, exactly that path is read instead of the defaults.

Everything that goes wrong comes out as `MinerApiError`; the whole read, however many requests
it makes, is bounded by `timeout_s`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from orchestrator.agents.miners._values import Payload, decode_json
from orchestrator.agents.miners.errors import MinerApiError, MinerUnreachableError
from orchestrator.agents.miners.fetch import http_get, sgminer_command
from orchestrator.agents.miners.gminer import parse_gminer
from orchestrator.agents.miners.lolminer import parse_lolminer
from orchestrator.agents.miners.nbminer import parse_nbminer
from orchestrator.agents.miners.reading import MinerReading
from orchestrator.agents.miners.rigel import parse_rigel
from orchestrator.agents.miners.srbminer import parse_srbminer
from orchestrator.agents.miners.teamredminer import parse_teamredminer
from orchestrator.agents.miners.trex import parse_trex
from orchestrator.agents.miners.xmrig import parse_xmrig


@dataclass(frozen=True, slots=True)
class MinerApi:
    """How to reach and read one miner's API."""

    parse: Callable[[Payload], MinerReading]
    transport: str  # "http" or "sgminer"
    paths: tuple[str, ...]  # HTTP paths or sgminer commands; the first that answers wins
    extras: tuple[str, ...] = ()  # merged into the parser input under their envelope key
    default_port: int | None = None


MINER_API_TABLE: dict[str, MinerApi] = {
    "trex": MinerApi(parse_trex, "http", ("/summary",), default_port=4067),
    "lolminer": MinerApi(parse_lolminer, "http", ("/summary", "/")),
    "gminer": MinerApi(parse_gminer, "http", ("/stat",)),
    "xmrig": MinerApi(
        parse_xmrig, "http", ("/1/summary", "/2/summary", "/api.json", "/"), extras=("/2/backends",)
    ),
    "nbminer": MinerApi(parse_nbminer, "http", ("/api/v1/status",)),
    "teamredminer": MinerApi(
        parse_teamredminer, "sgminer", ("devs",), extras=("pools", "devdetails"), default_port=4028
    ),
    "srbminer": MinerApi(parse_srbminer, "http", ("/",), default_port=21550),
    "rigel": MinerApi(parse_rigel, "http", ("/stat", "/")),
}

MINER_APIS: tuple[str, ...] = tuple(MINER_API_TABLE)

_ENVELOPE_KEY = {"/2/backends": "backends", "pools": "pools", "devdetails": "devdetails"}
_PRIMARY_KEY = {"xmrig": "summary", "teamredminer": "devs"}


def _api(api: str) -> MinerApi:
    try:
        return MINER_API_TABLE[api]
    except KeyError:
        known = ", ".join(MINER_APIS)
        raise MinerApiError("unknown_api", f"{api!r} is not one of {known}") from None


def parse_miner(api: str, raw: Payload) -> MinerReading:
    """Parse one saved or received API document of miner `api` (bytes, text or parsed JSON)."""
    return _api(api).parse(raw)


async def read_miner(
    api: str,
    *,
    url: str | None = None,
    file: Path | None = None,
    session: aiohttp.ClientSession | None = None,
    timeout_s: float = 5.0,
    access_token: str | None = None,
) -> MinerReading:
    """Read miner `api` from its live API at `url`, or from a saved response in `file`."""
    spec = _api(api)
    if (url is None) == (file is None):
        raise MinerApiError("no_source", "give exactly one of url or file", miner=api)
    if file is not None:
        try:
            raw = await asyncio.to_thread(file.read_bytes)
        except OSError as exc:
            raise MinerApiError("unreadable", f"{file}: {exc.strerror or exc}", miner=api) from None
        return spec.parse(raw)
    assert url is not None  # noqa: S101 -- narrowed by the check above, for mypy
    try:
        async with asyncio.timeout(timeout_s):
            if spec.transport == "sgminer":
                payload = await _read_sgminer(api, spec, url, timeout_s)
            elif session is not None:
                payload = await _read_http(
                    api, spec, url, session=session, timeout_s=timeout_s, access_token=access_token
                )
            else:
                async with aiohttp.ClientSession() as own_session:
                    payload = await _read_http(
                        api,
                        spec,
                        url,
                        session=own_session,
                        timeout_s=timeout_s,
                        access_token=access_token,
                    )
    except TimeoutError:
        raise MinerUnreachableError(
            "timeout", f"{url}: no answer in {timeout_s} s", miner=api
        ) from None
    return spec.parse(payload)


def _base_and_path(url: str, *, api: str, scheme: str) -> tuple[str, str, str | None]:
    """``host:port/path`` in any spelling -> (scheme://host:port, host, explicit path or None)."""
    text = url.strip()
    if "://" not in text:
        text = f"{scheme}://{text}"
    try:
        parts = urlsplit(text)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise MinerApiError("bad_url", f"{url!r}: {exc}", miner=api) from None
    if not host:
        raise MinerApiError("bad_url", f"{url!r} has no host", miner=api)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    path = parts.path if parts.path not in ("", "/") else None
    if parts.query and path is not None:
        path = f"{path}?{parts.query}"
    default_port = MINER_API_TABLE[api].default_port
    if port is None and default_port is not None and scheme == "tcp":
        netloc = f"{netloc}:{default_port}"
    return f"{parts.scheme}://{netloc}", host, path


async def _read_http(
    api: str,
    spec: MinerApi,
    url: str,
    *,
    session: aiohttp.ClientSession,
    timeout_s: float,
    access_token: str | None,
) -> Payload:
    base, _, explicit = _base_and_path(url, api=api, scheme="http")
    paths = (explicit,) if explicit is not None else spec.paths
    primary: bytes | None = None
    for path in paths:
        primary = await http_get(
            session, base + path, miner=api, timeout_s=timeout_s, access_token=access_token
        )
        if primary is not None:
            break
    if primary is None:
        raise MinerApiError("http_status", f"{base}: HTTP 404 on {', '.join(paths)}", miner=api)
    extras = [path for path in spec.extras if path != explicit]
    if not extras:
        return primary
    envelope: dict[str, object] = {_PRIMARY_KEY[api]: decode_json(primary, miner=api)}
    for path in extras:
        try:
            body = await http_get(
                session, base + path, miner=api, timeout_s=timeout_s, access_token=access_token
            )
            if body is not None:
                envelope[_ENVELOPE_KEY[path]] = decode_json(body, miner=api)
        except MinerApiError:
            continue  # older versions lack the extra endpoint; the primary still counts
    return envelope


async def _read_sgminer(api: str, spec: MinerApi, url: str, timeout_s: float) -> Payload:
    base, host, explicit = _base_and_path(url, api=api, scheme="tcp")
    port = urlsplit(base).port
    if port is None:
        raise MinerApiError("bad_url", f"{url!r} has no port", miner=api)
    command = explicit.strip("/") if explicit is not None else spec.paths[0]
    primary = await sgminer_command(host, port, command, miner=api, timeout_s=timeout_s)
    envelope: dict[str, object] = {_PRIMARY_KEY[api]: [decode_json(primary, miner=api)]}
    for extra in spec.extras:
        try:
            body = await sgminer_command(host, port, extra, miner=api, timeout_s=timeout_s)
            envelope[_ENVELOPE_KEY[extra]] = [decode_json(body, miner=api)]
        except MinerApiError:
            continue  # the devs reply alone is a complete reading
    return envelope


def reading_json(reading: MinerReading) -> str:
    """The CLI's output: one JSON document, keys in the documented order."""
    return json.dumps(reading.to_json_dict(), indent=2)
