"""A whole site of real processes for the fault suite and the security end-to-end test.

`Site` writes TOML configs and runs `python -m orchestrator serve|agent -c FILE` as
subprocesses against a real mosquitto, with fake GPUs and real workload processes
(`workload.py`, run by the agents' `process` driver, which outlive an agent's SIGKILL as real
workloads do). It gives the test what it needs to count: the workloads' start/stop ledger,
the store read-only, every switch event seen on the broker, and the daemons' logs.

Every GPU is pinned by an operator override, so every switch is ordered and the counts have
an exact expectation: a workload start without a command, or a stop of an AI workload
without a command moving its GPU away, is a fault the suite reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.demo.broker import MosquittoBroker, port_accepts
from orchestrator.protocol import SwitchEvent, decode_event
from orchestrator.web.auth import digest
from tests.waiting import eventually_sync

WORKLOAD = Path(__file__).with_name("workload.py")
REPO = Path(__file__).resolve().parents[2]
SITE = "site"
PREFIX = f"fleet/v1/{SITE}"
OPERATOR, VIEWER = "fault-operator-token-0123456789", "fault-viewer-token-0123456789"
RTX_3090 = "NVIDIA GeForce RTX 3090"
AI, MINE, IDLE = "ai:spot", "mine:kawpow", "idle"


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


def _merged(document: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`document` with `extra`'s keys set, tables merged key by key (at any depth)."""
    merged = dict(document)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def port_block(count: int, taken: set[int]) -> int:
    """The first of `count` consecutive free loopback ports, none of them in `taken` (which
    gets them): the workloads of every GPU and profile on this host need their own. Taken
    below Linux's ephemeral range (32768-60999), where no port-0 bind can land meanwhile."""
    for _ in range(200):
        base = random.randrange(20_000, 32_000 - count)  # noqa: S311  (not cryptography)
        block = set(range(base, base + count))
        if not block & taken and not any(port_accepts("127.0.0.1", port) for port in block):
            taken |= block
            return base
    raise RuntimeError("no block of free ports")


