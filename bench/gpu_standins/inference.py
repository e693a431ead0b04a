"""An inference-server stand-in for `bench/gpu_e2e.py`: holds GPU memory as a loaded model does.

Run by the agent's `process` driver, which names the GPU in `CUDA_VISIBLE_DEVICES`:

    python inference.py --port P [--gib 20] [--device cuda] [--fake] [--run-id ID]

It listens at once and answers vLLM's endpoints, so the agent's real probes apply:
`GET /health` is 503 while the "model" loads (torch allocates `--gib` GiB on `--device` and
writes every byte) and 200 once the memory is held; `GET /metrics` carries vLLM's in-flight
gauges at 0, so the agent's drain step sees an idle server. SIGTERM or SIGINT: stop listening,
free the memory, exit 0. `--fake` holds nothing and needs no torch (the CPU rehearsal of the
whole check); `--device cpu` tries the torch path on a machine without a GPU.

Standard library and torch only: the process driver passes a workload no `PYTHONPATH`, so
only what the interpreter itself has is importable. `--run-id` is not used here; it marks the
command line so that the check can find (and end) the processes it started.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

_GIB = 1024**3
METRICS = b"vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gib", type=float, default=20.0, help="GPU memory to hold")
    parser.add_argument("--device", default="cuda", help="torch device (cuda: the one visible)")
    parser.add_argument("--fake", action="store_true", help="hold nothing: no torch needed")
    parser.add_argument("--run-id", default="", help="marks the command line; not used")
    args = parser.parse_args(argv)
    loaded = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._answer(200, METRICS, "text/plain; version=0.0.4")
            elif self.path.startswith("/health"):
                ready = loaded.is_set()
                self._answer(200 if ready else 503, b"" if ready else b"loading", "text/plain")
            else:
                self._answer(404, b"not found", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *values: object) -> None:  # noqa: A002
            """Quiet: the agent probes every few hundred milliseconds."""

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    stopping = threading.Event()

    def on_signal(signo: int, _frame: FrameType | None) -> None:
        print(f"inference stand-in: signal {signo}, stopping", flush=True)
        stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    serving.start()
    try:
        held = None if args.fake else _hold(args.gib, args.device)
    except BaseException:
        server.shutdown()  # exit now: a failed load must fail the health step, not time it out
        raise
    if not stopping.is_set():
        loaded.set()
        print("inference stand-in: ready", flush=True)
    serving.join()
    del held  # the memory goes back with the tensor (and with the process, regardless)
    print("inference stand-in: stopped", flush=True)
    return 0


def _hold(gib: float, device: str) -> object:
    """A tensor of `gib` GiB on `device`, every byte written; its load time is printed."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    started = time.perf_counter()
    tensor = torch.empty(int(gib * _GIB), dtype=torch.uint8, device=device)
    tensor.fill_(1)
    on_gpu = tensor.is_cuda
    if on_gpu:
        torch.cuda.synchronize()
    print(
        f"inference stand-in: holding {tensor.numel() / _GIB:.1f} GiB on "
        f"{torch.cuda.get_device_name(tensor.device) if on_gpu else device} after "
        f"{time.perf_counter() - started:.2f} s (torch {torch.__version__})",
        flush=True,
    )
    return tensor


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
