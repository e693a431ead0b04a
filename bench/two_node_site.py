"""Two-node site: is exactly one command sent per needed switch?

Run as `python bench/two_node_site.py --runs 24 [--moves 4] [--seed 7] [--json]` from the
root of the checkout whose code is to be measured: the daemons are started as
`python -m orchestrator ...` with that directory as their working directory and first on
`PYTHONPATH` (`--repo DIR` names another), and the script checks and prints which code they
import. It runs against the code before and after the "one truth per GPU" change alike (it
reads only the store's first-schema tables and API fields both have). `--agent-repo DIR`
runs the agents from another checkout (a site half-way through an upgrade); `--keep DIR`
keeps each run's configs, logs and store; `--journal` prints each run's commands (a run
that fails prints them anyway).

The site, per run (everything fresh, in a temporary directory, all of it child processes
stopped by their own PIDs, even on failure):

- a private mosquitto on a free loopback port (`orchestrator.demo.broker.MosquittoBroker`);
- `python -m orchestrator serve -c serve.toml` and two `python -m orchestrator agent -c ...`
  (each config checked first with `orchestrator config check`): node `node-a` with 4 fake
  RTX 4090s (telemetry every 2 s, starting on `mine:kawpow`) and node `node-b` with 4 fake
  A100-SXM4-80GB (telemetry every 3 s, starting `idle`). Workloads use the `sim` driver at
  `sim_time_scale = 0.5`: a model loads in 5 s, drains in 1 s and stops in 1 s, a miner
  shows hashrate 2 s after its start and stops in 0.5 s. A switch onto an AI contract
  therefore takes longer than a telemetry interval: telemetry can trail a switch;
- serve's market: the kawpow hashprice from an `http_json` feed served by this script
  (`{"price": ...}`, polled every 0.5 s) and a static power price of $0.05/kWh. Contracts:
  `acme`, reserved, 3 committed A100s ($1.40/GPU-h, $6/GPU-h penalty, always on), and
  `spot`, on demand ($0.60/GPU-h at 50 % utilisation, at most 4 GPUs, 20 GiB or more).
  Planner: every 1 s, min dwell 3 s, hysteresis $0.02/GPU-h, horizon 1 h.

  Prices (usd per H/s per day) and what they make the planner want:

  | level | hashprice | RTX 4090 (115 MH/s) | A100 #4 (60 MH/s) | 3 A100s |
  |---|---|---|---|---|
  | low  | 3e-8   | spot (3 of them; the 4th mines: spot takes at most 4) | spot | acme |
  | mid  | 8e-8   | mine | spot | acme |
  | high | 1.5e-7 | mine | mine | acme |

  The reserved contract pays far more than mining at every level, so it always keeps 3
  A100s; each move between two levels flips some GPUs and leaves others alone.

- the run starts at `mid`; once the first plan's switches have settled, the hashprice makes
  `--moves` moves, a fixed sequence drawn from `--seed` and the run number (each move goes
  to another level), waiting for the fleet to settle after each; then everything stops.

Settled: no command open in the store (`publishing` / `in_flight`), every GPU's reported
workload (`/api/v1/state`) equal to its planned workload, and no command issued or ended
for `QUIET_S` (the slower node's telemetry interval plus 1.5 s: long enough for a plan to
read the telemetry that follows the last switch and, if it would, order a needless one).
Every wait is bounded (`SETTLE_TIMEOUT_S` per phase, `RUN_TIMEOUT_S` per run).

What is counted (from serve's store, opened read-only after serve stopped: tables
`commands` and `plans`; from `/api/v1/state` and `/metrics`, polled every 0.25 s; and from
`/api/v1/decisions`, read once at the end as a cross-check of the command count):

- **needed switch**: the runs are cut into segments, one per settled state: segment 0 from
  the start (the agents' initial workloads) to the first settled state, segment k from the
  k-th price move to the settled state after it. For each GPU model and workload, count the
  GPUs of that model running that workload in the settled state before and after; the
  needed switches of the segment are the sum over models and workloads of
  max(0, after - before): the fewest GPUs that must change workload to get from one
  settled fleet to the next. GPUs of one model are interchangeable, so moving one A100 off
  the reserved contract and another onto it is two switches, none of them needed.
- **commands**: rows of `commands` (every command serve wrote, whatever became of it);
  each belongs to the segment in which it was issued. The target: commands == needed.
- **plan-wanted change** (per GPU): a change of the GPU's `planned_workload` in the polled
  `/api/v1/state` (or its first planned workload) to a workload other than the one the GPU
  runs. `commands per wanted change` is commands / wanted changes; a GPU with more commands
  than wanted changes was ordered twice for one decision. (A plan that lived less than the
  0.25 s poll is not seen; the planner plans once a second unless a price or the fleet
  changed.)
- **needless command**: (a) its target is what the GPU already ran by the agent's latest
  word when it was issued: the target of the GPU's last command that ended `done` (the
  previous workload for `rolled_back`), or, where that command did not end with the
  agent's word (superseded, timed out), the newest workload its telemetry reported;
  (b) a second command for the same GPU and target while the first was in flight, or
  within `JUST_DONE_S` (the slower telemetry interval plus the planner interval) after it
  ended `done`.
- **not done**: commands whose state at the end is not `done` (superseded, timed out,
  rolled back, failed, refused, unsent, or still open).
- **SLA short**: after `acme` first had 3 A100s serving, the seconds during which it had
  fewer, three ways: *telemetry* (polled `/api/v1/state`: node-b GPUs reported on
  `ai:acme` and healthy, the fields both versions have), *serve* (the
  `orchestrator_sla_serving_gpus{contract="acme"}` gauge, what serve's SLA accrual
  counts), and *journal* (from the store: an A100 serves from the end (`done`) of its
  command onto `ai:acme` until a command for it with another target is issued, when the
  agent begins to drain it).

A run passes when commands == needed switches, with no needless command, every command
`done`, no SLA shortfall (any view) and every phase settled. The summary gives min /
median / max over runs of each figure and how many runs passed.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SITE = "twonode"
A100 = "NVIDIA A100-SXM4-80GB"
RTX4090 = "NVIDIA GeForce RTX 4090"
RESERVED, SPOT = "acme", "spot"
ACME, MINE = f"ai:{RESERVED}", "mine:kawpow"
COMMITTED = 3
LEVELS = {"low": 3e-8, "mid": 8e-8, "high": 1.5e-7}
START_LEVEL = "mid"
TELEMETRY_S = {"node-a": 2.0, "node-b": 3.0}
PLANNER_INTERVAL_S = 1.0
QUIET_S = max(TELEMETRY_S.values()) + 1.5
JUST_DONE_S = max(TELEMETRY_S.values()) + PLANNER_INTERVAL_S
SETTLE_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 150.0
POLL_S = 0.25
Checkout = tuple[Path, dict[str, str]]  # a checkout's root and the environment to run it in
OPEN_STATES = ("publishing", "in_flight")
SERVING_HEALTH = ("ok", "degraded")


# ---------------------------------------------------------------------- configs


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"no TOML for {value!r}")


def toml_text(document: dict[str, Any]) -> str:
    """Top-level tables as `[name]`, lists of tables as `[[name]]`, deeper values inline."""
    lines: list[str] = []
    for name, value in document.items():
        if isinstance(value, dict):
            lines.append(f"[{_toml_key(name)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines.append(f"[[{_toml_key(name)}]]")
                lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()]
        else:
            lines.insert(0, f"{_toml_key(name)} = {_toml_value(value)}")
        lines.append("")
    text = "\n".join(lines)
    if tomllib.loads(text) != document:
        raise AssertionError("the TOML writer lost something")
    return text


def serve_document(
    *, broker_port: int, http_port: int, price_port: int, store: Path
) -> dict[str, Any]:
    return {
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "site": SITE, "client_id": "serve"},
        "http": {"host": "127.0.0.1", "port": http_port},
        "log": {"level": "info", "format": "json"},
        "ingest": {
            "node_offline_after_s": 3 * max(TELEMETRY_S.values()),
            "staleness_check_interval_s": 0.5,
        },
        "store": {"path": str(store)},
        "dispatch": {"command_timeout_s": 60.0, "command_ttl_s": 30.0},
        "sla": {"billing_period": "day", "accrual_interval_s": 1.0},
        "market": {
            "backoff_initial_s": 0.5,
            "backoff_max_s": 2.0,
            "feeds": [
                {
                    "type": "http_json",
                    "name": "kawpow-bench",
                    "url": f"http://127.0.0.1:{price_port}/hashprice",
                    "json_path": "price",
                    "unit": "usd_per_hs_day",
                    "algorithm": "kawpow",
                    "interval_s": 0.5,
                    "timeout_s": 2.0,
                    "staleness_s": 120.0,
                },
                {"type": "power_static", "usd_per_kwh": 0.05},
            ],
        },
        "mining_profiles": [
            {
                "id": "kawpow",
                "algorithm": "kawpow",
                "pool_fee_fraction": 0.01,
                "switch_downtime_s": 2.0,
                "benchmarks": {
                    RTX4090: {"hashrate_hs": 115e6, "power_w": 290.0},
                    A100: {"hashrate_hs": 60e6, "power_w": 280.0},
                },
            }
        ],
        "contracts": {
            "reserved": [
                {
                    "id": RESERVED,
                    "rate_usd_per_gpu_hour": 1.40,
                    "committed_gpus": COMMITTED,
                    "eligible_models": [A100],
                    "penalty_usd_per_gpu_hour": 6.0,
                    "availability_target_fraction": 0.99,
                    "lead_time_s": 0.0,
                    "switch_downtime_s": 5.0,
                    "power_w": {A100: 330.0},
                }
            ],
            "on_demand": [
                {
                    "id": SPOT,
                    "rate_usd_per_gpu_hour": 0.60,
                    "expected_utilisation_fraction": 0.5,
                    "max_gpus": 4,
                    "min_memory_gib": 20.0,
                    "switch_downtime_s": 5.0,
                }
            ],
        },
        "planner": {
            "interval_s": PLANNER_INTERVAL_S,
            "horizon_s": 3600.0,
            "hysteresis_margin_usd_per_gpu_hour": 0.02,
            "min_dwell_s": 3.0,
            "price_move_replan_fraction": 0.05,
        },
    }


def agent_document(
    node: str, *, model: str, hashrate_hs: float, initial: str, broker_port: int, state: Path
) -> dict[str, Any]:
    ai_sim = {"start_delay_s": 10.0, "stop_delay_s": 2.0}  # x 0.5: 5 s load, 1 s stop
    profiles = [
        {
            "id": "kawpow",
            "kind": "mining",
            "driver": "sim",
            "algorithm": "kawpow",
            "expected_hashrate_hs": hashrate_hs,
            "expected_power_w": 300.0,
            "start_timeout_s": 30.0,
            "stop_timeout_s": 10.0,
            "drain_timeout_s": 0.0,
            "sim": {"start_delay_s": 4.0, "stop_delay_s": 1.0},  # x 0.5: 2 s, 0.5 s
        },
        *(
            {
                "id": f"llm-{contract}",
                "kind": "ai",
                "driver": "sim",
                "serves_contracts": [contract],
                "expected_power_w": 320.0,
                "start_timeout_s": 60.0,
                "stop_timeout_s": 10.0,
                "drain_timeout_s": 5.0,
                "sim": ai_sim,
            }
            for contract in (RESERVED, SPOT)
        ),
    ]
    return {
        "node": {"name": node},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "site": SITE, "client_id": node},
        "http": {"host": "127.0.0.1", "port": 0},
        "log": {"level": "info", "format": "json"},
        "telemetry": {"interval_s": TELEMETRY_S[node]},
        "executor": {
            "state_dir": str(state / "state"),
            "log_dir": str(state / "logs"),
            "sim_time_scale": 0.5,
            "verify_free_timeout_s": 5.0,
        },
        "gpu": {
            "backend": "fake",
            "fake": {"gpus": 4, "models": [model], "seed": 1, "initial_workloads": [initial]},
        },
        "profiles": profiles,
    }


# ---------------------------------------------------------------------- processes


class Children:
    """Every child this script starts, stopped by its own PID (also at exit)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.broker: Any = None
        atexit.register(self.stop_all)

    def start(
        self, name: str, argv: list[str], *, cwd: Path, env: dict[str, str], log: Path
    ) -> Any:
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((name, proc))
        return proc

    def stop(self, name: str, *, timeout_s: float = 10.0) -> None:
        for label, proc in self.procs:
            if label == name and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=timeout_s)

    def stop_all(self) -> None:
        for name, _ in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(name)
        self.procs.clear()
        if self.broker is not None:
            with contextlib.suppress(Exception):
                self.broker.stop_sync()
            self.broker = None


