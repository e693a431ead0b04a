"""Fencing across leaders: a new term's generations are above any an older term can issue,
so once an agent has acted on the new leader's order, the deposed leader's are refused."""

from __future__ import annotations

from pathlib import Path

from orchestrator.agents.agent import NodeAgent
from orchestrator.central.store import GENERATION_TERM_BITS, Store
from orchestrator.demo.broker import MosquittoBroker
from tests.agents.executor.rig import agent_config, central_view, command, started

NODE = "rig-f"


def test_each_term_starts_above_every_generation_of_the_terms_before(tmp_path: Path) -> None:
    path = tmp_path / "serve.sqlite3"
    first = Store(path)
    base_one = first.begin_term()
    assert base_one == 1 << GENERATION_TERM_BITS
    second = Store(path)  # a second daemon on the same store takes over
    base_two = second.begin_term()
    assert base_two == 2 << GENERATION_TERM_BITS
    # however long the deposed leader keeps counting in memory, it stays below
    assert base_one + (1 << GENERATION_TERM_BITS) - 1 < base_two + 1
    first.close()
    second.close()
    reopened = Store(path)
    assert reopened.begin_term() == 3 << GENERATION_TERM_BITS
    reopened.close()


async def test_a_deposed_leaders_commands_are_refused_by_the_agent(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Leader A plans for a while; leader B takes the term; the agent acts on B's order;
    A, unaware, orders again with its next generation: the agent refuses it and runs nothing."""
    path = tmp_path / "serve.sqlite3"
    leader_a, leader_b = Store(path), Store(path)
    generation_a = leader_a.begin_term() + 1
    agent = NodeAgent(agent_config(mosquitto, NODE))
    async with central_view(mosquitto, NODE) as view, started(agent):
        first = await view.run(command(NODE, 0, "mine:miner-a", generation=generation_a))
        assert first.state == "done"  # A is the leader: obeyed
        generation_a += 1_000  # A keeps planning
        generation_b = leader_b.begin_term() + 1  # B takes over
        taken = await view.run(command(NODE, 1, "mine:miner-a", generation=generation_b))
        assert taken.state == "done"
        stale = await view.run(command(NODE, 0, "idle", generation=generation_a + 1))
        assert stale.state == "refused"
        assert f"generation {generation_a + 1} is older than {generation_b}" in stale.reason
        gpu0 = view.gpu(0)
        assert gpu0 is not None
        assert gpu0.workload is not None
        assert gpu0.workload.workload == "mine:miner-a"  # nothing ran
    leader_a.close()
    leader_b.close()
