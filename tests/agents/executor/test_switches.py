"""The switch executor end to end: commands in over a real mosquitto, events and telemetry out.

A `NodeAgent` with fake GPUs and sim workloads (delays scaled down) receives `SwitchCommand`s
on its command topic, exactly as the central dispatcher sends them.
"""

from __future__ import annotations

import time

from orchestrator.agents.agent import NodeAgent
from orchestrator.agents.gpu import FakeGpuBackend
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.protocol import SwitchEvent
from tests.agents.executor.rig import (
    StartCounter,
    agent_config,
    central_view,
    command,
    started,
)
from tests.waiting import eventually

NODE = "rig-x"


def steps(view_events: list[SwitchEvent], state: str = "progress") -> list[str | None]:
    return [e.step for e in view_events if e.state == state]


async def test_a_switch_reports_every_step_and_telemetry_then_shows_the_new_workload(
    mosquitto: MosquittoBroker,
) -> None:
    """idle -> mine -> ai -> idle: accepted, progress per step, done; telemetry follows."""
    agent = NodeAgent(agent_config(mosquitto, NODE))
    async with central_view(mosquitto, NODE) as view, started(agent):
        to_mine = command(NODE, 0, "mine:miner-a")
        done = await view.run(to_mine)
        assert (done.state, done.gpu_index, done.workload) == ("done", 0, "mine:miner-a")
        events = view.switch_events(to_mine.command_id)
        assert [e.state for e in events] == ["accepted", *["progress"] * 4, "done"]
        assert steps(events) == ["stop", "verify", "start", "health"]
        gpu = await view.reported(0, "mine:miner-a")
        assert gpu.workload is not None
        assert gpu.workload.hashrate_hs == 25e6  # the sim miner's own reading
        assert gpu.workload.since_s is not None
        assert abs(gpu.workload.since_s - time.time()) < 10
        other = view.gpu(1)
        assert other is not None
        assert other.workload is not None
        assert other.workload.workload == "idle"  # the other GPU was not touched

        to_ai = command(NODE, 0, "ai:acme")  # served by profile `llm` (serves_contracts)
        assert (await view.run(to_ai)).state == "done"
        await view.reported(0, "ai:acme")

        to_idle = command(NODE, 0, "idle")
        assert (await view.run(to_idle)).state == "done"
        assert steps(view.switch_events(to_idle.command_id)) == ["drain", "stop", "verify"]
        gpu = await view.reported(0, "idle")
        assert gpu.processes == ()  # NVML shows the GPU free


async def test_a_start_that_fails_is_rolled_back_to_the_previous_workload(
    mosquitto: MosquittoBroker,
) -> None:
    """The new workload cannot start: the old one is started again and runs; rolled_back."""
    agent = NodeAgent(agent_config(mosquitto, NODE))
    async with central_view(mosquitto, NODE) as view, started(agent):
        assert (await view.run(command(NODE, 0, "mine:miner-a"))).state == "done"
        bad = command(NODE, 0, "mine:miner-bad")
        result = await view.run(bad)
        assert result.state == "rolled_back"
        assert result.step == "start"
        assert "simulated start failure" in result.reason
        assert "mine:miner-a runs again" in result.reason
        assert "rollback" in steps(view.switch_events(bad.command_id))
        await view.reported(0, "mine:miner-a")
        assert isinstance(agent.backend, FakeGpuBackend)
        assert agent.backend.workload_of(0) == "mine:miner-a"


async def test_a_command_of_an_older_generation_is_refused(mosquitto: MosquittoBroker) -> None:
    """Fencing: once generation 5 was acted on, generation 4 is refused and not run."""
    agent = NodeAgent(agent_config(mosquitto, NODE))
    async with central_view(mosquitto, NODE) as view, started(agent):
        assert (await view.run(command(NODE, 0, "mine:miner-a", generation=5))).state == "done"
        old = await view.run(command(NODE, 1, "mine:miner-b", generation=4))
        assert old.state == "refused"
        assert "generation 4 is older than 5" in old.reason
        same = await view.run(command(NODE, 1, "mine:miner-b", generation=5))
        assert same.state == "done"  # the same generation is fine