@dataclass
class Daemon:
    """One `python -m orchestrator ...` subprocess with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} runs"
        with self.log_path.open("ab") as log:
            log.write(f"----- start {self.starts + 1} of {self.name}\n".encode())
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: signal.Signals = signal.SIGKILL, *, timeout_s: float = 15.0) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> int | None:
        """SIGTERM, bounded; SIGKILL if it does not go."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        try:
            return self.kill(signal.SIGTERM, timeout_s=15.0)
        except subprocess.TimeoutExpired:
            return self.kill(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Site:
    """A broker, one `serve`, and agents with `gpus` fake GPUs each, as real processes."""

    def __init__(
        self,
        workdir: Path,
        broker: MosquittoBroker,
        *,
        nodes: tuple[str, ...] | None = None,
        gpus: int = 4,
        serve_extra: dict[str, Any] | None = None,
        mqtt_extra: dict[str, Any] | None = None,
        serve_mqtt: dict[str, Any] | None = None,
        agent_mqtt: dict[str, dict[str, Any]] | None = None,
        agent_extra: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        log_level: str = "info",
    ) -> None:
        self.log_level = log_level
        self.workdir = workdir
        self.broker = broker
        # names unique to this site: an agent adopts any workload process marked with its node
        # name (as it must after a restart), so two test runs on one machine must not share one
        suffix = os.urandom(3).hex()
        self.nodes = nodes or (f"node-a-{suffix}", f"node-b-{suffix}")
        self.gpus = gpus
        self.ledger = workdir / "workloads.jsonl"
        self.ledger.touch()
        self._ports: set[int] = set()
        self.http_port = port_block(1, self._ports)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.store_path = workdir / "serve.sqlite3"
        mqtt = {
            "host": broker.host,
            "port": broker.port,
            "site": SITE,
            "reconnect_initial_s": 0.2,
            "reconnect_max_s": 1.0,
            "keepalive_s": 5,
            **(mqtt_extra or {}),
        }
        self.serve_document: dict[str, Any] = {
            "log": {"level": log_level, "format": "json"},
            "mqtt": {**mqtt, "client_id": "fault-serve", **(serve_mqtt or {})},
            "http": {
                "host": "127.0.0.1",
                "port": self.http_port,
                "tokens": [
                    {"name": "olga", "role": "operator", "sha256": digest(OPERATOR)},
                    {"name": "vic", "role": "viewer", "sha256": digest(VIEWER)},
                ],
            },
            "ingest": {"node_offline_after_s": 5.0, "staleness_check_interval_s": 0.2},
            "store": {"path": str(self.store_path)},
            "dispatch": {"command_timeout_s": 20.0, "command_ttl_s": 30.0},
            "market": {
                "feeds": [
                    {"type": "static", "algorithm": "kawpow", "value": 1.0e-8},
                    {"type": "power_static", "usd_per_kwh": 0.05},
                ]
            },
            "mining_profiles": [
                {
                    "id": "kawpow",
                    "algorithm": "kawpow",
                    "switch_downtime_s": 5.0,
                    "benchmarks": {RTX_3090: {"hashrate_hs": 58e6, "power_w": 310.0}},
                }
            ],
            "contracts": {
                "on_demand": [
                    {
                        "id": "spot",
                        "rate_usd_per_gpu_hour": 0.30,
                        "expected_utilisation_fraction": 0.5,
                        "max_gpus": 64,
                    }
                ]
            },
            "planner": {"min_dwell_s": 0.0, "interval_s": 1.0},
            **(serve_extra or {}),
        }
        self.agent_documents = {
            node: _merged(
                self._agent_document(node, n, mqtt, (agent_mqtt or {}).get(node, {})),
                agent_extra or {},
            )
            for n, node in enumerate(self.nodes)
        }
        self.serve = self._daemon("serve", self.serve_document, env or {})
        self.agents = {
            node: self._daemon(f"agent-{node}", doc, env or {})
            for node, doc in self.agent_documents.items()
        }

    # ------------------------------------------------------------------ configs

    def _agent_document(
        self, node: str, n: int, mqtt: dict[str, Any], extra: dict[str, Any]
    ) -> dict[str, Any]:
        agent_dir = self.workdir / "agents" / node
        mining_base = port_block(self.gpus, self._ports)
        ai_base = port_block(self.gpus, self._ports)

        def profile(kind: str, workload: str, port_base: int) -> dict[str, Any]:
            argv = [
                sys.executable, str(WORKLOAD), "--ledger", str(self.ledger), "--kind", kind,
                "--port", "{port}", "--pci", "{pci_bus_id}", "--node", "{node}",
                "--gpu", "{gpu_index}", "--workload", workload,
            ]  # fmt: skip
            common = {
                "driver": "process",
                "kind": kind,
                "expected_power_w": 250.0,
                "api_port_base": port_base,
                "start_timeout_s": 20.0,
                "stop_timeout_s": 5.0,
                "process": {"argv": argv},
            }
            if kind == "mining":
                return common | {
                    "id": "kawpow",
                    "algorithm": "kawpow",
                    "expected_hashrate_hs": 25e6,
                    "health": {"miner_api": "trex", "url": "http://127.0.0.1:{port}"},
                }
            return common | {
                "id": "llm-spot",
                "serves_contracts": ["spot"],
                "drain_timeout_s": 0.2,
                "health": {"server": "http", "url": "http://127.0.0.1:{port}/"},
            }

        return {
            "log": {"level": self.log_level, "format": "json"},
            "node": {"name": node},
            "mqtt": {**mqtt, "client_id": f"fault-agent-{node}", **extra},
            "http": {"host": "127.0.0.1", "port": 0},
            "telemetry": {"interval_s": 0.5},
            "executor": {
                "state_dir": str(agent_dir / "state"),
                "log_dir": str(agent_dir / "logs"),
                "verify_free_timeout_s": 5.0,
            },
            "watchdog": {"interval_s": 1.0, "unhealthy_after_s": 10.0},
            "gpu": {
                "backend": "fake",
                "fake": {"gpus": self.gpus, "models": ["rtx-3090"], "seed": n},
            },
            "profiles": [profile("mining", MINE, mining_base), profile("ai", AI, ai_base)],
        }

    def _daemon(self, name: str, document: dict[str, Any], env: dict[str, str]) -> Daemon:
        kind = "serve" if name == "serve" else "agent"
        path = self.workdir / f"{name}.toml"
        path.write_text(toml_text(document))
        argv = [sys.executable, "-m", "orchestrator", kind, "-c", str(path)]
        return Daemon(name, argv, self.workdir / f"{name}.log", env=env)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.serve.start()
        for agent in self.agents.values():
            agent.start()

    def close(self) -> None:
        """Stop every daemon, then every workload still running (they outlive agents)."""
        for daemon in (*self.agents.values(), self.serve):
            daemon.stop()
        # every workload of this site, found by its ledger path in its command line, ledgered
        # or not yet: a survivor would be adopted by the next test's agent of the same name
        for pid in {*self.running_pids(), *_pids_with_argument(str(self.ledger))}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # the driver starts each in its own group
        eventually_sync(
            lambda: not _pids_with_argument(str(self.ledger)),
            timeout_s=10,
            what="the site's workloads gone",
        )

    # ------------------------------------------------------------------ HTTP

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = OPERATOR
             ) -> tuple[int, Any]:  # fmt: skip
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")
        except OSError:
            return 0, None

    def ready(self) -> bool:
        return self.call("GET", "/readyz", token=None)[0] == 200

    def pin(self, gpus: list[str], workload: str, reason: str = "fault suite") -> str:
        status, body = self.call(
            "POST", "/api/v1/overrides", {"gpus": gpus, "workload": workload, "reason": reason}
        )
        assert status in {200, 201}, (status, body)
        return str(body["id"])

    def reported(self) -> dict[str, str]:
        """`node:index` -> the workload serve sees reported (online nodes only)."""
        status, body = self.call("GET", "/api/v1/state", token=VIEWER)
        if status != 200:
            return {}
        return {gpu["gpu"]: gpu["workload"] for node in body["nodes"] for gpu in node["gpus"]}

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples on serve's /metrics matching `labels`."""
        request = urllib.request.Request(self.url + "/metrics")  # noqa: S310
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            if sample.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in sample for k, v in labels.items()):
                total += float(value)
        return total

    # ------------------------------------------------------------------ what happened

    def ledger_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]

    def running_pids(self) -> list[int]:
        lines = self.ledger_lines()
        stopped = {line["pid"] for line in lines if line["event"] == "stop"}
        return [
            line["pid"]
            for line in lines
            if line["event"] == "start" and line["pid"] not in stopped and _alive(line["pid"])
        ]

    def running(self) -> dict[str, str]:
        """`node:index` -> the workload whose process runs there now (from the ledger)."""
        alive = set(self.running_pids())
        return {
            f"{line['node']}:{line['gpu']}": line["workload"]
            for line in self.ledger_lines()
            if line["event"] == "start" and line["pid"] in alive
        }

    def store_rows(self, table: str) -> list[tuple[Any, ...]]:
        if not self.store_path.exists():
            return []
        with contextlib.closing(
            sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True, timeout=5)
        ) as db:
            return list(db.execute(f"SELECT * FROM {table} ORDER BY 1"))  # noqa: S608


