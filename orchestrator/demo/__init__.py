"""`orchestrator demo`: the whole system on one machine, nothing to set up.

It starts a private broker (mosquitto when the binary exists, else amqtt in-process),
the central daemon, and N node agents with K fake GPUs each, all in this process except
mosquitto. It prints the status page's and the HTTP API's URLs and runs until Ctrl-C or
`--duration`. The parts are the real daemons with real configs; only the GPUs are simulated.

Each run makes a fresh operator token (only its SHA-256 goes into the serve config, as on
a site) and prints it with a status page URL that carries it in the fragment: the page
keeps it for the browser tab and drops it from the address bar, and the fragment never
reaches the server's logs.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from orchestrator.agents.agent import NodeAgent
from orchestrator.config import AgentConfig, ServeConfig, parse_config
from orchestrator.demo.broker import embedded_broker, port_accepts
from orchestrator.domain import ai_workload, mine_workload
from orchestrator.serve import CentralDaemon
from orchestrator.web.auth import digest, new_token

log = structlog.get_logger(__name__)

# a realistic mixed site: consumer cards that mine, datacentre cards that serve AI
DEMO_MODELS = ["rtx-3090", "rtx-4090", "l40s", "a100-sxm4-80gb"]
DEMO_START = {"rtx-3090": mine_workload("kawpow"), "rtx-4090": mine_workload("kawpow")}
DEMO_DEFAULT_START = ai_workload("acme")  # every other model

_3090, _4090 = "NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090"
_L40S, _A100 = "NVIDIA L40S", "NVIDIA A100-SXM4-80GB"


def _bench(rates: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """{model: (MH/s, W)} -> the config's benchmark table in H/s."""
    return {m: {"hashrate_hs": mhs * 1e6, "power_w": w} for m, (mhs, w) in rates.items()}


# Public ballpark figures for these cards; the fleet's measurements replace them.
DEMO_POLICY: dict[str, Any] = {
    "market": {
        # the recorded two days, one recorded hour every 15 s, starting 4 h before a coin rally
        "feeds": [{"type": "recorded", "time_scale": 240.0, "start_offset_s": 20 * 3600.0}],
    },
    "mining_profiles": [
        {
            "id": "kawpow",
            "algorithm": "kawpow",
            "switch_downtime_s": 20.0,
            "benchmarks": _bench(
                {_3090: (58, 310), _4090: (115, 360), _L40S: (75, 270), _A100: (60, 250)}
            ),
        },
        {
            "id": "etchash",
            "algorithm": "etchash",
            "switch_downtime_s": 30.0,
            "benchmarks": _bench(
                {_3090: (120, 285), _4090: (125, 300), _L40S: (110, 250), _A100: (170, 250)}
            ),
        },
        {
            "id": "autolykos",
            "algorithm": "autolykos",
            "switch_downtime_s": 20.0,
            "benchmarks": _bench(
                {_3090: (260, 270), _4090: (300, 290), _L40S: (240, 230), _A100: (360, 260)}
            ),
        },
    ],
    "contracts": {
        "reserved": [
            {
                "id": "acme",
                "rate_usd_per_gpu_hour": 1.40,
                "committed_gpus": 12,
                "eligible_models": [_L40S, _A100],
                "penalty_usd_per_gpu_hour": 6.0,
                "switch_downtime_s": 120.0,
                "power_w": {_L40S: 300.0, _A100: 330.0},
            }
        ],
        "on_demand": [
            {
                "id": "spot",
                "rate_usd_per_gpu_hour": 0.30,
                "expected_utilisation_fraction": 0.25,
                "max_gpus": 12,
                "min_memory_gib": 20.0,
                "switch_downtime_s": 90.0,
            }
        ],
    },
    "planner": {
        "interval_s": 10.0,
        "horizon_s": 3600.0,
        "min_dwell_s": 30.0,
        "hysteresis_margin_usd_per_gpu_hour": 0.005,
    },
    # the demo's switches take seconds (DEMO_TIME_SCALE), so its readings settle in seconds
    "power": {"settle_s": 5.0},
}


# What the demo's agents may run: every workload the central config can order, simulated.
# Delays are the sim driver's realistic ones scaled by DEMO_TIME_SCALE, so a model loads in
# about 3 s and a miner shows hashrate in a quarter of a second: switches are seen happening.
DEMO_TIME_SCALE = 0.05
DEMO_HASHRATE_HS = {"kawpow": 60e6, "etchash": 120e6, "autolykos": 260e6}
DEMO_PROFILES: list[dict[str, Any]] = [
    *(
        {
            "id": algorithm,
            "kind": "mining",
            "driver": "sim",
            "algorithm": algorithm,
            "expected_hashrate_hs": hashrate_hs,
            "sim": {},
        }
        for algorithm, hashrate_hs in DEMO_HASHRATE_HS.items()
    ),
    *(
        {
            "id": f"llm-{contract}",
            "kind": "ai",
            "driver": "sim",
            "serves_contracts": [contract],
            "drain_timeout_s": 10.0,
            "sim": {},
        }
        for contract in ("acme", "spot")
    ),
]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    nodes: int = 4
    gpus_per_node: int = 8
    duration_s: float | None = None
    http_host: str = "127.0.0.1"
    http_port: int | None = None  # None: 9850, or a free port if that one is taken
    telemetry_interval_s: float = 1.0
    broker: str = "auto"


