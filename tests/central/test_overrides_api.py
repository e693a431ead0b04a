"""Overrides through the HTTP API: tokens and roles, validation, SLA refusals, the audit
log, and overrides surviving a restart of `serve`."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from orchestrator.agents.agent import NodeAgent
from orchestrator.config import ServeConfig
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.serve import CentralDaemon
from orchestrator.web.auth import digest
from tests.central.harness import agent_config, running, serve_config
from tests.waiting import eventually

pytestmark = pytest.mark.slow

RTX_3090 = "NVIDIA GeForce RTX 3090"
OPERATOR, VIEWER = "op-secret-token-1", "view-secret-token-2"

POLICY: dict[str, Any] = {
    "http": {
        "host": "127.0.0.1",
        "port": 0,
        "tokens": [
            {"name": "alice", "role": "operator", "sha256": digest(OPERATOR)},
            {"name": "victor", "role": "viewer", "sha256": digest(VIEWER)},
        ],
    },
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
        "reserved": [
            {
                "id": "acme",
                "rate_usd_per_gpu_hour": 1.2,
                "committed_gpus": 2,
                "penalty_usd_per_gpu_hour": 5.0,
            }
        ]
    },
    "planner": {"min_dwell_s": 0.0, "interval_s": 1.0},
    "ingest": {"node_offline_after_s": 1.0, "staleness_check_interval_s": 0.1},
}


def config(mosquitto: MosquittoBroker, **changes: Any) -> ServeConfig:
    return serve_config(mosquitto, **{**POLICY, **changes})


async def call(
    method: str, url: str, *, token: str | None = None, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, json=body) as response,
    ):
        return response.status, await response.json()


async def test_tokens_and_roles_guard_the_api_without_leaking_why(
    mosquitto: MosquittoBroker,
) -> None:
    central = CentralDaemon(config(mosquitto))
    async with running(central):
        assert central.http is not None
        url = central.http.url
        assert (await call("GET", f"{url}/api/v1/state"))[0] == 401
        status, body = await call("GET", f"{url}/api/v1/state", token="wrong")  # noqa: S106
        assert (status, body) == (401, {"error": "missing or invalid token"})
        assert (await call("GET", f"{url}/api/v1/state", token=VIEWER))[0] == 200
        write = {"gpus": ["rig:0"], "workload": "idle", "reason": "x"}
        status, body = await call("POST", f"{url}/api/v1/overrides", token=VIEWER, body=write)
        assert (status, body) == (403, {"error": "needs the operator role"})
        assert (await call("GET", f"{url}/healthz"))[0] == 200
        assert (await call("GET", f"{url}/api/v1/openapi.json"))[0] == 200


async def test_without_tokens_the_api_reads_but_refuses_every_write(
    mosquitto: MosquittoBroker,
) -> None:
    central = CentralDaemon(config(mosquitto, http={"host": "127.0.0.1", "port": 0}))
    async with running(central):
        assert central.http is not None
        url = central.http.url
        assert (await call("GET", f"{url}/api/v1/overrides"))[0] == 200
        status, body = await call(
            "POST",
            f"{url}/api/v1/overrides",
            body={"node": "rig", "workload": "idle", "reason": "x"},
        )
        assert status == 403
        assert "none is configured" in body["error"]


async def test_overrides_are_validated_refused_when_they_break_an_sla_and_audited(
    mosquitto: MosquittoBroker,
) -> None:
    central = CentralDaemon(config(mosquitto))
    agent = NodeAgent(agent_config(mosquitto, "rig", gpus=3))
    async with running(central), running(agent):
        assert central.http is not None
        url = f"{central.http.url}/api/v1/overrides"
        await eventually(lambda: central.policy.last is not None, what="the first plan")

        status, body = await call(
            "POST", url, token=OPERATOR, body={"gpus": ["rig:0"], "colour": 1}
        )
        assert status == 400
        fields = {p["field"]: p["problem"] for p in body["problems"]}
        assert fields["colour"] == "unknown field"
        assert "workload" in fields
        assert "reason" in fields
        status, body = await call(
            "POST",
            url,
            token=OPERATOR,
            body={"gpus": ["rig:0"], "workload": "mine:nope", "reason": "x"},
        )
        assert status == 400
        assert "unknown workload 'mine:nope'" in body["error"]
        status, body = await call(
            "POST", url, token=OPERATOR, body={"gpus": ["rig:7"], "workload": "idle", "reason": "x"}
        )
        assert (status, body["error"]) == (
            400,
            "unknown GPU 'rig:7': name it node:index or by UUID",
        )
        assert (await call("POST", url, token=OPERATOR, body=[1, 2]))[0] == 400

        drain = {"node": "rig", "workload": "drain", "reason": "PSU swap"}
        status, body = await call("POST", url, token=OPERATOR, body=drain)
        assert status == 409
        assert body["error"].startswith("refused: acme would be short 2 of 2 GPUs")
        status, body = await call(
            "POST", url, token=OPERATOR, body={**drain, "force": True, "ttl_s": 600}
        )
        assert status == 201
        assert body["gpus"] == ["rig:0", "rig:1", "rig:2"]
        assert body["by"] == "alice"
        assert body["sla"].startswith("forced: acme would be short 2")
        override_id = body["id"]

        def overridden() -> bool:
            last = central.policy.last
            return last is not None and last.plan.assignments["rig:0"].lock == "override"

        await eventually(overridden, what="a plan with the override")
        assignment = central.policy.last.plan.assignments["rig:1"]  # type: ignore[union-attr]
        assert assignment.workload == "idle"
        assert "alice" in assignment.reason

        status, listed = await call("GET", url, token=VIEWER)
        assert [o["id"] for o in listed["overrides"]] == [override_id]
        assert (await call("DELETE", f"{url}/{override_id}", token=VIEWER))[0] == 403
        assert (await call("DELETE", f"{url}/{override_id}", token=OPERATOR))[0] == 200
        assert (await call("DELETE", f"{url}/{override_id}", token=OPERATOR))[0] == 404

        status, decisions = await call(
            "GET", f"{central.http.url}/api/v1/decisions?limit=50", token=VIEWER
        )
        kinds = [d["kind"] for d in decisions["decisions"]]
        assert "override.create" in kinds
        assert "override.delete" in kinds
        assert "plan" in kinds
        created = next(d for d in decisions["decisions"] if d["kind"] == "override.create")
        assert (created["by"], created["reason"], created["forced"]) == ("alice", "PSU swap", True)


async def test_overrides_and_the_plan_generation_survive_a_restart(
    mosquitto: MosquittoBroker,
) -> None:
    first = CentralDaemon(config(mosquitto))
    agent = NodeAgent(agent_config(mosquitto, "rig", gpus=3))
    async with running(agent):
        async with running(first):
            assert first.http is not None
            await eventually(lambda: first.policy.last is not None, what="the first plan")
            status, body = await call(
                "POST",
                f"{first.http.url}/api/v1/overrides",
                token=OPERATOR,
                body={"gpus": ["rig:2"], "workload": "mine:kawpow", "reason": "benchmark run"},
            )
            assert status == 201, body
            await eventually(lambda: first.policy.generation >= 2, what="a second plan")
            generation = first.policy.generation
        second = CentralDaemon(config(mosquitto))
        async with running(second):
            assert second.http is not None
            status, listed = await call("GET", f"{second.http.url}/api/v1/overrides", token=VIEWER)
            assert [o["gpus"] for o in listed["overrides"]] == [["rig:2"]]
            assert second.policy.overrides["rig:2"].workload == "mine:kawpow"
            await eventually(
                lambda: second.policy.last is not None, what="a plan after the restart"
            )
            assert second.policy.generation > generation
