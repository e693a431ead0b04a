"""Getting the raw bytes out of a running miner: HTTP GET, or one sgminer TCP command.

This is the only I/O in the package; parsers never see a socket. Both functions are bounded by a
timeout and translate every transport failure into `MinerUnreachableError` (retry later) with
reason ``unreachable``, ``timeout`` or ``http_status``; a 4xx status is a plain `MinerApiError`
(the miner answered, this is not its API), so callers can tell "down" from "misconfigured".

The sgminer protocol (TeamRedMiner, port 4028): the client writes ``{"command": "devs"}``, the
miner writes one JSON document -- usually followed by a NUL byte -- and closes. The reader
stops at NUL or EOF, whichever comes first, and never reads more than `MAX_PAYLOAD_BYTES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp

from orchestrator.agents.miners._values import MAX_PAYLOAD_BYTES
from orchestrator.agents.miners.errors import MinerApiError, MinerUnreachableError

_NOT_FOUND = 404


async def http_get(
    session: aiohttp.ClientSession,
    url: str,
    *,
    miner: str,
    timeout_s: float,
    access_token: str | None = None,
) -> bytes | None:
    """GET `url` and return its body; None on 404 (the caller may try another path)."""
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    try:
        async with session.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            if response.status == _NOT_FOUND:
                return None
            if response.status >= 500:
                raise MinerUnreachableError(
                    "http_status", f"{url}: HTTP {response.status}", miner=miner
                )
            if response.status != 200:
                raise MinerApiError("http_status", f"{url}: HTTP {response.status}", miner=miner)
            body = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                body += chunk
                if len(body) > MAX_PAYLOAD_BYTES:
                    raise MinerApiError(
                        "too_large", f"{url}: body over {MAX_PAYLOAD_BYTES} bytes", miner=miner
                    )
            return bytes(body)
    except TimeoutError:
        raise MinerUnreachableError(
            "timeout", f"{url}: no answer in {timeout_s} s", miner=miner
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise MinerUnreachableError(
            "unreachable", f"{url}: {exc.__class__.__name__}: {exc}", miner=miner
        ) from None


async def sgminer_command(
    host: str, port: int, command: str, *, miner: str, timeout_s: float
) -> bytes:
    """Send one sgminer JSON command and return the reply without its NUL terminator."""
    where = f"tcp://{host}:{port} {command}"
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(json.dumps({"command": command}).encode())
            await writer.drain()
            reply = bytearray()
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                reply += chunk
                if b"\x00" in chunk:
                    del reply[reply.index(b"\x00") :]
                    break
                if len(reply) > MAX_PAYLOAD_BYTES:
                    raise MinerApiError("too_large", f"{where}: reply too long", miner=miner)
    except TimeoutError:
        raise MinerUnreachableError(
            "timeout", f"{where}: no answer in {timeout_s} s", miner=miner
        ) from None
    except OSError as exc:
        raise MinerUnreachableError(
            "unreachable", f"{where}: {exc.__class__.__name__}: {exc}", miner=miner
        ) from None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    if not reply.strip():
        raise MinerApiError("not_json", f"{where}: empty reply", miner=miner)
    return bytes(reply)
