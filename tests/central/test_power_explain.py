"""A running site shows measured board and wall power, with provenance, wherever it explains.

The real daemons over a real mosquitto: an agent with two simulated H200s (one mining, one
idle; the fake agrees with a real H200's readings) and `serve` with the default `[power]`
(PSU efficiency 0.92, 150 W host overhead, PUE 1.2) and a short settle time. Once the
learnt figures outweigh the priors, the explanation over HTTP and the CLI, the plan and the
Prometheus metrics all show them.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp
import pytest

from orchestrator.agents.agent import NodeAgent
from orchestrator.config import parse_config
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.serve import CentralDaemon
from tests.central.harness import agent_document, running, serve_config
from tests.waiting import eventually

pytestmark = pytest.mark.slow

H200 = "NVIDIA H200"
WALL_FACTOR = 1.2 / 0.92  # the default PUE over the default PSU efficiency
HOST_W = 150.0 * 1.2

POLICY = {
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
            # a benchmark far from what the board draws: the measurement must replace it
            "benchmarks": {H200: {"hashrate_hs": 58e6, "power_w": 400.0}},
        }
    ],
    "planner": {"min_dwell_s": 86_400.0, "interval_s": 0.25},
    "power": {"settle_s": 0.5, "prior_samples": 1.0},
}


def h200_agent(broker: MosquittoBroker) -> dict[str, Any]:
    document = agent_document(broker, "rig", gpus=2, interval_s=0.1)
    document["gpu"]["fake"] = {
        "gpus": 2,
        "models": ["h200"],
        "initial_workloads": ["mine:kawpow", "idle"],
    }
    return document


def chosen(view: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in view["candidates"] if c["chosen"])


async def test_explain_shows_measured_board_and_wall_power_with_provenance(
    mosquitto: MosquittoBroker,
) -> None:
    central = CentralDaemon(serve_config(mosquitto, **POLICY))
    agent = NodeAgent(parse_config(h200_agent(mosquitto), "agent", source="<test>"))
    async with running(central), running(agent):
        assert central.http is not None
        base = central.http.url

        def measured_enough() -> bool:
            last = central.policy.last
            if last is None:
                return False
            rows = [
                next(c for c in a.candidates if c.workload == a.workload)
                for a in last.plan.assignments.values()
            ]
            return len(rows) == 2 and all(
                r.power_source == "measured" and r.power_samples >= 12 for r in rows
            )

        await eventually(measured_enough, what="measured power in the plan", timeout_s=30)
        views: dict[str, dict[str, Any]] = {}
        async with aiohttp.ClientSession() as session:
            for gpu in ("rig:0", "rig:1"):
                async with session.get(f"{base}/api/v1/gpus/{gpu}/explain") as response:
                    assert response.status == 200
                    views[gpu] = await response.json()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/api/v1/plan") as response:
                plan = await response.json()
            async with session.get(f"{base}/metrics") as response:
                metrics = await response.text()

        mining, idle = chosen(views["rig:0"]), chosen(views["rig:1"])
        assert mining["workload"] == "mine:kawpow"
        assert idle["workload"] == "idle"
        # 690 W measured outweighs the 400 W benchmark (one reading's worth of prior)
        assert 640.0 <= mining["board_w"] <= 700.0
        assert 70.0 <= idle["board_w"] <= 95.0
        for row in (mining, idle):
            assert row["wall_w"] == pytest.approx(row["board_w"] * WALL_FACTOR, abs=0.2)
        power = views["rig:0"]["power"]
        assert power["limit_w"] == 700.0
        assert power["reading_w"] == pytest.approx(690.0, rel=0.06)
        assert power["planned"]["power_source"] == "measured"

        assert plan["host_power_w"] == pytest.approx(HOST_W)
        assert plan["total_power_w"] == pytest.approx(
            plan["board_power_w"] * WALL_FACTOR + HOST_W, abs=1.0
        )
        learnt = {(row["model"], row["workload"]): row for row in plan["power_model"]}
        assert learnt[H200, "mine:kawpow"]["board_w"] == pytest.approx(690.0, rel=0.03)
        assert learnt[H200, "idle"]["board_w"] == pytest.approx(78.0, rel=0.06)

        assert (
            f'orchestrator_power_model_board_watts{{modelName="{H200}",workload="mine:kawpow"}}'
            in metrics
        )
        assert 'orchestrator_plan_power_watts{at="wall"}' in metrics
        assert 'orchestrator_workload_power_source_gpus{source="measured",workload="idle"} 1.0' in (
            metrics
        )

        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orchestrator",
            "explain",
            "rig:0",
            "--url",
            base,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, stderr.decode()
        text = stdout.decode()
        assert "board W" in text
        assert "wall W" in text
        mining_line = next(line for line in text.splitlines() if line.startswith("* mine:kawpow"))
        assert "measured (" in mining_line
