"""End to end on a real GPU: a broker, `serve` and `agent` switch it idle -> AI -> mining -> idle.

Run as `python bench/gpu_e2e.py [--fake] [--out DIR] [--budget-s S] [--ai-gib G]`. Everything
is the product as a site runs it: a broker (the demo's: a private mosquitto where the binary
exists, else amqtt in a thread of this process), `python -m orchestrator serve -c FILE` and
`python -m orchestrator agent -c FILE` as child processes with configs written here, the
real NVML backend and the `process` driver, and an operator token made by
`orchestrator token new`. The agent declares two profiles whose workloads are the stand-ins in
`bench/gpu_standins/`: `llm-standin` (serves contract `spot`: holds `--ai-gib` GiB on the GPU
and answers vLLM's `/health` and `/metrics`) and `kawpow` (fp16 matrix products in a loop
behind T-Rex's `/summary`). The market makes idle the planner's own choice, so only the
operator moves the GPU.

Each switch is one `POST /api/v1/overrides` (the previous override is then deleted); while it
runs, serve's `/api/v1/state` is read four times a second and an MQTT subscriber records the
agent's events. Per switch the summary gives: seconds from the override to the agent's final
event, the events (step by step, seconds after the override), serve's record of the command
(`/api/v1/decisions`), and the GPU's memory used, power and utilisation from `/api/v1/state`
once the switch is done, plus the lowest memory seen during it. Checks: every switch `done`
and reported by serve; on a real GPU the AI stand-in's memory shows, the miner loads the GPU,
and after the last stop the memory is back within `--idle-margin-mib` of the idle baseline
with no process left. The JSON summary is printed as the last line and written to
`$OUT/gpu_e2e.json` (`--out`, else `$OUT`, else `./gpu-e2e-out`), with the configs and logs
in `$OUT/gpu_e2e_logs.tar.gz`. Exit 0 when every check passed, else 1 (where NVML is not
usable, the agent exits at start and the error quotes its log).

`--fake` is the CPU rehearsal: the fake GPU backend (`[gpu] backend = "fake"`, one simulated
H100) and stand-ins that touch no GPU. The fake backend does not follow `process` workloads,
so the GPU-load checks are skipped there; the switching, API and event checks are the same.

Only queries the GPU (NVML reads through the agent); nothing here sets a limit, a clock or
a mode. Processes it started are ended by their own ids: its children by PID, workloads by
the run id in their command line (the process driver leaves workloads running when an agent
stops, as it must on a site).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from orchestrator.demo.broker import (  # noqa: E402
    AmqttBroker,
    MosquittoBroker,
    embedded_broker,
    free_port,
    port_accepts,
)

T = TypeVar("T")

STANDINS = Path(__file__).resolve().parent / "gpu_standins"
SITE = "gpu-e2e"
PREFIX = f"fleet/v1/{SITE}"
AI, MINE, IDLE = "ai:spot", "mine:kawpow", "idle"
SEQUENCE = (AI, MINE, IDLE)
# the steps each switch must report, in order (the first switch starts from nothing running)
EXPECTED_STEPS = {
    AI: ("stop", "verify", "start", "health"),
    MINE: ("drain", "stop", "verify", "start", "health"),
    IDLE: ("stop", "verify"),
}
OPEN_STATES = frozenset({"publishing", "in_flight", "accepted", "progress"})
MIB = 1024 * 1024
POLL_S = 0.25
# benchmark rows for the planner (what a GPU earns mining); overrides decide here regardless
GPU_MODELS = ("NVIDIA H200", "NVIDIA H100 80GB HBM3")


class BudgetExceededError(RuntimeError):
    """The run's time budget ran out before a wait ended."""


class CheckFailedError(RuntimeError):
    """A step of the check could not go on (a daemon died, a request was refused)."""


# ------------------------------------------------------------------ small helpers