async def test_a_stale_command_is_refused(mosquitto: MosquittoBroker) -> None:
    """A command received after `expires_at_s` is not run."""
    agent = NodeAgent(agent_config(mosquitto, NODE))
    async with central_view(mosquitto, NODE) as view, started(agent):
        stale = command(NODE, 0, "mine:miner-a", issued_at_s=time.time() - 120, ttl_s=60)
        result = await view.run(stale)
        assert result.state == "refused"
        assert result.reason.startswith("stale")
        assert [e.state for e in view.switch_events(stale.command_id)] == ["refused"]
        gpu = await view.reported(0, "idle")
        assert gpu.workload is not None
        assert gpu.workload.workload == "idle"


async def test_an_unknown_profile_or_contract_is_refused(mosquitto: MosquittoBroker) -> None:
    """Only declared workloads run: `mine:<unknown>` and `ai:<unserved contract>` are refused."""
    agent = NodeAgent(agent_config(mosquitto, NODE))
    async with central_view(mosquitto, NODE) as view, started(agent):
        for workload in ("mine:nope", "ai:nobody", "sideload:x"):
            result = await view.run(command(NODE, 0, workload))
            assert result.state == "refused", workload
            assert "unknown profile" in result.reason
        missing = await view.run(command(NODE, 7, "mine:miner-a"))
        assert (missing.state, missing.reason) == ("refused", "no GPU 7 here")


async def test_a_repeated_command_id_gets_the_recorded_answer_and_runs_once(
    mosquitto: MosquittoBroker,
) -> None:
    """Idempotence: the same command id twice starts the workload once, answers twice alike."""
    agent = NodeAgent(agent_config(mosquitto, NODE))
    async with central_view(mosquitto, NODE) as view, started(agent):
        starts = StartCounter(agent.drivers.for_profile(agent.config.profiles[0]))
        switch = command(NODE, 0, "mine:miner-a")
        first = await view.run(switch)
        await view.send(switch)
        second = await view.final(switch, count=2)
        assert first == second  # the recorded event, byte for byte (its at_s included)
        assert starts.calls == ["mine:miner-a"]
        assert [e.state for e in view.switch_events(switch.command_id)].count("accepted") == 1


async def test_gpus_switch_in_parallel_each_gpu_in_order_and_the_latest_command_wins(
    mosquitto: MosquittoBroker,
) -> None:
    """Two GPUs switch at once; one GPU runs one switch at a time, and of two commands
    queued behind a running switch only the newer runs (the older is refused: superseded)."""
    agent = NodeAgent(agent_config(mosquitto, NODE))
    async with central_view(mosquitto, NODE) as view, started(agent):
        a0 = command(NODE, 0, "ai:acme")
        a1 = command(NODE, 1, "ai:acme")
        await view.send(a0)
        await view.send(a1)
        await eventually(
            lambda: len(view.switch_events(a0.command_id)) >= 2, what="GPU 0 switching"
        )
        b0 = command(NODE, 0, "mine:miner-a")
        c0 = command(NODE, 0, "mine:miner-b")
        await view.send(b0)
        await view.send(c0)
        results = {s.command_id: await view.final(s) for s in (a0, a1, b0, c0)}
        assert [results[s.command_id].state for s in (a0, a1, b0, c0)] == [
            "done",
            "done",
            "refused",
            "done",
        ]
        assert results[b0.command_id].reason == f"superseded by command {c0.command_id}"
        # GPU 1 did not wait for GPU 0; GPU 0's next switch began after its first ended
        assert results[a1.command_id].at_s < results[c0.command_id].at_s
        c0_progress = [e for e in view.switch_events(c0.command_id) if e.state == "progress"]
        assert c0_progress[0].at_s >= results[a0.command_id].at_s
        await view.reported(0, "mine:miner-b")
        await view.reported(1, "ai:acme")
