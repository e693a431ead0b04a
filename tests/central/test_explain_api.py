"""Explanations over HTTP and the CLI: every candidate with its $/h, the choice, the reason."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import pytest

from orchestrator.agents.agent import NodeAgent
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.serve import CentralDaemon
from tests.central.harness import agent_config, running, serve_config
from tests.waiting import eventually

pytestmark = pytest.mark.slow

RTX_3090 = "NVIDIA GeForce RTX 3090"

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
            "benchmarks": {RTX_3090: {"hashrate_hs": 58e6, "power_w": 310.0}},
        }
    ],
    "contracts": {
        "on_demand": [
            {"id": "spot", "rate_usd_per_gpu_hour": 0.30, "expected_utilisation_fraction": 0.25}
        ]
    },
    "planner": {"min_dwell_s": 0.0, "interval_s": 1.0},
    "ingest": {"node_offline_after_s": 1.0, "staleness_check_interval_s": 0.1},
}


async def test_explain_names_every_candidate_and_the_reason_by_key_and_by_uuid(
    mosquitto: MosquittoBroker,
) -> None:
    central = CentralDaemon(serve_config(mosquitto, **POLICY))
    agent = NodeAgent(agent_config(mosquitto, "rig", gpus=2))
    async with running(central), running(agent):
        assert central.http is not None
        base = central.http.url
        await eventually(lambda: central.policy.last is not None, what="the first plan")
        await eventually(
            lambda: "rig:1" in central.dispatcher.book.facts, what="the agent's answer"
        )
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/api/v1/gpus/rig:1/explain") as response:
                assert response.status == 200
                view = await response.json()
            uuid = view["uuid"]
            async with session.get(f"{base}/api/v1/gpus/{uuid}/explain") as response:
                assert (await response.json())["gpu"] == "rig:1"
            async with session.get(f"{base}/api/v1/gpus/rig:9/explain") as response:
                assert response.status == 404
            async with session.get(f"{base}/api/v1/plan") as response:
                plan = await response.json()
        assert view["current"] == "idle"
        assert view["choice"] == "ai:spot"
        assert view["changed"] is True
        assert view["reason"].startswith("switch to ai:spot")
        # the GPU's lifecycle: the plan wants ai:spot, which this agent declares no profile
        # for: the refusal is the switch's end, a failure, and the target cools down
        lifecycle = view["lifecycle"]
        assert (lifecycle["desired"], lifecycle["in_flight"]) == ("ai:spot", None)
        last = lifecycle["last_switch"]
        assert (last["state"], last["failed"], last["target"]) == ("refused", True, "ai:spot")
        assert last["workload"] == "idle"
        assert "unknown profile" in last["outcome"]
        assert lifecycle["cooldown_until_s"] is not None
        candidates = {c["workload"]: c for c in view["candidates"]}
        assert set(candidates) == {"ai:spot", "mine:kawpow", "idle"}
        # 0.30 $/h x 25 % - 300 W board at the wall (x 1.2 PUE / 0.92 PSU = 391.3 W) x 0.05 $/kWh,
        # less the 300 s load's lost revenue spread over the hour's horizon: 0.0492 $/h
        spot = candidates["ai:spot"]
        assert (spot["board_w"], spot["wall_w"]) == (300.0, 391.3)
        assert spot["net_usd_per_hour"] == pytest.approx(
            0.30 * 0.25 - 0.3913 * 0.05 - 300 / 3600 * 0.075, abs=1e-4
        )
        assert candidates["ai:spot"]["chosen"] is True
        assert view["market"]["power_usd_per_kwh"] == 0.05
        assert plan["market"]["quotes"]["kawpow"]["source"] == "static"
        assert {c["workload"] for c in plan["recent_commands"]} == {"ai:spot"}

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
        assert "plan: ai:spot (switch)" in text
        assert "* ai:spot" in text
        assert "mine:kawpow" in text