def demo_configs(
    options: DemoOptions,
    *,
    broker_port: int,
    http_port: int,
    state_dir: Path,
    tokens: list[dict[str, str]] | None = None,
) -> tuple[ServeConfig, list[AgentConfig]]:
    """The demo's serve and agent configs; `tokens` are `[http.tokens]` entries."""
    mqtt = {"host": "127.0.0.1", "port": broker_port, "site": "demo"}
    serve = parse_config(
        {
            "mqtt": {**mqtt, "client_id": "demo-serve"},
            "http": {"host": options.http_host, "port": http_port, "tokens": tokens or []},
            "ingest": {"node_offline_after_s": max(3.0, 3 * options.telemetry_interval_s)},
            "store": {"path": str(state_dir / "serve.sqlite3")},
            **DEMO_POLICY,
        },
        "serve",
        source="<demo>",
    )
    agents = []
    for n in range(options.nodes):
        node = f"node-{n + 1:02d}"
        model = DEMO_MODELS[n % len(DEMO_MODELS)]
        agents.append(
            parse_config(
                {
                    "node": {"name": node},
                    "mqtt": {**mqtt, "client_id": f"demo-agent-{node}"},
                    "http": {"host": "127.0.0.1", "port": 0},
                    "telemetry": {"interval_s": options.telemetry_interval_s},
                    "executor": {
                        "state_dir": str(state_dir / "agents" / node / "state"),
                        "log_dir": str(state_dir / "agents" / node / "logs"),
                        "sim_time_scale": DEMO_TIME_SCALE,
                        "verify_free_timeout_s": 5.0,
                    },
                    "profiles": DEMO_PROFILES,
                    "gpu": {
                        "backend": "fake",
                        "fake": {
                            "gpus": options.gpus_per_node,
                            "models": [model],
                            "seed": n,
                            "initial_workloads": [DEMO_START.get(model, DEMO_DEFAULT_START)],
                        },
                    },
                },
                "agent",
                source="<demo>",
            )
        )
    return serve, agents


def _pick_http_port(options: DemoOptions) -> int:
    if options.http_port is not None:
        return options.http_port
    if port_accepts(options.http_host, 9850):
        log.warning("port 9850 is taken; the demo API takes a free port instead")
        return 0
    return 9850


async def run_demo(options: DemoOptions, stop: asyncio.Event) -> None:
    with tempfile.TemporaryDirectory(prefix="orchestrator-demo-") as tmp:
        broker = embedded_broker(Path(tmp), prefer=options.broker)
        await broker.start()
        log.info("broker started", kind=broker.kind, address=f"{broker.host}:{broker.port}")
        token = new_token()
        serve_config, agent_configs = demo_configs(
            options,
            broker_port=broker.port,
            http_port=_pick_http_port(options),
            state_dir=Path(tmp),
            tokens=[{"name": "demo-operator", "role": "operator", "sha256": digest(token)}],
        )
        central = CentralDaemon(serve_config)
        agents = [NodeAgent(config) for config in agent_configs]
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(central.run(stop), name="serve")
                for agent in agents:
                    tasks.create_task(agent.run(stop), name=f"agent-{agent.node}")
                tasks.create_task(_announce(central, options, token, stop), name="announce")
                if options.duration_s is not None:
                    tasks.create_task(_stop_after(stop, options.duration_s), name="duration")
        finally:
            await broker.stop()
        log.info("demo stopped")


async def _announce(
    central: CentralDaemon, options: DemoOptions, token: str, stop: asyncio.Event
) -> None:
    if not await _first_of(central.ready, stop):
        return  # stopped before it was ready: nothing to announce
    url = central.http.url if central.http else "?"
    gpus = options.nodes * options.gpus_per_node
    shape = f"{options.nodes} nodes x {options.gpus_per_node} GPUs = {gpus} fake GPUs"
    print(f"\norchestrator demo: {shape}")
    print(f"  status page:  {url}/#token={token}")
    print(f"  fleet state:  curl -H 'Authorization: Bearer {token}' {url}/api/v1/state")
    print(f"  metrics:      {url}/metrics")
    print(f"  operator token (this run only): {token}")
    print("  stop with Ctrl-C\n", flush=True)


async def _stop_after(stop: asyncio.Event, duration_s: float) -> None:
    """Stop the demo after `duration_s`, or end at once when it is stopped sooner (a task
    of the demo's group that slept on would hold the whole demo until its time ran out)."""
    try:
        async with asyncio.timeout(duration_s):
            await stop.wait()
    except TimeoutError:
        log.info("demo duration reached", duration_s=duration_s)
        stop.set()


async def _first_of(wanted: asyncio.Event, stop: asyncio.Event) -> bool:
    """Wait for `wanted` or `stop`; True when `wanted` was set."""
    waits = [asyncio.ensure_future(wanted.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    return wanted.is_set()