@dataclass
class Budget:
    """The run's deadline; every wait is bounded by what is left of it."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def wait_for(
        self,
        probe: Callable[[], T | None],
        *,
        timeout_s: float,
        what: str,
        poll_s: float = POLL_S,
        alive: Callable[[], None] | None = None,
    ) -> T:
        """Poll `probe` until it returns a truthy value, within `timeout_s` and the budget."""
        deadline = time.monotonic() + min(timeout_s, max(0.0, self.left()))
        while True:
            if alive is not None:
                alive()
            value = probe()
            if value:
                return value
            if time.monotonic() >= deadline:
                if self.left() <= 0:
                    raise BudgetExceededError(f"time budget spent waiting for {what}")
                raise CheckFailedError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            time.sleep(poll_s)


def toml_text(document: dict[str, Any]) -> str:
    """A TOML document of `key = value` lines; nested values as inline tables and arrays."""
    return "".join(f"{key} = {_toml(value)}\n" for key, value in document.items())


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(pairs) + "}"
    raise TypeError(f"no TOML for {value!r}")


def port_block(count: int, taken: set[int]) -> int:
    """The first of `count` consecutive free loopback ports below the ephemeral range, none
    of them in `taken` (which gets them): each profile's workloads need their own."""
    for _ in range(200):
        base = random.randrange(20_000, 32_000 - count)  # noqa: S311  (not cryptography)
        block = set(range(base, base + count))
        if not block & taken and not any(port_accepts("127.0.0.1", port) for port in block):
            taken |= block
            return base
    raise CheckFailedError("no block of free ports")


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


# ------------------------------------------------------------------ HTTP


class Api:
    """serve's HTTP API with a bearer token (urllib: nothing the device lacks)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """(status, JSON body); status 0 when nothing answered."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
                return int(response.status), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            try:
                return int(error.code), json.loads(error.read() or b"null")
            except ValueError:
                return int(error.code), None
        except (OSError, ValueError):
            return 0, None

    def get(self, path: str) -> Any:
        """The JSON body of a 200 answer, else None."""
        status, body = self.call("GET", path)
        return body if status == 200 else None


# ------------------------------------------------------------------ broker and events


class BrokerThread:
    """The demo's broker (`embedded_broker`) run in an event loop of its own thread."""

    def __init__(self, workdir: Path, prefer: str) -> None:
        self.broker: MosquittoBroker | AmqttBroker = embedded_broker(workdir, prefer=prefer)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def kind(self) -> str:
        return self.broker.kind

    def start(self, timeout_s: float = 20.0) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.broker.start(), self._loop).result(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):  # a broker that fails to stop must not hide results
            asyncio.run_coroutine_threadsafe(self.broker.stop(), self._loop).result(timeout_s)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)


class EventWatcher:
    """Every switch event the agents publish, with the time it arrived here."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self._host, self._port = host, port

    def start(self) -> None:
        self.client.connect(self._host, self._port, keepalive=10)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(f"{PREFIX}/nodes/+/events", qos=1)
        self.subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: Any) -> None:
        try:
            event = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(event, dict) and event.get("kind") == "switch":
            event["received_at_s"] = time.time()
            with self._lock:
                self.events.append(event)

    def for_command(self, command_id: str) -> list[dict[str, Any]]:
        with self._lock:
            found = [e for e in self.events if e.get("command_id") == command_id]
        return sorted(found, key=lambda e: float(e.get("at_s", 0.0)))


# ------------------------------------------------------------------ the site


@dataclass
class Daemon:
    """One `python -m orchestrator ...` child with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env
            )

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise CheckFailedError(
                f"{self.name} exited with {self.process.returncode}; its log ends:\n{tail}"
            )

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, bounded; SIGKILL if it does not go. Its exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout_s)
        return process.returncode


@dataclass
class Sample:
    """One look at the GPU through serve's `/api/v1/state`."""

    at_s: float
    workload: str | None
    state: str | None
    memory_used_mib: float | None
    power_w: float | None
    utilization_pct: float | None
    temperature_c: float | None
    processes: int | None
    hashrate_hs: float | None

    def row(self, since_s: float) -> list[object]:
        """[seconds since `since_s`, workload, MiB, W, %, processes]: the timeline's row."""
        return [
            round(self.at_s - since_s, 2),
            self.workload,
            _round(self.memory_used_mib, 0),
            _round(self.power_w),
            self.utilization_pct,
            self.processes,
        ]