def _pids_with_argument(argument: str) -> list[int]:
    """Live processes with `argument` in their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argument.encode() in argv and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@dataclass
class EventLog:
    """Every switch event on the broker, gathered by a test subscriber."""

    events: list[SwitchEvent] = field(default_factory=list)
    malformed: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)  # the subscriber's link

    def listening(self) -> bool:
        """Subscribed right now (after a broker restart, only once it has reconnected)."""
        return self.connected.is_set()

    def on_message(self, topic: str, payload: bytes) -> None:
        node = topic.split("/")[-2]
        try:
            event = decode_event(payload, topic_node=node)
        except Exception:  # noqa: BLE001  (fuzzed payloads land here too)
            self.malformed += 1
            return
        if isinstance(event, SwitchEvent):
            self.events.append(event)

    def executions(self) -> dict[str, int]:
        """command id -> how many times its workload was started (progress step `start`)."""
        counts: dict[str, int] = {}
        for event in self.events:
            if event.state == "progress" and event.step == "start":
                counts[event.command_id] = counts.get(event.command_id, 0) + 1
        return counts


@contextlib.contextmanager
def waiting_process_exit(daemon: Daemon) -> Iterator[None]:
    try:
        yield
    finally:
        daemon.stop()


# ---------------------------------------------------------------------- counting


@dataclass(frozen=True)
class StoreSnapshot:
    overrides: frozenset[tuple[Any, ...]]
    commands: frozenset[str]
    audit: int


def store_snapshot(site: Site) -> StoreSnapshot:
    return StoreSnapshot(
        overrides=frozenset(row[:6] for row in site.store_rows("overrides")),
        commands=frozenset(row[0] for row in site.store_rows("commands")),
        audit=len(site.store_rows("audit")),
    )


def records_lost(before: StoreSnapshot, after: StoreSnapshot) -> int:
    """Overrides, journaled commands and audit rows present before a fault and gone after."""
    return (
        len(before.overrides - after.overrides)
        + len(before.commands - after.commands)
        + max(0, before.audit - after.audit)
    )


def duplicate_switches(site: Site, events: EventLog) -> int:
    return sum(duplicate_parts(site, events).values())


def duplicate_parts(site: Site, events: EventLog) -> dict[str, int]:
    """Command ids started more than once, plus two journaled commands for one GPU and
    target within one plan generation, plus workload starts the journal cannot explain."""
    executed_twice = sum(1 for count in events.executions().values() if count > 1)
    commands = site.store_rows("commands")  # command_id, generation, gpu, workload, ...
    per_decision: dict[tuple[Any, ...], int] = {}
    ordered: dict[tuple[str, str], int] = {}
    for row in commands:
        decision = (row[1], row[2], row[3])
        per_decision[decision] = per_decision.get(decision, 0) + 1
        ordered[(row[2], row[3])] = ordered.get((row[2], row[3]), 0) + 1
    twice_in_one_plan = sum(count - 1 for count in per_decision.values() if count > 1)
    starts: dict[tuple[str, str], int] = {}
    for line in site.ledger_lines():
        if line["event"] == "start":
            key = (f"{line['node']}:{line['gpu']}", line["workload"])
            starts[key] = starts.get(key, 0) + 1
    unexplained = sum(max(0, n - ordered.get(key, 0)) for key, n in starts.items())
    return {
        "executed_twice": executed_twice,
        "twice_in_one_plan": twice_in_one_plan,
        "starts_without_command": unexplained,
    }


def ai_stopped_without_order(site: Site) -> int:
    """AI workload processes that stopped or vanished with no command moving their GPU away
    journaled before; each such stop is an AI contract broken for lack of orders."""
    commands = site.store_rows("commands")
    lines = site.ledger_lines()
    stops = {line["pid"]: line for line in lines if line["event"] == "stop"}
    count = 0
    for start in lines:
        if start["event"] != "start" or start["kind"] != "ai":
            continue
        stop = stops.get(start["pid"])
        if stop is None and _alive(start["pid"]):
            continue
        gpu = f"{start['node']}:{start['gpu']}"
        at_s = stop["at_s"] if stop else time.time()
        ordered = any(
            row[2] == gpu and row[3] != start["workload"] and start["at_s"] <= row[6] <= at_s
            for row in commands
        )
        count += 0 if ordered else 1
    return count