def _on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------- price feed


class PriceServer:
    """The hashprice feed: `{"price": <usd per H/s per day>}` on a free loopback port."""

    def __init__(self, value: float) -> None:
        self.value = value
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"price": server.value}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------- polling serve


def http_json(url: str, *, timeout_s: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (loopback)
        return json.loads(response.read())


def http_text(url: str, *, timeout_s: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (loopback)
        return str(response.read().decode())


_SERVING = re.compile(r'^orchestrator_sla_serving_gpus\{contract="acme"\} (\S+)$', re.M)


@dataclass
class Sample:
    t: float
    generation: int | None
    gpus: dict[str, tuple[str, str, str | None]]  # gpu -> (reported, state, planned)
    serving_serve: int | None


@dataclass
class Monitor:
    base: str
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                state = http_json(f"{self.base}/api/v1/state")
                gpus = {
                    g["gpu"]: (g["workload"], g["state"], g.get("planned_workload"))
                    for node in state["nodes"]
                    for g in node["gpus"]
                }
                match = _SERVING.search(http_text(f"{self.base}/metrics"))
                serving = int(float(match.group(1))) if match else None
                self.samples.append(
                    Sample(time.time(), state.get("plan_generation"), gpus, serving)
                )
            except (OSError, ValueError, KeyError):
                self.errors += 1
            self.stop.wait(max(0.0, POLL_S - (time.monotonic() - started)))

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


# ---------------------------------------------------------------------- one run


@dataclass
class Command:
    command_id: str
    generation: int
    gpu: str
    workload: str
    previous: str | None
    issued_at_s: float
    state: str
    finished_at_s: float | None
    outcome: str


def read_commands(db_path: Path) -> tuple[list[Command], int]:
    """The store's commands (oldest first) and number of plans, read-only."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5.0)
    try:
        rows = db.execute(
            "SELECT command_id, generation, gpu, workload, previous, issued_at_s, state,"
            " finished_at_s, outcome FROM commands ORDER BY issued_at_s"
        ).fetchall()
        plans = db.execute("SELECT COUNT(*) FROM plans").fetchone()[0]
    finally:
        db.close()
    return [Command(*row) for row in rows], int(plans)


def quiet_for(db_path: Path, now_s: float) -> float | None:
    """Seconds since the last command was issued or ended; None while one is open."""
    try:
        commands, _ = read_commands(db_path)
    except sqlite3.Error:
        return None
    if any(c.state in OPEN_STATES for c in commands):
        return None
    last = max(
        [0.0, *(c.issued_at_s for c in commands), *(c.finished_at_s or 0.0 for c in commands)]
    )
    return now_s - last


def wait_settled(
    monitor: Monitor, db_path: Path, *, after_s: float, deadline_s: float
) -> tuple[bool, Sample | None]:
    """Wait until settled (see the module docstring); bounded by SETTLE_TIMEOUT_S."""
    limit = min(deadline_s, time.time() + SETTLE_TIMEOUT_S)
    while time.time() < limit:
        time.sleep(0.25)
        sample = monitor.latest()
        if sample is None or sample.t < after_s or len(sample.gpus) != 8:
            continue
        if any(
            planned is None or planned != reported for reported, _, planned in sample.gpus.values()
        ):
            continue
        quiet = quiet_for(db_path, time.time())
        if quiet is not None and quiet >= QUIET_S and time.time() - after_s >= QUIET_S:
            return True, sample
    return False, monitor.latest()


def wait_for(predicate: Any, *, timeout_s: float, what: str, proc_check: Any = None) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc_check is not None:
            proc_check()
        with contextlib.suppress(OSError, ValueError, KeyError):
            if predicate():
                return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")


def move_sequence(seed: int, run: int, moves: int) -> list[str]:
    rng = random.Random(seed * 1000 + run)  # noqa: S311  (a benchmark's sequence)
    sequence, level = [], START_LEVEL
    for _ in range(moves):
        level = rng.choice([name for name in LEVELS if name != level])
        sequence.append(level)
    return sequence


def write_configs(
    work: Path,
    *,
    broker_port: int,
    http_port: int,
    price_port: int,
    code: dict[str, Checkout],
) -> dict[str, Path]:
    """serve.toml and the two agent.toml, each passed through `orchestrator config check`."""
    files = {"serve": work / "serve.toml"}
    document = serve_document(
        broker_port=broker_port,
        http_port=http_port,
        price_port=price_port,
        store=work / "serve.sqlite3",
    )
    files["serve"].write_text(toml_text(document))
    for node, model, hashrate, initial in (
        ("node-a", "rtx-4090", 115e6, MINE),
        ("node-b", "a100-sxm4-80gb", 60e6, "idle"),
    ):
        state = work / node
        state.mkdir()
        files[node] = state / "agent.toml"
        document = agent_document(
            node,
            model=model,
            hashrate_hs=hashrate,
            initial=initial,
            broker_port=broker_port,
            state=state,
        )
        files[node].write_text(toml_text(document))
    for name, path in files.items():
        kind = "serve" if name == "serve" else "agent"
        argv = [sys.executable, "-m", "orchestrator", "config", "check", str(path), "--kind", kind]
        repo, env = code[kind]
        check = subprocess.run(
            argv, cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"config check {name}: {check.stdout}{check.stderr}")
    return files


class SiteRun:
    """One run: the site up, the start and the price moves, each waited out; then down."""

    def __init__(self, run: int, args: argparse.Namespace, code: dict[str, Checkout]) -> None:
        self.run = run
        self.args = args
        self.code = code
        self.started = time.time()
        self.deadline = self.started + RUN_TIMEOUT_S
        self.load = os.getloadavg()
        self.work = Path(tempfile.mkdtemp(prefix=f"two-node-site-{run:02d}-", dir=args.keep))
        self.store = self.work / "serve.sqlite3"
        self.children = Children()
        self.price = PriceServer(LEVELS[START_LEVEL])
        self.monitor: Monitor | None = None
        self.poller: threading.Thread | None = None
        self.phases: list[dict[str, Any]] = []
        self.initial: dict[str, str] = {}
        self.decisions_switches: int | None = None
        self.ended_at = self.started

    def alive(self) -> None:
        for name, proc in self.children.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} (see {self.work})")

    def start(self) -> str:
        """Broker, configs, serve (ready), the monitor, both agents; serve's base URL."""
        from orchestrator.demo.broker import MosquittoBroker, free_port  # noqa: PLC0415

        broker = MosquittoBroker(self.work / "broker", port=free_port())
        broker.start_sync()
        self.children.broker = broker
        http_port = free_port()
        base = f"http://127.0.0.1:{http_port}"
        files = write_configs(
            self.work,
            broker_port=broker.port,
            http_port=http_port,
            price_port=self.price.port,
            code=self.code,
        )
        py = [sys.executable, "-m", "orchestrator"]
        for name, command in (("serve", "serve"), ("node-a", "agent"), ("node-b", "agent")):
            repo, env = self.code[command]
            self.children.start(
                name,
                [*py, command, "-c", str(files[name])],
                cwd=repo,
                env=env,
                log=self.work / f"{name}.log",
            )
            if name == "serve":
                wait_for(
                    lambda: http_json(f"{base}/readyz").get("ready"),
                    timeout_s=30,
                    what="serve /readyz",
                    proc_check=self.alive,
                )
                self.monitor = Monitor(base)
                self.poller = threading.Thread(target=self.monitor.run, daemon=True)
                self.poller.start()
        return base

    def phase(self, level: str, moved_at: float) -> None:
        assert self.monitor is not None
        settled, sample = wait_settled(
            self.monitor, self.store, after_s=moved_at, deadline_s=self.deadline
        )
        self.phases.append(
            {
                "level": level,
                "moved_at_s": moved_at,
                "settled": settled,
                "settled_at_s": time.time(),
                "workloads": _workloads(sample),
            }
        )

    def drive(self) -> None:
        base = self.start()
        monitor = self.monitor
        assert monitor is not None
        # the agents' initial workloads, as reported, before any switch
        wait_for(
            lambda: (s := monitor.latest()) is not None and len(s.gpus) == 8,
            timeout_s=30,
            what="8 GPUs in /api/v1/state",
            proc_check=self.alive,
        )
        first = monitor.latest()
        assert first is not None
        self.initial = {gpu: reported for gpu, (reported, _, _) in first.gpus.items()}
        self.phase(START_LEVEL, self.started)
        for level in move_sequence(self.args.seed, self.run, self.args.moves):
            self.alive()
            if time.time() > self.deadline - 5:
                raise RuntimeError(f"run over {RUN_TIMEOUT_S:g} s before the move to {level}")
            moved_at = time.time()
            self.price.value = LEVELS[level]
            self.phase(level, moved_at)
        with contextlib.suppress(OSError, ValueError, KeyError):
            decisions = http_json(f"{base}/api/v1/decisions?limit=1000", timeout_s=5)["decisions"]
            self.decisions_switches = sum(1 for d in decisions if d.get("kind") == "switch")
        self.ended_at = time.time()

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop.set()
        if self.poller is not None:
            self.poller.join(timeout=5)
        for name in ("node-a", "node-b", "serve"):  # agents first: serve hears them go
            with contextlib.suppress(Exception):
                self.children.stop(name, timeout_s=15)
        self.children.stop_all()
        self.price.close()

    def result(self) -> dict[str, Any]:
        commands, plans = read_commands(self.store)
        result = analyse(
            run=self.run,
            initial=self.initial,
            phases=self.phases,
            commands=commands,
            monitor=self.monitor,
            ended_at=self.ended_at,
        )
        result.update(
            plans=plans,
            decisions_switches=self.decisions_switches,
            decisions_match=self.decisions_switches == len(commands),
            load_avg_1m=round(self.load[0], 2),
            wall_s=round(self.ended_at - self.started, 1),
            workdir=str(self.work) if self.args.keep else None,
        )
        return result


def run_once(run: int, args: argparse.Namespace, code: dict[str, Checkout]) -> dict[str, Any]:
    site = SiteRun(run, args, code)
    try:
        try:
            site.drive()
        finally:
            site.stop()
        return site.result()
    finally:
        if args.keep is None:
            shutil.rmtree(site.work, ignore_errors=True)


def _workloads(sample: Sample | None) -> dict[str, str]:
    return {gpu: reported for gpu, (reported, _, _) in (sample.gpus.items() if sample else ())}


# ---------------------------------------------------------------------- analysis


def model_of(gpu: str) -> str:
    return A100 if gpu.startswith("node-b:") else RTX4090


def needed_between(before: dict[str, str], after: dict[str, str]) -> tuple[int, int]:
    """(needed switches, GPUs whose own workload changed) from one settled fleet to the next."""
    count_before = Counter((model_of(g), w) for g, w in before.items())
    count_after = Counter((model_of(g), w) for g, w in after.items())
    needed = sum(max(0, n - count_before.get(key, 0)) for key, n in count_after.items())
    changed = sum(1 for g, w in after.items() if before.get(g) != w)
    return needed, changed


def short_seconds(points: list[tuple[float, int]], end_s: float) -> tuple[float, int | None]:
    """Seconds with fewer than COMMITTED after the count first reached it; the minimum then."""
    short, first, low = 0.0, None, None
    for (t, n), nxt in zip(points, [*points[1:], (end_s, 0)], strict=True):
        if first is None and n >= COMMITTED:
            first = t
        if first is not None:
            low = n if low is None else min(low, n)
            if n < COMMITTED:
                short += max(0.0, nxt[0] - t)
    return short, low


def journal_serving(commands: list[Command]) -> list[tuple[float, int]]:
    """(time, A100s serving acme) by the journal: from a done onto acme to the next command."""
    events: list[tuple[float, int]] = []
    by_gpu: dict[str, list[Command]] = defaultdict(list)
    for c in commands:
        if c.gpu.startswith("node-b:"):
            by_gpu[c.gpu].append(c)
    for cs in by_gpu.values():
        serving = False
        for c in cs:  # by issue time
            if serving and c.workload != ACME:
                events.append((c.issued_at_s, -1))  # the agent drains it for another target
                serving = False
            elif not serving and c.workload == ACME and c.state == "done":
                assert c.finished_at_s is not None
                events.append((c.finished_at_s, +1))
                serving = True
    points, n = [], 0
    for t, delta in sorted(events):
        n += delta
        points.append((t, n))
    return points


def analyse(
    *,
    run: int,
    initial: dict[str, str],
    phases: list[dict[str, Any]],
    commands: list[Command],
    monitor: Monitor | None,
    ended_at: float,
) -> dict[str, Any]:
    samples = monitor.samples if monitor else []
    # segments: [moved_at of phase k, moved_at of phase k+1)
    bounds = [p["moved_at_s"] for p in phases[1:]] + [math.inf]
    segments: list[dict[str, Any]] = []
    previous = initial
    needed_total = changed_total = 0
    for phase, upper in zip(phases, bounds, strict=True):
        after = phase["workloads"] or previous
        needed, changed = needed_between(previous, after)
        lower = phase["moved_at_s"] if segments else -math.inf
        issued = [c for c in commands if lower <= c.issued_at_s < upper]
        segments.append(
            {
                "level": phase["level"],
                "settled": phase["settled"],
                "needed": needed,
                "gpus_changed": changed,
                "commands": len(issued),
                "settle_s": round(phase["settled_at_s"] - phase["moved_at_s"], 1),
            }
        )
        needed_total += needed
        changed_total += changed
        previous = after

    # what each GPU ran by the agent's latest word, as (time, workload) changes
    reported_changes: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for s in samples:
        for gpu, (reported, _, _) in s.gpus.items():
            history = reported_changes[gpu]
            if reported != "unknown" and (not history or history[-1][1] != reported):
                history.append((s.t, reported))

    def actual_at(gpu: str, t: float) -> str | None:
        ended = [
            c
            for c in commands
            if c.gpu == gpu and c.finished_at_s is not None and c.finished_at_s <= t
        ]
        last = max(ended, key=lambda c: c.finished_at_s or 0.0, default=None)
        if last is not None and last.state == "done":
            return last.workload
        if last is not None and last.state == "rolled_back":
            return last.previous
        seen = [w for (ts, w) in reported_changes.get(gpu, []) if ts <= t]
        return seen[-1] if seen else initial.get(gpu)

    needless_a = needless_b = 0
    needless_list = []
    for c in commands:
        a = actual_at(c.gpu, c.issued_at_s) == c.workload
        b = any(
            d.gpu == c.gpu
            and d.workload == c.workload
            and d.issued_at_s < c.issued_at_s
            and (
                d.finished_at_s is None
                or d.finished_at_s > c.issued_at_s
                or (d.state == "done" and c.issued_at_s - d.finished_at_s <= JUST_DONE_S)
            )
            for d in commands
            if d is not c
        )
        needless_a += a
        needless_b += b
        if a or b:
            needless_list.append(
                {
                    "gpu": c.gpu,
                    "target": c.workload,
                    "at_s": round(c.issued_at_s - phases[0]["moved_at_s"], 2),
                    "why": "+".join(w for w, f in (("runs_it", a), ("repeat", b)) if f),
                }
            )

    # plan-wanted changes per GPU, from the polled plans
    wanted: Counter[str] = Counter()
    last_planned: dict[str, str | None] = {}
    for s in samples:
        for gpu, (reported, _, planned) in s.gpus.items():
            if planned is None or planned == last_planned.get(gpu):
                continue
            if planned != reported or gpu in last_planned:
                wanted[gpu] += 1
            last_planned[gpu] = planned
    per_gpu = Counter(c.gpu for c in commands)
    gpus_over = sorted(g for g in per_gpu if per_gpu[g] > wanted.get(g, 0))

    not_done = Counter(c.state for c in commands if c.state != "done")

    telemetry_points = [
        (
            s.t,
            sum(
                1
                for g, (w, st, _) in s.gpus.items()
                if g.startswith("node-b:") and w == ACME and st in SERVING_HEALTH
            ),
        )
        for s in samples
    ]
    serve_points = [(s.t, s.serving_serve) for s in samples if s.serving_serve is not None]
    short_tel, low_tel = short_seconds(telemetry_points, ended_at)
    short_serve, low_serve = short_seconds(serve_points, ended_at)
    short_journal, low_journal = short_seconds(journal_serving(commands), ended_at)

    total = len(commands)
    needless = len(needless_list)
    settled_all = all(p["settled"] for p in phases)
    passed = (
        total == needed_total
        and needless == 0
        and not not_done
        and short_tel == 0
        and short_serve == 0
        and short_journal == 0
        and settled_all
    )
    return {
        "run": run,
        "passed": passed,
        "moves": [p["level"] for p in phases[1:]],
        "commands": total,
        "needed": needed_total,
        "excess": total - needed_total,
        "commands_per_needed": round(total / needed_total, 3) if needed_total else None,
        "gpus_changed": changed_total,
        "wanted_changes": sum(wanted.values()),
        "commands_per_wanted": round(total / sum(wanted.values()), 3) if wanted else None,
        "gpus_over_wanted": gpus_over,
        "needless": needless,
        "needless_runs_it": needless_a,
        "needless_repeat": needless_b,
        "needless_detail": needless_list,
        "not_done": sum(not_done.values()),
        "not_done_states": dict(not_done),
        "sla_short_s_telemetry": round(short_tel, 2),
        "sla_short_s_serve": round(short_serve, 2),
        "sla_short_s_journal": round(short_journal, 2),
        "sla_min_serving_telemetry": low_tel,
        "sla_min_serving_journal": low_journal,
        "sla_min_serving_serve": low_serve,
        "settled_all": settled_all,
        "segments": segments,
        "polls": len(samples),
        "poll_errors": monitor.errors if monitor else 0,
        "journal": [
            {
                "gpu": c.gpu,
                "target": c.workload,
                "previous": c.previous,
                "generation": c.generation,
                "issued_s": round(c.issued_at_s - phases[0]["moved_at_s"], 2),
                "state": c.state,
                "ended_s": None
                if c.finished_at_s is None
                else round(c.finished_at_s - phases[0]["moved_at_s"], 2),
                "outcome": c.outcome,
            }
            for c in commands
        ],
    }


# ---------------------------------------------------------------------- report

FIGURES = (
    "commands",
    "needed",
    "excess",
    "commands_per_needed",
    "wanted_changes",
    "commands_per_wanted",
    "needless",
    "not_done",
    "sla_short_s_telemetry",
    "sla_short_s_serve",
    "sla_short_s_journal",
    "wall_s",
    "load_avg_1m",
)


def line(result: dict[str, Any]) -> str:
    seg = " ".join(f"{s['level']}:{s['commands']}/{s['needed']}" for s in result["segments"])
    flags = "" if result["settled_all"] else " UNSETTLED"
    nd = ",".join(f"{k}={v}" for k, v in result["not_done_states"].items())
    return (
        f"run {result['run']:2d} {'PASS' if result['passed'] else 'FAIL'}{flags}: "
        f"commands {result['commands']} needed {result['needed']} "
        f"(segments cmds/needed {seg}); wanted {result['wanted_changes']}; "
        f"needless {result['needless']} (runs-it {result['needless_runs_it']}, repeat "
        f"{result['needless_repeat']}); not done {result['not_done']}{' ' + nd if nd else ''}; "
        f"SLA short s tel/serve/journal {result['sla_short_s_telemetry']}/"
        f"{result['sla_short_s_serve']}/{result['sla_short_s_journal']} "
        f"(min {result['sla_min_serving_telemetry']}/{result['sla_min_serving_serve']}/"
        f"{result['sla_min_serving_journal']}); {result['wall_s']} s, load {result['load_avg_1m']}"
    )


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(results), "passed": sum(r["passed"] for r in results)}
    for name in FIGURES:
        values = [r[name] for r in results if r.get(name) is not None]
        if values:
            out[name] = {
                "min": min(values),
                "median": statistics.median(values),
                "max": max(values),
                "sum": round(sum(values), 3),
            }
    out["runs_with_needless"] = sum(1 for r in results if r["needless"])
    out["runs_with_excess"] = sum(1 for r in results if r["excess"])
    out["runs_with_sla_short"] = sum(
        1
        for r in results
        if r["sla_short_s_telemetry"] or r["sla_short_s_serve"] or r["sla_short_s_journal"]
    )
    out["runs_unsettled"] = sum(1 for r in results if not r["settled_all"])
    out["not_done_states"] = dict(sum((Counter(r["not_done_states"]) for r in results), Counter()))
    return out


_PROBE = (
    "import orchestrator, pathlib; p = pathlib.Path(orchestrator.__file__).parent;"
    " print(p); print((p / 'central' / 'gpubook.py').exists())"
)


def code_under_test(repo: Path, env: dict[str, str]) -> dict[str, Any]:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE,
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    path, gpubook = probe.stdout.split()
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--", "orchestrator"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.strip()
    return {
        "orchestrator": path,
        "gpubook": gpubook == "True",
        "commit": commit,
        "orchestrator_modified": bool(dirty),
    }


def print_summary(s: dict[str, Any]) -> None:
    print("\nsummary over runs (min / median / max, sum):", file=sys.stderr)
    for name in FIGURES:
        if name in s:
            v = s[name]
            print(
                f"  {name:24s} {v['min']} / {v['median']} / {v['max']}  (sum {v['sum']})",
                file=sys.stderr,
            )
    for name in (
        "runs",
        "passed",
        "errors",
        "runs_with_excess",
        "runs_with_needless",
        "runs_with_sla_short",
        "runs_unsettled",
        "not_done_states",
    ):
        if name in s:
            print(f"  {name:24s} {s[name]}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--moves", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--repo", type=Path, default=Path.cwd(), help="checkout to run (default: cwd)"
    )
    parser.add_argument(
        "--agent-repo",
        type=Path,
        default=None,
        help="run the agents from this checkout instead (a mixed-version site)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep each run's files under DIR")
    parser.add_argument("--json", action="store_true", help="print one JSON document at the end")
    parser.add_argument("--journal", action="store_true", help="print each run's commands")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _on_signal)
    repo = args.repo.resolve()
    agent_repo = (args.agent_repo or args.repo).resolve()
    for checkout in {repo, agent_repo}:
        if not (checkout / "orchestrator" / "__main__.py").exists():
            parser.error(f"{checkout} is not a checkout of the orchestrator")
    sys.path.insert(0, str(repo))
    checkouts: dict[str, Checkout] = {
        "serve": (repo, {**os.environ, "PYTHONPATH": str(repo)}),
        "agent": (agent_repo, {**os.environ, "PYTHONPATH": str(agent_repo)}),
    }
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    code = code_under_test(*checkouts["serve"])
    if agent_repo != repo:
        code = {"serve": code, "agent": code_under_test(*checkouts["agent"])}
    machine = {"nproc": os.cpu_count(), "cpu": _cpu_model(), "load_avg_start": os.getloadavg()}
    print(f"code under test: {code}", file=sys.stderr)
    print(f"machine: {machine}", file=sys.stderr)
    results = []
    for run in range(1, args.runs + 1):
        try:
            result = run_once(run, args, checkouts)
        except (RuntimeError, OSError, subprocess.SubprocessError, sqlite3.Error) as error:
            print(f"run {run:2d} ERROR: {error}", file=sys.stderr)
            results.append({"run": run, "error": str(error)})
            continue
        results.append(result)
        print(line(result), file=sys.stderr, flush=True)
        if args.journal or not result["passed"]:
            for c in result["journal"]:
                print(f"    {c}", file=sys.stderr)
    ok = [r for r in results if "error" not in r]
    report: dict[str, Any] = {
        "code": code,
        "machine": {**machine, "load_avg_end": os.getloadavg()},
        "settings": {
            "runs": args.runs,
            "moves": args.moves,
            "seed": args.seed,
            "telemetry_s": TELEMETRY_S,
            "quiet_s": QUIET_S,
            "levels": LEVELS,
        },
        "summary": {**summary(ok), "errors": len(results) - len(ok)}
        if ok
        else {"errors": len(results)},
        "results": results,
    }
    s = report["summary"]
    print_summary(s)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    return 0 if ok and s.get("passed") == len(results) else 1


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                return row.split(":", 1)[1].strip()
    return "?"


if __name__ == "__main__":
    sys.exit(main())
