"""An AI workload through the process driver: readiness probed over HTTP, drained, stopped.

The "inference server" is Python's own `http.server` (a real program answering `GET /` with
200), declared as a generic `http` server; it has no in-flight gauge, so its drain is the
profile's bounded grace period.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from orchestrator.agents.agent import NodeAgent
from orchestrator.demo.broker import MosquittoBroker, free_port
from tests.agents.executor.rig import agent_config, central_view, command, started

NODE = "rig-i"


def web_profile(port_base: int, cwd: Path) -> dict[str, Any]:
    return {
        "id": "web",
        "kind": "ai",
        "driver": "process",
        "serves_contracts": ["acme"],
        "expected_power_w": 300.0,
        "api_port_base": port_base,
        "start_timeout_s": 15.0,
        "stop_timeout_s": 5.0,
        "drain_timeout_s": 0.2,
        "process": {
            "argv": [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
            "cwd": str(cwd),
        },
        "health": {"server": "http", "url": "http://127.0.0.1:{port}"},
    }


async def test_an_http_inference_server_is_ready_by_its_endpoint_then_drained_and_stopped(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    config = agent_config(mosquitto, NODE, profiles=[web_profile(free_port("127.0.0.1"), tmp_path)])
    agent = NodeAgent(config)
    async with central_view(mosquitto, NODE) as view, started(agent):
        serve = await view.run(command(NODE, 1, "ai:acme"))
        assert serve.state == "done", serve.reason
        assert serve.reason == "HTTP 200"  # the readiness endpoint's answer
        await view.reported(1, "ai:acme")

        stop = command(NODE, 1, "idle")
        assert (await view.run(stop)).state == "done"
        progress = [e for e in view.switch_events(stop.command_id) if e.state == "progress"]
        assert [e.step for e in progress] == ["drain", "stop", "verify"]
        assert progress[1].at_s - progress[0].at_s >= 0.15  # the bounded grace period
        await view.reported(1, "idle")
