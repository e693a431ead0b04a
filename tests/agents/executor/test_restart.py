"""An agent restart: workloads are re-attached, not restarted; finished commands stay finished.

The "restart" is a second `NodeAgent` on the same state directory and the same (simulated)
GPUs, as after `systemctl restart orchestrator-agent`: the sim workloads kept running on the
fake GPUs while no agent was there (fail-static).
"""

from __future__ import annotations

import json

from orchestrator.agents.agent import NodeAgent
from orchestrator.agents.gpu import FakeGpuBackend, build_backend
from orchestrator.demo.broker import MosquittoBroker
from tests.agents.executor.rig import (
    StartCounter,
    agent_config,
    central_view,
    command,
    started,
    state_dir,
)

NODE = "rig-r"


async def test_after_a_restart_the_workload_is_recovered_and_old_commands_are_not_rerun(
    mosquitto: MosquittoBroker,
) -> None:
    config = agent_config(mosquitto, NODE)
    backend = build_backend(config.gpu, node=NODE)
    assert isinstance(backend, FakeGpuBackend)
    first = NodeAgent(config, backend=backend)
    to_mine = command(NODE, 0, "mine:miner-a", generation=7)
    async with central_view(mosquitto, NODE) as view:
        async with started(first, keep_workloads=True) as executor:
            done = await view.run(to_mine)
            assert done.state == "done"
            handle = executor.slots[0].handle
            assert handle is not None
        # the agent is gone; its workload is not
        assert backend.workload_of(0) == "mine:miner-a"
        persisted = json.loads((state_dir(first) / "gpu-0.json").read_text())
        assert persisted["handle"]["ref"] == handle.ref
        assert persisted["workload"] == "mine:miner-a"

        second = NodeAgent(config, backend=backend)
        starts = StartCounter(second.drivers.for_profile(config.profiles[0]))
        async with started(second) as recovered:
            slot = recovered.slots[0]
            assert slot.handle is not None
            assert slot.handle.ref == handle.ref  # re-attached to the same workload
            assert slot.record.workload == "mine:miner-a"
            await view.reported(0, "mine:miner-a")

            await view.send(to_mine)  # a replay (the broker redelivers, or central retries)
            replayed = await view.final(to_mine, count=2)
            assert replayed == done
            older = await view.run(command(NODE, 1, "mine:miner-b", generation=6))
            assert older.state == "refused"  # the fencing generation survived the restart
            assert starts.calls == []  # nothing was started again
            assert backend.workload_of(1) == "idle"


async def test_a_switch_cut_short_by_a_restart_is_recorded_failed_not_resumed(
    mosquitto: MosquittoBroker,
) -> None:
    """A command in progress when the agent died is said `failed` as soon as the agent is
    back on the broker (serve need not wait for its timeout), with what the GPU runs, and a
    replay of it gets the same answer."""
    config = agent_config(mosquitto, NODE)
    backend = build_backend(config.gpu, node=NODE)
    gpu0 = state_dir(NodeAgent(config, backend=backend)) / "gpu-0.json"
    gpu0.parent.mkdir(parents=True)
    interrupted = command(NODE, 0, "mine:miner-a")
    gpu0.write_text(
        json.dumps(
            {
                "version": 1,
                "index": 0,
                "workload": "idle",
                "intent": {
                    "command_id": interrupted.command_id,
                    "generation": 1,
                    "workload": "mine:miner-a",
                    "step": "start",
                },
            }
        )
    )
    assert isinstance(backend, FakeGpuBackend)
    agent = NodeAgent(config, backend=backend)
    async with central_view(mosquitto, NODE) as view, started(agent):
        said = await view.final(interrupted)  # unasked: published at the connection
        assert (said.state, said.step, said.actual) == ("failed", "start", "idle")
        assert "agent restarted" in said.reason
        assert said.seq is not None
        assert said.boot_s == agent.order.boot_s
        await view.send(interrupted)
        answer = await view.final(interrupted, count=2)
        assert answer == said  # the replay is answered from the record
        assert backend.workload_of(0) == "idle"
