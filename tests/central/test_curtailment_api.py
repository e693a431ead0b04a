"""Curtailment through the HTTP API of a real `serve`, with a real agent over a real mosquitto:
an operator's window sheds mining and keeps the reserved contract whole, says so in explain,
forecasts a shortfall before a window starts, and survives a restart of `serve`."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from orchestrator.agents.agent import NodeAgent
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.httpserver import start_http
from orchestrator.serve import CentralDaemon
from tests.central.harness import agent_config, running
from tests.central.test_overrides_api import OPERATOR, VIEWER, call, config
from tests.waiting import eventually

pytestmark = pytest.mark.slow

RICH: dict[str, Any] = {
    "market": {
        "feeds": [
            {"type": "static", "algorithm": "kawpow", "value": 1.0e-6},
            {"type": "power_static", "usd_per_kwh": 0.05},
        ]
    },
    # the wall is the board here (no PSU loss, host or cooling), so the caps below read as
    # the GPUs' own watts: 0.7 kW holds acme's two 300 W GPUs and two idle ones
    "power": {"pue": 1.0, "psu_efficiency": 1.0, "host_overhead_w": 0.0},
}


def workloads(central: CentralDaemon) -> list[str | None]:
    last = central.policy.last
    assert last is not None
    return [a.workload for a in last.plan.assignments.values()]


async def test_an_operator_window_sheds_mining_keeps_the_contract_and_survives_a_restart(
    mosquitto: MosquittoBroker,
) -> None:
    central = CentralDaemon(config(mosquitto, **RICH))
    agent = NodeAgent(agent_config(mosquitto, "rig", gpus=4))
    async with running(agent):
        async with running(central):
            assert central.http is not None
            url = f"{central.http.url}/api/v1/curtailments"
            await eventually(
                lambda: (
                    central.policy.last is not None
                    and sorted(map(str, workloads(central)))
                    == ["ai:acme", "ai:acme", "mine:kawpow", "mine:kawpow"]
                ),
                what="two GPUs on acme and two mining",
            )

            window = {"cap_kw": 0.7, "duration_s": 600, "reason": "ERCOT EEA1"}
            assert (await call("POST", url, token=VIEWER, body=window))[0] == 403
            status, body = await call("POST", url, token=OPERATOR, body={**window, "x": 1})
            assert status == 400
            assert {p["field"] for p in body["problems"]} == {"x"}
            status, body = await call(
                "POST", url, token=OPERATOR, body={**window, "duration_s": None, "end_s": 1.0}
            )
            assert (status, body["error"]) == (400, "the window ends before it starts")

            status, created = await call("POST", url, token=OPERATOR, body=window)
            assert status == 201, created
            assert (created["state"], created["by"], created["source"]) == (
                "in_force",
                "alice",
                "operator",
            )
            assert created["forecast"]["ok"] is True
            assert created["forecast"]["shortfalls"] == []
            window_id = created["id"]

            def shed() -> bool:
                last = central.policy.last
                return last is not None and last.curtailment is not None

            # the switch wave reads the same cap in force, at the wall of this site's config
            wave_power = central.dispatcher.scheduler.power
            assert wave_power.cap_w(central.clock()) == 700.0
            assert wave_power.reading_wall_w("rig:0", 100.0) == 100.0  # PUE 1, PSU 1 here
            await eventually(shed, what="a plan under the window")
            assert sorted(map(str, workloads(central))) == ["ai:acme", "ai:acme", "idle", "idle"]
            last = central.policy.last
            assert last is not None
            assert last.trigger == "curtailment"
            assert last.plan.total_power_w <= 700.0
            shed_gpu = next(k for k, a in last.plan.assignments.items() if a.workload == "idle")
            status, explained = await call(
                "GET", f"{central.http.url}/api/v1/gpus/{shed_gpu}/explain", token=VIEWER
            )
            assert status == 200
            # "switch to idle: ..." while the switch is ordered, "held: ..." once it is done
            assert explained["reason"].endswith(
                f": shed for curtailment window {window_id} (cap 0.7 kW)"
            )
            assert explained["curtailment"]["id"] == window_id
            status, plan = await call("GET", f"{central.http.url}/api/v1/plan", token=VIEWER)
            assert plan["power_cap_w"] == 700.0
            assert plan["curtailment"]["reason"] == "ERCOT EEA1"

            # a window tomorrow at 0.45 kW cannot keep acme's two GPUs (one 300 W GPU and three
            # idle ones at 22-42 W fit, two 300 W GPUs do not): said now, ahead of it
            tomorrow = central.clock() + 86_400
            status, ahead = await call(
                "POST",
                url,
                token=OPERATOR,
                body={
                    "cap_kw": 0.45,
                    "start_s": tomorrow,
                    "end_s": tomorrow + 3600,
                    "reason": "DR",
                },
            )
            assert status == 201
            assert ahead["state"] == "upcoming"
            assert ahead["forecast"]["ok"] is False
            (short,) = ahead["forecast"]["shortfalls"]
            assert (short["contract"], short["shortfall_gpus"]) == ("acme", 1)
            metrics = await _text(f"{central.http.url}/metrics")
            assert "orchestrator_curtailment_forecast_shortfall_gpus 1.0" in metrics

            status, _ = await call("DELETE", f"{url}/{window_id}", token=OPERATOR)
            assert status == 200
            assert (await call("DELETE", f"{url}/{window_id}", token=OPERATOR))[0] == 404
            await eventually(lambda: not shed(), what="a plan after the cancel")
            assert sorted(map(str, workloads(central))).count("mine:kawpow") == 2

            status, decisions = await call(
                "GET", f"{central.http.url}/api/v1/decisions?limit=100", token=VIEWER
            )
            kinds = {d["kind"] for d in decisions["decisions"]}
            assert {"curtailment.create", "curtailment.cancel"} <= kinds

        second = CentralDaemon(config(mosquitto, **RICH))
        async with running(second):
            assert second.http is not None
            status, listed = await call(
                "GET", f"{second.http.url}/api/v1/curtailments", token=VIEWER
            )
            assert status == 200
            states = {w["id"]: w["state"] for w in listed["windows"]}
            assert states == {window_id: "cancelled", ahead["id"]: "upcoming"}
            assert [w.id for w in second.policy.curtailments] == [ahead["id"]]
            assert listed["effective_cap_kw"] is None


async def _text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


async def test_serve_polls_a_utility_feed_and_plans_its_window(
    mosquitto: MosquittoBroker,
) -> None:
    """The feed as serve wires it: a real HTTP endpoint listing one window in force now."""
    listed: list[dict[str, Any]] = []

    async def windows(_request: web.Request) -> web.Response:
        return web.json_response({"windows": listed})

    app = web.Application()
    app.router.add_get("/dr", windows)
    feed_http = await start_http(app, host="127.0.0.1", port=0)
    feed = {"name": "utility", "url": f"{feed_http.url}/dr", "interval_s": 0.2}
    central = CentralDaemon(config(mosquitto, **RICH, curtailment={"feeds": [feed]}))
    agent = NodeAgent(agent_config(mosquitto, "rig", gpus=4))
    try:
        async with running(agent), running(central):
            await eventually(
                lambda: (
                    central.policy.last is not None and workloads(central).count("mine:kawpow") == 2
                ),
                what="two GPUs mining",
            )
            now_s = central.clock()
            listed.append({"id": "evt-9", "cap_kw": 0.7, "start": now_s - 1, "end": now_s + 600})

            def shed() -> bool:
                last = central.policy.last
                return last is not None and last.curtailment is not None

            await eventually(shed, what="a plan under the feed's window")
            last = central.policy.last
            assert last is not None
            assert last.curtailment is not None
            assert (last.curtailment.source, last.curtailment.cap_kw) == ("utility", 0.7)
            assert workloads(central).count("ai:acme") == 2
            assert "mine:kawpow" not in workloads(central)

            listed.clear()  # the utility withdraws it
            await eventually(lambda: not shed(), what="a plan after the withdrawal")
            assert central.curtailments.history()[0]["cancelled_by"] == "utility"
    finally:
        await feed_http.stop()
