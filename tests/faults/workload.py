"""A stand-in GPU workload for the fault suite: a real process that keeps a ledger.

Run by the agent's `process` driver (`python workload.py --ledger FILE ...`). It appends one
JSON line to the ledger when it starts and one when it is asked to stop (SIGTERM), so a test
counts starts and stops of every workload from outside the agent, across agent restarts and
SIGKILLs. It answers HTTP on `--port`: `GET /` 200 (an inference server's readiness) and
`GET /summary` a T-Rex 0.26 summary for the GPU on `--pci` (a miner's API), so the agent's
real health checks pass. Standard library only, so it starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType


def _record(ledger: Path, event: str, args: argparse.Namespace) -> None:
    line = {
        "event": event,
        "pid": os.getpid(),
        "node": args.node,
        "gpu": args.gpu,
        "workload": args.workload,
        "kind": args.kind,
        "at_s": time.time(),
    }
    with ledger.open("a") as handle:  # one short append per line: atomic enough on Linux
        handle.write(json.dumps(line) + "\n")


def _trex_summary(pci_bus_id: str) -> dict[str, object]:
    bus = int(pci_bus_id.split(":")[1], 16)
    gpu: dict[str, object] = {
        "device_id": 0,
        "gpu_id": 0,
        "hashrate": 25e6,
        "pci_bus": bus,
        "pci_domain": 0,
    }
    gpu["shares"] = {"accepted_count": 1, "rejected_count": 0, "invalid_count": 0}
    return {
        "algorithm": "kawpow",
        "api": "4.2",
        "gpus": [gpu],
        "hashrate": 25e6,
        "name": "t-rex",
        "success": 1,
        "uptime": 60,
        "accepted_count": 1,
        "version": "0.26.8",
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--kind", choices=["mining", "ai"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pci", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--gpu", type=int, required=True)
    parser.add_argument("--workload", required=True)
    args = parser.parse_args(argv)
    summary = json.dumps(_trex_summary(args.pci)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = summary if self.path.startswith("/summary") else b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *values: object) -> None:  # noqa: A002
            """Quiet: the agent's per-GPU log needs no access log."""

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    _record(args.ledger, "start", args)
    stopping = threading.Event()

    def on_signal(_signo: int, _frame: FrameType | None) -> None:
        stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.serve_forever(poll_interval=0.1)
    _record(args.ledger, "stop", args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
