"""Running the real daemons inside a test: in-process tasks over a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from orchestrator.agents.agent import NodeAgent
from orchestrator.config import AgentConfig, ServeConfig, parse_config
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.serve import CentralDaemon


def mqtt_section(broker: MosquittoBroker, **extra: Any) -> dict[str, Any]:
    return {
        "host": broker.host,
        "port": broker.port,
        "site": "test",
        "reconnect_initial_s": 0.1,
        "reconnect_max_s": 0.5,
        "keepalive_s": 5,
        **extra,
    }


def serve_config(broker: MosquittoBroker, **sections: Any) -> ServeConfig:
    document: dict[str, Any] = {
        "mqtt": mqtt_section(broker, client_id="test-serve"),
        "http": {"host": "127.0.0.1", "port": 0},
        "ingest": {"node_offline_after_s": 30.0, "staleness_check_interval_s": 0.1},
        "store": {"path": str(broker.workdir.parent / "serve.sqlite3")},
    }
    document.update(sections)
    return parse_config(document, "serve", source="<test>")


def agent_document(
    broker: MosquittoBroker, node: str, *, gpus: int = 8, interval_s: float = 0.2
) -> dict[str, Any]:
    # the agent's state and logs live beside the test's broker, never in /var/lib
    agent_dir = broker.workdir.parent / "agents" / node
    return {
        "node": {"name": node},
        "executor": {"state_dir": str(agent_dir / "state"), "log_dir": str(agent_dir / "logs")},
        "mqtt": mqtt_section(broker, client_id=f"test-agent-{node}"),
        "http": {"host": "127.0.0.1", "port": 0},
        "telemetry": {"interval_s": interval_s},
        "gpu": {
            "backend": "fake",
            "fake": {"gpus": gpus, "models": ["rtx-3090"], "initial_workloads": ["idle"]},
        },
    }


def agent_config(broker: MosquittoBroker, node: str, **kwargs: Any) -> AgentConfig:
    return parse_config(agent_document(broker, node, **kwargs), "agent", source="<test>")


@contextlib.asynccontextmanager
async def running(daemon: CentralDaemon | NodeAgent) -> AsyncIterator[asyncio.Event]:
    """Run a daemon as a task; on exit ask it to stop and wait for it to finish."""
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop), name=type(daemon).__name__)
    try:
        if isinstance(daemon, CentralDaemon):
            ready = asyncio.create_task(daemon.ready.wait())
            done, _ = await asyncio.wait(
                {ready, task}, timeout=15, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                task.result()
            if ready not in done:
                ready.cancel()
                raise AssertionError("serve did not become ready")
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
