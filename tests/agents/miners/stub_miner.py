"""A stand-in for a running miner: serves one miner's real API format from fixture files.

Run as a real process, the way tests and the demo meet miners::

    python stub_miner.py --api trex --port 0 --fixture summary.json [--endpoint PATH=FILE ...]

It binds 127.0.0.1 (``--host`` to change), prints the bound port on the first line of stdout,
and serves until SIGTERM/SIGINT. HTTP miners get their fixture at every path the real miner
answers (T-Rex ``/summary``, GMiner ``/stat``, ...); ``--endpoint /2/backends=FILE`` adds more.
TeamRedMiner speaks the sgminer TCP protocol: it reads one ``{"command": ...}`` request, answers
the fixture for ``devs`` (``--endpoint pools=FILE`` / ``devdetails=FILE`` for the others, an
sgminer error reply for anything unknown, ``cmd1+cmd2`` in sgminer's multi-command shape), ends
the reply with a NUL byte (``--no-nul`` to omit it) and closes. ``--delay-s`` delays every
answer, to exercise client timeouts. Fixture files are re-read on every request, so a test can
change what the "miner" says while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

from aiohttp import web

HTTP_PATHS: dict[str, tuple[str, ...]] = {
    "trex": ("/summary",),
    "lolminer": ("/summary", "/"),
    "gminer": ("/stat",),
    "xmrig": ("/1/summary", "/2/summary", "/api.json"),
    "nbminer": ("/api/v1/status",),
    "srbminer": ("/",),
    "rigel": ("/stat", "/"),
}
SGMINER_APIS = ("teamredminer",)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, choices=(*HTTP_PATHS, *SGMINER_APIS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fixture", type=Path, required=True)
    parser.add_argument("--endpoint", action="append", default=[], metavar="PATH=FILE")
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--no-nul", action="store_true")
    return parser.parse_args(argv)


def _routes(args: argparse.Namespace) -> dict[str, Path]:
    primary = HTTP_PATHS.get(args.api, ("devs",))
    routes = dict.fromkeys(primary, args.fixture)
    for item in args.endpoint:
        path, sep, file = item.partition("=")
        if not sep:
            raise SystemExit(f"--endpoint wants PATH=FILE, got {item!r}")
        routes[path] = Path(file)
    return routes


async def _serve_http(args: argparse.Namespace, routes: dict[str, Path]) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(args.delay_s)
        file = routes.get(request.path)
        if file is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=file.read_bytes(), content_type="application/json")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    return runner


def _sgminer_reply(command: str, routes: dict[str, Path]) -> bytes:
    def one(name: str) -> object:
        file = routes.get(name)
        if file is None:
            return {
                "STATUS": [
                    {
                        "STATUS": "E",
                        "When": 0,
                        "Code": 14,
                        "Msg": "Invalid command",
                        "Description": "stub",
                    }
                ],
                "id": 1,
            }
        return json.loads(file.read_bytes())

    names = command.split("+")
    if len(names) == 1:
        return json.dumps(one(names[0])).encode()
    return json.dumps({name: [one(name)] for name in names}).encode()


async def _serve_sgminer(args: argparse.Namespace, routes: dict[str, Path]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = bytearray()
            command = None
            while command is None:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                request += chunk
                with contextlib.suppress(ValueError):
                    command = str(json.loads(request.rstrip(b"\x00"))["command"])
            if command is not None:
                await asyncio.sleep(args.delay_s)
                writer.write(_sgminer_reply(command, routes) + (b"" if args.no_nul else b"\x00"))
                await writer.drain()
        except (OSError, KeyError, TypeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, args.host, args.port)


async def _main(argv: list[str]) -> None:
    args = _parse_args(argv)
    routes = _routes(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.api in SGMINER_APIS:
        server = await _serve_sgminer(args, routes)
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)  # the port is this program's output
        await stop.wait()
        server.close()
        await server.wait_closed()
    else:
        runner = await _serve_http(args, routes)
        print(runner.addresses[0][1], flush=True)
        await stop.wait()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))
