"""Agent → real mosquitto → serve → HTTP, end to end.

Each test runs the real daemons over a real mosquitto on a loopback port; only the
GPUs are fake. Conditions are polled with a deadline, never slept on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from orchestrator.agents.agent import NodeAgent
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.domain import NodeStatus
from orchestrator.mqtt import MqttLink
from orchestrator.protocol import (
    GpuTelemetry,
    NodeTelemetry,
    Topics,
    encode,
)
from orchestrator.serve import CentralDaemon
from tests.central.harness import agent_config, agent_document, mqtt_section, running, serve_config
from tests.waiting import eventually

pytestmark = pytest.mark.slow


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def get_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format, 0 if absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_gpus_of_an_agent_appear_in_state_with_their_telemetry(
    mosquitto: MosquittoBroker,
) -> None:
    central = CentralDaemon(serve_config(mosquitto))
    agent = NodeAgent(agent_config(mosquitto, "rig-a"))
    async with running(central), running(agent):
        assert central.http is not None
        url = central.http.url
        await eventually(
            lambda: central.fleet.counts()["gpus_total"] == 8, timeout_s=5, what="8 GPUs ingested"
        )
        status, state = await get_json(f"{url}/api/v1/state")
        assert status == 200
        assert state["summary"]["nodes_online"] == 1
        (node,) = state["nodes"]
        assert node["node"] == "rig-a"
        assert node["status"] == "online"
        assert node["nvml_backend"] == "fake"
        assert 0 <= node["last_report_age_s"] < 2
        gpus = node["gpus"]
        assert [g["gpu"] for g in gpus] == [f"rig-a:{i}" for i in range(8)]
        assert len({g["uuid"] for g in gpus}) == 8
        first = gpus[0]["telemetry"]
        assert first["name"] == "NVIDIA GeForce RTX 3090"
        assert first["memory_total_bytes"] > first["memory_used_bytes"] > 0
        assert 0 < first["power_draw_w"] <= first["power_limit_w"]
        assert gpus[0]["state"] == "ok"
        assert gpus[0]["workload"] == "idle"

        status, ready = await get_json(f"{url}/readyz")
        assert (status, ready["ready"]) == (200, True)
        metrics = await get_text(f"{url}/metrics")
        assert metric_value(metrics, "orchestrator_node_up", Hostname="rig-a") == 1.0
        assert metric_value(metrics, "orchestrator_gpu_power_watts", gpu="0", Hostname="rig-a") > 0
        assert metric_value(metrics, "orchestrator_mqtt_messages_total", channel="telemetry") >= 1

        assert agent.http is not None
        status, health = await get_json(f"{agent.http.url}/healthz")
        assert status == 200
        assert health["broker_connected"] is True
        assert health["gpus"] == 8
        agent_metrics = await get_text(f"{agent.http.url}/metrics")
        assert (
            metric_value(
                agent_metrics, "orchestrator_agent_telemetry_published_total", result="sent"
            )
            >= 1
        )


async def test_a_cleanly_stopped_agent_says_offline_and_its_gpus_become_unknown(
    mosquitto: MosquittoBroker,
) -> None:
    central = CentralDaemon(serve_config(mosquitto))
    agent = NodeAgent(agent_config(mosquitto, "rig-b", gpus=2))
    async with running(central):
        async with running(agent):
            await eventually(
                lambda: central.fleet.counts()["gpus_total"] == 2, what="GPUs ingested"
            )
        await eventually(
            lambda: central.fleet.nodes["rig-b"].status is NodeStatus.OFFLINE,
            what="node offline",
        )
        assert central.fleet.nodes["rig-b"].status_reason == "last will: offline"
        views = list(central.fleet.gpus())
        assert {(v.state, v.workload) for v in views} == {("unknown", "unknown")}


def write_agent_toml(path: Path, document: dict[str, Any]) -> None:
    lines = []
    for section, values in document.items():
        if section == "gpu":
            lines.append("[gpu]")
            lines.append(f'backend = "{values["backend"]}"')
            lines.append("[gpu.fake]")
            for key, value in values["fake"].items():
                lines.append(f"{key} = {_toml(value)}")
            continue
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


async def test_a_sigkilled_agent_process_is_reported_offline_through_its_last_will(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The silence timeout is 30 s, so only the broker's last will can explain the change."""
    config_path = tmp_path / "agent.toml"
    write_agent_toml(config_path, agent_document(mosquitto, "rig-k", gpus=4))
    central = CentralDaemon(serve_config(mosquitto))
    async with running(central):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orchestrator",
            "agent",
            "-c",
            str(config_path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            await eventually(
                lambda: central.fleet.counts()["gpus_total"] == 4,
                timeout_s=20,
                what="the agent process's GPUs",
            )
            process.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGKILL
            await eventually(
                lambda: central.fleet.nodes["rig-k"].status is NodeStatus.OFFLINE,
                timeout_s=10,
                what="the last will",
            )
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert central.fleet.nodes["rig-k"].status_reason == "last will: offline"
        assert central.fleet.counts()["gpus_unknown"] == 4


async def test_a_silent_node_goes_offline_after_the_configured_silence(
    mosquitto: MosquittoBroker,
) -> None:
    central = CentralDaemon(
        serve_config(
            mosquitto, ingest={"node_offline_after_s": 0.5, "staleness_check_interval_s": 0.05}
        )
    )
    topics = Topics("fleet/v1/test")
    publisher = MqttLink(
        serve_config(mosquitto).mqtt.model_copy(update={"client_id": "ghost"}), client_id="ghost"
    )
    async with running(central):
        link_task = asyncio.create_task(publisher.run())
        try:
            await asyncio.wait_for(publisher.connected.wait(), 5)
            snapshot = NodeTelemetry(
                node="ghost",
                seq=1,
                sent_at_s=0.0,
                agent_version="test",
                nvml_backend="fake",
                gpus=(GpuTelemetry(index=0),),
            )
            assert await publisher.publish(topics.telemetry("ghost"), encode(snapshot))
            await eventually(lambda: "ghost" in central.fleet.nodes, what="ghost node")
            await eventually(
                lambda: central.fleet.nodes["ghost"].status is NodeStatus.OFFLINE,
                what="silence timeout",
            )
            assert central.fleet.nodes["ghost"].status_reason.startswith("silent for")
        finally:
            link_task.cancel()
            await asyncio.gather(link_task, return_exceptions=True)


async def test_both_sides_survive_a_broker_restart_without_help(
    mosquitto: MosquittoBroker,
) -> None:
    central = CentralDaemon(serve_config(mosquitto))
    agent = NodeAgent(agent_config(mosquitto, "rig-r", gpus=1))
    async with running(central), running(agent):
        await eventually(lambda: central.fleet.counts()["gpus_total"] == 1, what="first report")
        mosquitto.stop_sync()
        await eventually(
            lambda: not central.link.connected.is_set(), what="serve to see the broker go"
        )
        await eventually(
            lambda: not agent.link.connected.is_set(), what="agent to see the broker go"
        )
        reports_during_outage = central.fleet.nodes["rig-r"].reports_total
        assert central.readiness()["broker_connected"] is False

        mosquitto.start_sync()  # same port, empty broker: no retained state survives
        await eventually(central.link.connected.is_set, what="serve to reconnect")
        await eventually(agent.link.connected.is_set, what="agent to reconnect")
        await eventually(
            lambda: central.fleet.nodes["rig-r"].reports_total > reports_during_outage + 2,
            what="telemetry to flow again",
        )
        assert central.fleet.nodes["rig-r"].status is NodeStatus.ONLINE
        assert central.link.connections_total >= 2
        assert agent.link.connections_total >= 2
        assert central.http is not None
        status, _ = await get_json(f"{central.http.url}/readyz")
        assert status == 200
        agent_metrics = await get_text(f"{agent.http.url}/metrics") if agent.http else ""
        assert (
            metric_value(
                agent_metrics, "orchestrator_agent_telemetry_published_total", result="dropped"
            )
            >= 1
        )


async def test_bad_payloads_are_counted_and_dropped_while_serve_keeps_serving(
    mosquitto: MosquittoBroker,
) -> None:
    central = CentralDaemon(
        serve_config(mosquitto, mqtt=mqtt_section(mosquitto, max_payload_bytes=4096))
    )
    topics = Topics("fleet/v1/test")
    publisher = MqttLink(central.config.mqtt, client_id="fuzzer")
    good = NodeTelemetry(
        node="good",
        seq=1,
        sent_at_s=0.0,
        agent_version="test",
        nvml_backend="fake",
        gpus=(GpuTelemetry(index=0, power_draw_w=100.0),),
    )
    good_bytes = encode(good)
    bad: list[tuple[str, bytes, str]] = [
        ("n1", b"\x00\xffgarbage", "malformed"),
        ("n1", b"", "malformed"),
        ("n1", good_bytes[: len(good_bytes) // 2], "malformed"),
        ("n1", b'{"schema": 1, "node": "n1"}', "malformed"),
        (
            "n1",
            (
                b'{"schema": 1, "node": "n1", "seq": 1, "sent_at_s": "soon", "agent_version": "x",'
                b' "nvml_backend": "fake", "gpus": []}'
            ),
            "malformed",
        ),
        ("n1", good_bytes.replace(b'"schema":1', b'"schema":2'), "unknown_version"),
        (
            "n1",
            good_bytes.replace(b'"node":"good"', b'"node":"n1"')[:-1] + b" " * 5000 + b"}",
            "oversized",
        ),
        ("n1", good_bytes, "node_mismatch"),
        ("n1", good_bytes.replace(b'"power_draw_w":100.0', b'"power_draw_w":-5'), "malformed"),
    ]
    async with running(central):
        assert central.http is not None
        link_task = asyncio.create_task(publisher.run())
        try:
            await asyncio.wait_for(publisher.connected.wait(), 5)
            for node, payload, _ in bad:
                assert await publisher.publish(topics.telemetry(node), payload)
            assert await publisher.publish(topics.telemetry("good"), good_bytes)
            await eventually(lambda: "good" in central.fleet.nodes, what="the good payload")
            expected: dict[str, int] = {}
            for _, _, reason in bad:
                expected[reason] = expected.get(reason, 0) + 1

            async def counted() -> dict[str, float]:
                text = await get_text(f"{central.http.url}/metrics")  # type: ignore[union-attr]
                return {
                    reason: metric_value(
                        text,
                        "orchestrator_payloads_dropped_total",
                        channel="telemetry",
                        reason=reason,
                    )
                    for reason in expected
                }

            for _ in range(100):
                if await counted() == expected:
                    break
                await asyncio.sleep(0.05)
            assert await counted() == expected
        finally:
            link_task.cancel()
            await asyncio.gather(link_task, return_exceptions=True)
        status, state = await get_json(f"{central.http.url}/api/v1/state")
        assert status == 200
        assert [n["node"] for n in state["nodes"]] == ["good"]
        assert "n1" not in central.fleet.nodes
