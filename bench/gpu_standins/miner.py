"""A miner stand-in for `bench/gpu_e2e.py`: fp16 matrix products in a loop, with T-Rex's API.

Run by the agent's `process` driver, which names the GPU in `CUDA_VISIBLE_DEVICES`:

    python miner.py --port P --pci 00000000:00:06.0 [--size 8192] [--device cuda] [--fake]

The loop multiplies two `--size` square fp16 matrices on `--device` without pause, which keeps
the GPU busy and near its power limit as a miner does. `GET /summary` answers a T-Rex 0.26
summary, so the agent's real `trex` reader checks it: one GPU on the bus id given by `--pci`
(NVML's form, as the agent's `{pci_bus_id}` placeholder fills it), `hashrate` null until the
first batch is timed, then the products per second of the last batch ("one hash is one
product": a small number on purpose, so the planner never finds this miner profitable), and an
accepted share per second. The extra key `standin` gives the achieved TFLOP/s. SIGTERM or
SIGINT: finish the batch, stop listening, exit 0. `--fake` multiplies nothing and needs no
torch (the CPU rehearsal of the whole check); `--device cpu` tries the torch path without a GPU.

Standard library and torch only: the process driver passes a workload no `PYTHONPATH`.
`--run-id` is not used here; it marks the command line so the check can find its processes.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


@dataclass
class Rates:
    """What the loop measured; read by the API thread."""

    started_s: float = field(default_factory=time.monotonic)
    products: int = 0
    products_per_s: float | None = None
    tflops: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, products: int, seconds: float, flops_per_product: float) -> None:
        with self.lock:
            self.products += products
            self.products_per_s = products / seconds
            self.tflops = self.products_per_s * flops_per_product / 1e12

    def summary(self, pci: tuple[int, int, int]) -> dict[str, object]:
        """A T-Rex 0.26 `/summary` document for one GPU."""
        with self.lock:
            rate = None if self.products_per_s is None else round(self.products_per_s)
            uptime = int(time.monotonic() - self.started_s)
            shares = uptime if rate else 0
            tflops = None if self.tflops is None else round(self.tflops, 1)
            products = self.products
        domain, bus, device = pci
        gpu = {
            "device_id": 0,
            "gpu_id": 0,
            "hashrate": rate,
            "pci_domain": domain,
            "pci_bus": bus,
            "pci_id": device,
            "shares": {"accepted_count": shares, "rejected_count": 0, "invalid_count": 0},
        }
        return {
            "name": "t-rex",
            "version": "0.26.8",
            "api": "4.2",
            "algorithm": "kawpow",
            "success": 1,
            "uptime": uptime,
            "hashrate": rate,
            "accepted_count": shares,
            "rejected_count": 0,
            "gpus": [gpu],
            "standin": {"tflops": tflops, "products": products},
        }


def parse_pci(text: str) -> tuple[int, int, int]:
    """NVML's `dddddddd:bb:dd.f` (hex) -> (domain, bus, device)."""
    domain, bus, rest = text.strip().split(":")
    return int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pci", required=True, help="the GPU's bus id, NVML's form")
    parser.add_argument("--size", type=int, default=8192, help="matrix side")
    parser.add_argument("--batch", type=int, default=20, help="products between two timings")
    parser.add_argument("--device", default="cuda", help="torch device (cuda: the one visible)")
    parser.add_argument("--fake", action="store_true", help="multiply nothing: no torch needed")
    parser.add_argument("--run-id", default="", help="marks the command line; not used")
    args = parser.parse_args(argv)
    pci = parse_pci(args.pci)
    rates = Rates()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path.startswith("/summary")
            body = json.dumps(rates.summary(pci)).encode() if found else b"{}"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *values: object) -> None:  # noqa: A002
            """Quiet: the agent reads the API every few hundred milliseconds."""

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    stopping = threading.Event()

    def on_signal(signo: int, _frame: FrameType | None) -> None:
        print(f"miner stand-in: signal {signo}, stopping", flush=True)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}).start()
    try:
        if args.fake:
            _fake_loop(args.batch, rates, stopping.is_set)
        else:
            _torch_loop(args.device, args.size, args.batch, rates, stopping.is_set)
    finally:
        server.shutdown()
        print(f"miner stand-in: stopped after {rates.products} products", flush=True)
    return 0


def _torch_loop(device: str, size: int, batch: int, rates: Rates, stop: Callable[[], bool]) -> None:
    import torch  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    a = torch.randn(size, size, dtype=torch.float16, device=device)
    b = torch.randn(size, size, dtype=torch.float16, device=device)
    out = torch.empty(size, size, dtype=torch.float16, device=device)
    on_gpu = out.is_cuda
    name = torch.cuda.get_device_name(out.device) if on_gpu else device
    print(f"miner stand-in: {size}x{size} fp16 on {name} (torch {torch.__version__})", flush=True)
    flops = 2.0 * size**3
    reported = time.monotonic()
    while not stop():
        started = time.perf_counter()
        for _ in range(batch):
            torch.matmul(a, b, out=out)
        if on_gpu:
            torch.cuda.synchronize()
        rates.record(batch, time.perf_counter() - started, flops)
        if time.monotonic() - reported >= 5.0:
            reported = time.monotonic()
            print(f"miner stand-in: {rates.tflops:.1f} TFLOP/s", flush=True)


def _fake_loop(batch: int, rates: Rates, stop: Callable[[], bool]) -> None:
    while not stop():
        started = time.perf_counter()
        time.sleep(0.1)
        rates.record(batch, time.perf_counter() - started, 1.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