def find_gpu(state: Any, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(node, GPU) entries of the GPU `key` in a `/api/v1/state` document, if it is there."""
    if not isinstance(state, dict):
        return None
    for node in state.get("nodes") or ():
        for gpu in node.get("gpus") or ():
            if gpu.get("gpu") == key:
                return dict(node), dict(gpu)
    return None


def gpu_entry(state: Any, key: str) -> dict[str, Any] | None:
    """The GPU `key` in a `/api/v1/state` document, if it is there."""
    found = find_gpu(state, key)
    return None if found is None else found[1]


def sample_of(entry: dict[str, Any]) -> Sample:
    telemetry = entry.get("telemetry") or {}
    used = telemetry.get("memory_used_bytes")
    processes = telemetry.get("processes")
    report = telemetry.get("workload") or {}
    return Sample(
        at_s=time.time(),
        workload=entry.get("workload"),
        state=entry.get("state"),
        memory_used_mib=None if used is None else used / MIB,
        power_w=telemetry.get("power_draw_w"),
        utilization_pct=telemetry.get("utilization_gpu_pct"),
        temperature_c=telemetry.get("temperature_c"),
        processes=None if processes is None else len(processes),
        hashrate_hs=report.get("hashrate_hs") if isinstance(report, dict) else None,
    )


def summarise(samples: list[Sample]) -> dict[str, Any]:
    """Memory, power and utilisation over some samples (means, and the extremes that matter)."""
    memory = [s.memory_used_mib for s in samples if s.memory_used_mib is not None]
    power = [s.power_w for s in samples if s.power_w is not None]
    util = [s.utilization_pct for s in samples if s.utilization_pct is not None]
    temperature = [s.temperature_c for s in samples if s.temperature_c is not None]
    processes = [s.processes for s in samples if s.processes is not None]
    hashrate = [s.hashrate_hs for s in samples if s.hashrate_hs is not None]
    return {
        "samples": len(samples),
        "memory_used_mib": _round(statistics.median(memory), 0) if memory else None,
        "memory_used_max_mib": _round(max(memory), 0) if memory else None,
        "power_w_mean": _round(_mean(power)),
        "power_w_max": _round(max(power)) if power else None,
        "utilization_pct_mean": _round(_mean(util)),
        "utilization_pct_max": max(util) if util else None,
        "temperature_c_max": max(temperature) if temperature else None,
        "processes": max(processes) if processes else None,
        "hashrate_hs": _round(hashrate[-1]) if hashrate else None,
    }


class Site:
    """The broker, one serve, one agent on this machine's GPUs, as a site runs them."""

    def __init__(self, workdir: Path, args: argparse.Namespace, budget: Budget) -> None:
        self.workdir = workdir
        self.args = args
        self.budget = budget
        self.fake: bool = args.fake
        self.run_id = os.urandom(4).hex()
        self.node = f"gpu-e2e-{self.run_id}"
        self.key = f"{self.node}:{args.gpu_index}"
        self.broker = BrokerThread(workdir / "broker", args.broker)
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        self.token, self.token_sha256 = self._new_token()
        self.api = Api(self.url, self.token)
        self.serve: Daemon | None = None
        self.agent: Daemon | None = None
        self.watcher: EventWatcher | None = None
        self.miner_port: int | None = None

    # ------------------------------------------------------------------ set-up

    def _orchestrator(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "orchestrator", *args]

    def _new_token(self) -> tuple[str, str]:
        """An operator token and its SHA-256, as `orchestrator token new` prints them."""
        made = subprocess.run(
            self._orchestrator("token", "new", "--name", "gpu-e2e", "--role", "operator"),
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            env=self.env,
            timeout=60,
        )
        out = made.stdout
        if made.returncode != 0:
            raise CheckFailedError(f"orchestrator token new: {made.stdout}{made.stderr}")
        token = sha = None
        for line in out.splitlines():
            if line.startswith("token ") and ":" in line:
                token = line.rsplit(":", 1)[1].strip()
            elif line.startswith("sha256 = "):
                sha = line.split("=", 1)[1].strip().strip('"')
        if not token or not sha:
            raise CheckFailedError(f"cannot read `orchestrator token new` output:\n{out}")
        return token, sha

    def mqtt_section(self, client_id: str) -> dict[str, Any]:
        return {
            "host": self.broker.broker.host,
            "port": self.broker.broker.port,
            "site": SITE,
            "client_id": client_id,
            "keepalive_s": 5,
            "reconnect_initial_s": 0.2,
            "reconnect_max_s": 1.0,
        }

    def serve_document(self) -> dict[str, Any]:
        benchmarks = {model: {"hashrate_hs": 600.0, "power_w": 690.0} for model in GPU_MODELS}
        return {
            "log": {"level": "info", "format": "json"},
            "mqtt": self.mqtt_section(f"gpu-e2e-serve-{self.run_id}"),
            "http": {
                "host": "127.0.0.1",
                "port": self.http_port,
                "tokens": [{"name": "gpu-e2e", "role": "operator", "sha256": self.token_sha256}],
            },
            # the warm-up before the first plan is this long
            "ingest": {"node_offline_after_s": 3.0, "staleness_check_interval_s": 0.2},
            "store": {"path": str(self.workdir / "serve.sqlite3")},
            "dispatch": {"command_timeout_s": 150.0, "command_ttl_s": 60.0},
            # power dear, hashes and AI cheap: idle is the planner's own choice, so only the
            # operator's overrides move the GPU
            "market": {
                "feeds": [
                    {"type": "static", "algorithm": "kawpow", "value": 1.0e-9},
                    {"type": "power_static", "usd_per_kwh": 1.0},
                ]
            },
            "mining_profiles": [
                {
                    "id": "kawpow",
                    "algorithm": "kawpow",
                    "switch_downtime_s": 10.0,
                    "benchmarks": benchmarks,
                }
            ],
            "contracts": {
                "on_demand": [
                    {
                        "id": "spot",
                        "rate_usd_per_gpu_hour": 0.01,
                        "expected_utilisation_fraction": 0.1,
                        "max_gpus": 8,
                        "switch_downtime_s": 30.0,
                    }
                ]
            },
            "planner": {"min_dwell_s": 0.0, "interval_s": 5.0},
        }

    def agent_document(self) -> dict[str, Any]:
        agent_dir = self.workdir / "agent"
        taken: set[int] = set()
        ai_base, mining_base = port_block(64, taken), port_block(64, taken)
        self.miner_port = mining_base + self.args.gpu_index
        fake = ["--fake"] if self.fake else []
        marker = ["--run-id", self.run_id]
        ai_argv = [
            sys.executable, str(STANDINS / "inference.py"), "--port", "{port}",
            "--gib", str(self.args.ai_gib), *fake, *marker,
        ]  # fmt: skip
        miner_argv = [
            sys.executable, str(STANDINS / "miner.py"), "--port", "{port}",
            "--pci", "{pci_bus_id}", *fake, *marker,
        ]  # fmt: skip
        gpu: dict[str, Any] = {"backend": "nvml"}
        if self.fake:
            gpu = {"backend": "fake", "fake": {"gpus": 1, "models": ["h100-sxm5-80gb"]}}
        return {
            "log": {"level": "info", "format": "json"},
            "node": {"name": self.node},
            "mqtt": self.mqtt_section(f"gpu-e2e-agent-{self.run_id}"),
            "http": {"host": "127.0.0.1", "port": 0},
            "telemetry": {"interval_s": 0.5},
            "executor": {
                "state_dir": str(agent_dir / "state"),
                "log_dir": str(agent_dir / "logs"),
                "verify_free_timeout_s": 30.0,
            },
            "watchdog": {"interval_s": 1.0, "unhealthy_after_s": 20.0},
            "gpu": gpu,
            "profiles": [
                {
                    "id": "llm-standin",
                    "kind": "ai",
                    "driver": "process",
                    "serves_contracts": ["spot"],
                    "expected_power_w": 150.0,
                    "api_port_base": ai_base,
                    "start_timeout_s": 120.0,
                    "stop_timeout_s": 20.0,
                    "drain_timeout_s": 5.0,
                    "process": {"argv": ai_argv},
                    "health": {"server": "vllm", "url": "http://127.0.0.1:{port}"},
                },
                {
                    "id": "kawpow",
                    "kind": "mining",
                    "driver": "process",
                    "algorithm": "kawpow",
                    "expected_hashrate_hs": 600.0,
                    "expected_power_w": 690.0,
                    "api_port_base": mining_base,
                    "start_timeout_s": 120.0,
                    "stop_timeout_s": 20.0,
                    "process": {"argv": miner_argv},
                    "health": {"miner_api": "trex", "url": "http://127.0.0.1:{port}"},
                },
            ],
        }

    def _daemon(self, kind: str, document: dict[str, Any]) -> Daemon:
        path = self.workdir / f"{kind}.toml"
        path.write_text(toml_text(document))
        checked = subprocess.run(  # the operator's check first: a bad key is named here
            self._orchestrator("config", "check", str(path), "--kind", kind),
            check=False,
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if checked.returncode != 0:
            raise CheckFailedError(
                f"orchestrator config check {path.name}: {checked.stdout}{checked.stderr}"
            )
        return Daemon(
            kind, self._orchestrator(kind, "-c", str(path)), self.workdir / f"{kind}.log", self.env
        )

    def start(self, timings: dict[str, float]) -> None:
        started = time.monotonic()
        self.broker.start()
        timings["broker_s"] = round(time.monotonic() - started, 2)
        self.watcher = EventWatcher(
            self.broker.broker.host, self.broker.broker.port, f"gpu-e2e-watch-{self.run_id}"
        )
        self.watcher.start()
        self.serve = self._daemon("serve", self.serve_document())
        self.agent = self._daemon("agent", self.agent_document())
        self.serve.start()
        self.budget.wait_for(
            lambda: self.api.call("GET", "/readyz")[0] == 200,
            timeout_s=60,
            what="serve's /readyz",
            alive=self.serve.check_alive,
        )
        timings["serve_ready_s"] = round(time.monotonic() - started, 2)
        self.agent.start()
        self.budget.wait_for(
            lambda: gpu_entry(self.api.get("/api/v1/state"), self.key),
            timeout_s=60,
            what=f"{self.key} in serve's /api/v1/state",
            alive=self.alive,
        )
        timings["gpu_reported_s"] = round(time.monotonic() - started, 2)
        self.budget.wait_for(
            lambda: self.api.get("/api/v1/plan"),
            timeout_s=60,
            what="serve's first plan",
            alive=self.alive,
        )
        timings["first_plan_s"] = round(time.monotonic() - started, 2)
        self.budget.wait_for(
            self.watcher.subscribed.is_set, timeout_s=10, what="the event subscription"
        )

    def alive(self) -> None:
        for daemon in (self.serve, self.agent):
            if daemon is not None:
                daemon.check_alive()

    # ------------------------------------------------------------------ looking

    def sample(self) -> Sample | None:
        entry = gpu_entry(self.api.get("/api/v1/state"), self.key)
        return None if entry is None else sample_of(entry)

    def watch(self, seconds: float) -> list[Sample]:
        """Samples of the GPU for `seconds` (bounded by the budget)."""
        samples: list[Sample] = []
        end = time.monotonic() + min(seconds, max(0.0, self.budget.left()))
        while time.monotonic() < end:
            sample = self.sample()
            if sample is not None:
                samples.append(sample)
            time.sleep(POLL_S)
        return samples

    def command(self, target: str, since_s: float) -> dict[str, Any] | None:
        """serve's newest switch command for this GPU to `target`, issued after `since_s`."""
        body = self.api.get("/api/v1/decisions?limit=200")
        if not isinstance(body, dict):
            return None
        found = [
            entry
            for entry in body.get("decisions") or ()
            if entry.get("kind") == "switch"
            and entry.get("gpu") == self.key
            and entry.get("workload") == target
            and float(entry.get("issued_at_s") or 0.0) >= since_s - 1.0
        ]
        return max(found, key=lambda e: float(e["issued_at_s"]), default=None)

    def miner_standin(self) -> dict[str, Any] | None:
        """The miner stand-in's own figures (achieved TFLOP/s), read from its API."""
        if self.miner_port is None:
            return None
        url = f"http://127.0.0.1:{self.miner_port}/summary"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                standin = json.loads(response.read()).get("standin")
        except (OSError, ValueError, AttributeError):
            return None
        return standin if isinstance(standin, dict) else None

    def events(self, command_id: str) -> list[dict[str, Any]]:
        return [] if self.watcher is None else self.watcher.for_command(command_id)

    def final_event(self, command_id: str) -> dict[str, Any] | None:
        """The agent's final event for `command_id`, waited for a few seconds at most."""

        def final() -> dict[str, Any] | None:
            events = self.events(command_id)
            return next((e for e in reversed(events) if e.get("state") not in OPEN_STATES), None)

        with contextlib.suppress(CheckFailedError, BudgetExceededError):
            return self.budget.wait_for(final, timeout_s=5, what="the final event", poll_s=0.05)
        return None

    def idle_settled(self, baseline_mib: float | None, *, since_s: float) -> float | None:
        """Seconds after `since_s` until serve shows the memory near idle and no process."""
        margin_mib: float = self.args.idle_margin_mib

        def near_idle() -> Sample | None:
            sample = self.sample()
            if sample is None or sample.memory_used_mib is None or sample.processes:
                return None
            if baseline_mib is not None and sample.memory_used_mib > baseline_mib + margin_mib:
                return None
            return sample

        with contextlib.suppress(CheckFailedError):
            sample = self.budget.wait_for(near_idle, timeout_s=30, what="the memory at idle")
            return round(sample.at_s - since_s, 2)
        return None

    # ------------------------------------------------------------------ tearing down

    def workload_pids(self) -> list[int]:
        """Live processes whose command line carries this run's id (the stand-ins)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if self.run_id.encode() in argv and b"--run-id" in argv and state != "Z":
                found.append(int(entry.name))
        return found

    def close(self) -> dict[str, Any]:
        """Stop the agent, end any workload of this run it left, then serve and the broker.

        Returns the exit codes and how many workloads were left running (0 after a run that
        ended idle: the agent's own stop leaves workloads running, as it must on a site)."""
        report: dict[str, Any] = {}
        if self.agent is not None:
            report["agent_exit_code"] = self.agent.stop()
        leftovers = self.workload_pids()
        report["workloads_left_running"] = len(leftovers)
        for pid in leftovers:  # the process driver gives each workload its own group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if self.serve is not None:
            report["serve_exit_code"] = self.serve.stop()
        if self.watcher is not None:
            self.watcher.stop()
        self.broker.stop()
        return report


# ------------------------------------------------------------------ one switch


@dataclass
class SwitchReport:
    target: str
    previous: str
    override_status: int | None = None
    override: dict[str, Any] | None = None
    command: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    override_to_final_event_s: float | None = None
    override_to_command_issued_s: float | None = None
    override_to_serve_finished_s: float | None = None
    reported_workload: str | None = None
    memory_min_during_mib: float | None = None
    after: dict[str, Any] = field(default_factory=dict)
    idle_memory_after_s: float | None = None
    timeline: list[list[object]] = field(default_factory=list)


def run_switch(
    site: Site, report: SwitchReport, previous_override: str | None, idle_mib: float | None
) -> None:
    """One override, the command it causes, and the GPU during and after it, into `report`
    (filled as it goes: an aborted run still shows how far the switch got)."""
    target = report.target
    started_s = time.time()
    status, body = site.api.call(
        "POST",
        "/api/v1/overrides",
        {"gpus": [site.key], "workload": target, "reason": "gpu_e2e", "ttl_s": 3600},
    )
    report.override_status = status
    report.override = body if isinstance(body, dict) else None
    if status not in {200, 201} or report.override is None:
        raise CheckFailedError(f"POST /api/v1/overrides for {target} answered {status}: {body}")
    if previous_override is not None:
        site.api.call("DELETE", f"/api/v1/overrides/{previous_override}")
    samples: list[Sample] = []

    def finished() -> dict[str, Any] | None:
        sample = site.sample()
        if sample is not None:
            samples.append(sample)
            report.timeline.append(sample.row(started_s))
        command = site.command(target, started_s)
        return command if command and command.get("state") not in OPEN_STATES else None

    command = site.budget.wait_for(
        finished, timeout_s=180, what=f"the switch to {target}", alive=site.alive
    )
    report.command = command
    command_id = str(command.get("command_id"))
    final = site.final_event(command_id)  # reaches our subscriber about when serve records it
    final_s = time.time() if final is None else float(final["at_s"])
    report.events = [
        {
            "state": event.get("state"),
            "step": event.get("step"),
            "after_s": round(float(event["at_s"]) - started_s, 3),
            "reason": event.get("reason") or None,
        }
        for event in site.events(command_id)
    ]
    if final is not None:
        report.override_to_final_event_s = round(final_s - started_s, 3)
    if command.get("issued_at_s") is not None:
        report.override_to_command_issued_s = round(float(command["issued_at_s"]) - started_s, 3)
    if command.get("finished_at_s") is not None:
        finished_s = float(command["finished_at_s"]) - started_s
        report.override_to_serve_finished_s = round(finished_s, 3)
    during = [s.memory_used_mib for s in samples if s.memory_used_mib is not None]
    report.memory_min_during_mib = _round(min(during), 0) if during else None
    if target == IDLE:
        report.idle_memory_after_s = site.idle_settled(idle_mib, since_s=final_s)
    after = site.watch(6.0 if target == MINE else 3.0)
    if target == MINE:
        after = after[len(after) // 3 :] or after  # the power ramp is not the steady state
    report.after = summarise(after)
    if target == MINE:
        report.after["standin"] = site.miner_standin()
    report.reported_workload = after[-1].workload if after else None
    report.timeline += [s.row(started_s) for s in after]


# ------------------------------------------------------------------ checks


@dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped
    detail: str


def checks_for(
    site: Site, idle: dict[str, Any], switches: list[SwitchReport], margin_mib: float
) -> list[Check]:
    checks: list[Check] = []
    for report in switches:
        command = report.command or {}
        state = command.get("state")
        checks.append(
            Check(
                f"{report.target}: switch done",
                state == "done",
                f"state {state}: {command.get('outcome')}",
            )
        )
        checks.append(
            Check(
                f"{report.target}: serve reports it",
                report.reported_workload == report.target,
                f"serve's /api/v1/state says {report.reported_workload}",
            )
        )
        steps = [e["step"] for e in report.events if e.get("state") == "progress"]
        want = list(EXPECTED_STEPS[report.target])
        checks.append(
            Check(
                f"{report.target}: agent events",
                report.override_to_final_event_s is not None and _in_order(want, steps),
                f"steps {steps}, want {want} in order; final event after "
                f"{report.override_to_final_event_s} s",
            )
        )
    by_target = {report.target: report for report in switches}
    idle_mib = idle.get("memory_used_mib")
    idle_w = idle.get("power_w_mean")
    if site.fake:
        reason = "fake backend: its readings do not follow process workloads"
        checks += [Check(name, None, reason) for name in ("AI memory held", "miner loads the GPU")]
    else:
        ai = by_target.get(AI)
        if ai is not None:
            held = ai.after.get("memory_used_mib")
            want_mib = 0.9 * site.args.ai_gib * 1024
            ok = held is not None and idle_mib is not None and held - idle_mib >= want_mib
            checks.append(
                Check(
                    "AI memory held",
                    ok,
                    f"{held} MiB used, idle {idle_mib} MiB, want {want_mib:.0f} MiB more",
                )
            )
        mine = by_target.get(MINE)
        if mine is not None:
            util = mine.after.get("utilization_pct_max")
            power = mine.after.get("power_w_max")
            ok = (
                util is not None
                and util >= 80
                and power is not None
                and idle_w is not None
                and power >= idle_w + 100
            )
            checks.append(
                Check(
                    "miner loads the GPU",
                    ok,
                    f"utilisation up to {util} %, power up to {power} W (idle {idle_w} W)",
                )
            )
    last = by_target.get(IDLE)
    if last is not None:
        after_mib = last.after.get("memory_used_mib")
        processes = last.after.get("processes")
        ok = (
            last.idle_memory_after_s is not None
            and after_mib is not None
            and idle_mib is not None
            and after_mib <= idle_mib + margin_mib
            and not processes
        )
        checks.append(
            Check(
                "memory back at idle after the stop",
                ok,
                f"{after_mib} MiB used ({processes} processes) "
                f"{last.idle_memory_after_s} s after the final event; idle baseline "
                f"{idle_mib} MiB, margin {margin_mib:.0f} MiB",
            )
        )
    return checks


def _in_order(want: list[str], steps: list[str]) -> bool:
    """Whether `want` appears in `steps` in this order (other steps may come between)."""
    remaining = iter(steps)
    return all(step in remaining for step in want)


# ------------------------------------------------------------------ the run


def gpu_identity(state: Any, key: str) -> dict[str, Any]:
    """What the GPU and its node told serve about themselves."""
    node, entry = find_gpu(state, key) or ({}, {})
    telemetry = entry.get("telemetry") or {}
    total = telemetry.get("memory_total_bytes")
    return {
        "gpu": key,
        "name": telemetry.get("name"),
        "uuid": telemetry.get("uuid"),
        "pci_bus_id": telemetry.get("pci_bus_id"),
        "memory_total_mib": None if total is None else round(total / MIB),
        "power_limit_w": telemetry.get("power_limit_w"),
        "health": telemetry.get("health"),
        "health_reasons": telemetry.get("health_reasons"),
        "nvml_backend": node.get("nvml_backend"),
        "driver_version": node.get("driver_version"),
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    budget = Budget(args.budget_s)
    summary: dict[str, Any] = {
        "check": "gpu_e2e",
        "mode": "fake" if args.fake else "nvml",
        "ok": False,
        "error": None,
        "started_at_s": round(time.time(), 3),
        "python": platform.python_version(),
        "machine": platform.node(),
        "startup": {},
        "switches": [],
    }
    switches: list[SwitchReport] = []
    checks: list[Check] = []
    site: Site | None = None
    try:
        site = Site(workdir, args, budget)
        summary["broker"] = site.broker.kind
        summary["node"] = site.node
        site.start(summary["startup"])
        summary["gpu"] = gpu_identity(site.api.get("/api/v1/state"), site.key)
        idle = summarise(site.watch(2.0))
        summary["idle_baseline"] = idle
        previous, override_id = IDLE, None
        for target in SEQUENCE:
            report = SwitchReport(target, previous)
            switches.append(report)
            run_switch(site, report, override_id, idle["memory_used_mib"])
            previous, override_id = target, (report.override or {}).get("id")
            if (report.command or {}).get("state") != "done":
                break  # the next switch would start from an unknown state
        summary["table"] = state_table(idle, switches)
        checks = checks_for(site, idle, switches, args.idle_margin_mib)
    except Exception as error:  # noqa: BLE001  (whatever went wrong, the summary is written)
        summary["error"] = f"{type(error).__name__}: {error}"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the tear-down is not to be cut short
        summary["switches"] = [asdict(report) for report in switches]
        summary["teardown"] = site.close() if site is not None else {}
    left = summary["teardown"].get("workloads_left_running")
    checks.append(
        Check(
            "no workload left running",
            left == 0,
            f"{left} stand-in processes of this run were still running after the agent stopped",
        )
    )
    summary["checks"] = [asdict(check) for check in checks]
    summary["failed_checks"] = [check.name for check in checks if check.ok is False]
    summary["ok"] = summary["error"] is None and not summary["failed_checks"]
    summary["took_s"] = round(time.monotonic() - budget.started, 2)
    return summary


def write_logs(workdir: Path, path: Path) -> None:
    """The configs, the daemons' and workloads' logs and serve's store, as one archive."""
    with tarfile.open(path, "w:gz") as archive:
        for item in sorted(workdir.rglob("*")):
            if item.is_file() and item.suffix in {".toml", ".log", ".sqlite3", ".conf", ".json"}:
                archive.add(item, arcname=str(item.relative_to(workdir)))


def _terminated(signo: int, _frame: object) -> None:
    signal.signal(signo, signal.SIG_IGN)  # once: the tear-down itself must not be cut short
    raise BudgetExceededError(f"signal {signo} before the end")


def state_table(idle: dict[str, Any], switches: list[SwitchReport]) -> list[dict[str, Any]]:
    """One row per state the GPU settled in: what serve's telemetry showed there."""
    rows = [("idle (before)", idle)]
    rows += [(report.target, report.after) for report in switches]
    keys = ("memory_used_mib", "power_w_mean", "power_w_max", "utilization_pct_max",
            "temperature_c_max", "processes")  # fmt: skip
    return [{"state": name, **{key: values.get(key) for key in keys}} for name, values in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", action="store_true", help="fake GPU backend, no CUDA")
    parser.add_argument("--out", type=Path, default=None, help="default: $OUT or ./gpu-e2e-out")
    parser.add_argument("--budget-s", type=float, default=170.0, help="the whole run's limit")
    parser.add_argument(
        "--ai-gib", type=float, default=20.0, help="GPU memory the AI stand-in holds"
    )
    parser.add_argument("--gpu-index", type=int, default=0, help="the NVML index to switch")
    parser.add_argument("--idle-margin-mib", type=float, default=256.0)
    parser.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto")
    args = parser.parse_args()
    out = args.out or Path(os.environ.get("OUT") or "gpu-e2e-out")
    signal.signal(signal.SIGTERM, _terminated)  # `timeout` stops it: tear down all the same
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-e2e-") as tmp:
        workdir = Path(tmp)
        summary = run(args, workdir)
        write_logs(workdir, out / "gpu_e2e_logs.tar.gz")
    summary["logs"] = str(out / "gpu_e2e_logs.tar.gz")
    text = json.dumps(summary, indent=2)
    (out / "gpu_e2e.json").write_text(text + "\n")
    for check in summary["checks"]:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[check["ok"]]
        print(f"{mark} {check['name']}: {check['detail']}")
    if summary["error"]:
        print(f"error: {summary['error']}")
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
