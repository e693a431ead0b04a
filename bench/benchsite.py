"""A bench site: a private mosquitto, the real `orchestrator serve` and the simulated fleet.

`BenchSite` is a context manager used by the HTTP, dispatch, price and restart benchmarks:
it writes a serve config (TOML, as an operator would), starts mosquitto with room for a
slow subscriber, starts `python -m orchestrator serve -c <file>` as a child, and can start
`fleetsim.py` publishing one snapshot per node per second and real agents
(`python -m orchestrator agent -c <file>`, fake GPUs, simulated workloads). Everything is
a child process stopped by its own PID on exit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import fleetsim

from orchestrator.demo import DEMO_PROFILES
from orchestrator.demo.broker import MosquittoBroker, free_port

BROKER_CONFIG = "max_queued_messages 1000000\nmax_queued_bytes 0\n"
AUTH = {"Authorization": f"Bearer {fleetsim.BENCH_TOKEN_VALUE}"}


def http_get(url: str, *, timeout_s: float = 30.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=AUTH)  # noqa: S310  (loopback, http only)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def http_post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310  (loopback, http only)
        url,
        data=json.dumps(body).encode(),
        headers={**AUTH, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read() or b"{}")


class BenchSite:
    def __init__(
        self,
        *,
        nodes: int = 1250,
        market_feeds: list[dict[str, Any]] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-site-") if workdir is None else None
        self.workdir = workdir or Path(self._tmp.name if self._tmp else ".")
        self.nodes = nodes
        self.market_feeds = market_feeds or fleetsim.STATIC_FEEDS
        self.broker = MosquittoBroker(
            self.workdir / "broker", port=free_port(), extra_config=BROKER_CONFIG
        )
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.store_path = self.workdir / "serve.sqlite3"
        self.serve: subprocess.Popen[bytes] | None = None
        self.children: list[subprocess.Popen[Any]] = []

    def __enter__(self) -> BenchSite:
        self.broker.start_sync()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for child in [*self.children, *([self.serve] if self.serve else [])]:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
        self.broker.stop_sync()
        if self._tmp is not None:
            self._tmp.cleanup()

    # ------------------------------------------------------------------ serve

    def serve_config_path(self) -> Path:
        document = fleetsim.serve_document(
            broker_port=self.broker.port,
            http_port=self.http_port,
            store_path=self.store_path,
            market_feeds=self.market_feeds,
            nodes=self.nodes,
        )
        path = self.workdir / "serve.toml"
        path.write_text(fleetsim.toml_text(document))
        return path

    def start_serve(self) -> float:
        """Start `orchestrator serve`; return seconds from spawn to `/readyz` 200."""
        config = self.serve_config_path()
        started = time.perf_counter()
        self.serve = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "serve", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "serve.log").open("ab"),
        )
        deadline = started + 60.0
        while time.perf_counter() < deadline:
            if self.serve.poll() is not None:
                raise RuntimeError(f"serve exited {self.serve.returncode}: see serve.log")
            try:
                status, _ = http_get(f"{self.url}/readyz", timeout_s=1.0)
            except OSError:
                status = 0
            if status == 200:
                return time.perf_counter() - started
            time.sleep(0.01)
        raise RuntimeError("serve did not become ready in 60 s")

    def stop_serve(self) -> None:
        if self.serve is not None:
            self.serve.terminate()
            self.serve.wait(timeout=30)
            self.serve = None

    # ------------------------------------------------------------------ load

    def start_fleet(self, *, duration_s: float, nodes: int | None = None) -> None:
        """The simulated fleet, one snapshot per node per second, for `duration_s`."""
        count = nodes or self.nodes
        generator = subprocess.Popen(
            [
                sys.executable,
                str(Path(fleetsim.__file__)),
                "--port",
                str(self.broker.port),
                "--nodes",
                str(count),
                "--rate",
                str(count),
                "--duration-s",
                str(duration_s),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert generator.stdout is not None
        generator.stdout.readline()  # its payloads are built
        self.children.append(generator)

    def start_agent(self, node: str, *, interval_s: float = 1.0) -> subprocess.Popen[bytes]:
        """A real agent: 8 fake RTX 3090s mining kawpow, simulated workloads."""
        state = self.workdir / "agents" / node
        document = {
            "node": {"name": node},
            "mqtt": {
                "host": "127.0.0.1",
                "port": self.broker.port,
                "site": fleetsim.SITE,
                "client_id": f"agent-{node}",
            },
            "http": {"host": "127.0.0.1", "port": 0},
            "log": {"level": "warning", "format": "json"},
            "telemetry": {"interval_s": interval_s},
            "executor": {
                "state_dir": str(state / "state"),
                "log_dir": str(state / "logs"),
                "sim_time_scale": 0.05,
                "verify_free_timeout_s": 5.0,
            },
            "profiles": DEMO_PROFILES,
            "gpu": {
                "backend": "fake",
                "fake": {"gpus": 8, "models": ["rtx-3090"], "initial_workloads": ["mine:kawpow"]},
            },
        }
        state.mkdir(parents=True, exist_ok=True)
        path = state / "agent.toml"
        path.write_text(fleetsim.toml_text(document))
        agent = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "agent", "-c", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=(state / "agent.log").open("ab"),
        )
        self.children.append(agent)
        return agent

    def wait_for_gpus(self, gpus: int, *, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status, body = http_get(f"{self.url}/api/v1/state")
            if status == 200 and json.loads(body)["summary"]["gpus_total"] >= gpus:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the fleet did not reach {gpus} GPUs")
