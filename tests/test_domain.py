"""The domain's value types: a workload id and a GPU key read back to what was written."""

from __future__ import annotations

from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domain import (
    AGENT_FINAL_STATES,
    AI_PREFIX,
    IDLE,
    MINE_PREFIX,
    UNKNOWN,
    GpuKey,
    SwitchState,
    Workload,
    WorkloadKind,
    ai_contract_of,
    ai_workload,
    gpu_key,
    mine_workload,
    workload_kind,
)
from orchestrator.protocol import AgentSwitchState

names = st.text(min_size=1, max_size=40)
nodes = st.text(min_size=1, max_size=40)
indexes = st.integers(min_value=0, max_value=10_000)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("mine:kawpow", Workload(WorkloadKind.MINING, "kawpow")),
        ("ai:acme", Workload(WorkloadKind.AI, "acme")),
        ("idle", Workload(WorkloadKind.IDLE)),
        ("ai:org:model", Workload(WorkloadKind.AI, "org:model")),  # only the first colon splits
        ("drain", Workload(WorkloadKind.UNKNOWN, "drain")),
    ],
)
def test_workload_parse_reads_kind_and_name(text: str, parsed: Workload) -> None:
    assert Workload.parse(text) == parsed
    assert str(parsed) == text


def test_workload_helpers_write_what_parse_reads() -> None:
    assert mine_workload("kawpow") == "mine:kawpow" == str(Workload(WorkloadKind.MINING, "kawpow"))
    assert ai_workload("acme") == "ai:acme" == str(Workload(WorkloadKind.AI, "acme"))
    assert str(Workload(WorkloadKind.IDLE)) == IDLE
    assert str(Workload(WorkloadKind.UNKNOWN)) == UNKNOWN


@given(name=names)
def test_mining_and_ai_workloads_round_trip(name: str) -> None:
    """Any profile or contract name survives str() and parse(), colons included."""
    for workload in (Workload(WorkloadKind.MINING, name), Workload(WorkloadKind.AI, name)):
        assert Workload.parse(str(workload)) == workload
    assert Workload.parse(mine_workload(name)) == Workload(WorkloadKind.MINING, name)
    assert Workload.parse(ai_workload(name)) == Workload(WorkloadKind.AI, name)


@given(text=st.text(min_size=1, max_size=60))
def test_any_workload_text_reads_back_to_itself(text: str) -> None:
    """parse() then str() gives back any non-empty text, whatever its kind."""
    assert str(Workload.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("mine:kawpow", WorkloadKind.MINING),
        ("ai:acme", WorkloadKind.AI),
        ("idle", WorkloadKind.IDLE),
        ("unknown", WorkloadKind.UNKNOWN),
        ("drain", WorkloadKind.UNKNOWN),
        ("", WorkloadKind.UNKNOWN),
        ("Mine:kawpow", WorkloadKind.UNKNOWN),  # prefixes are case-sensitive
        ("idle:x", WorkloadKind.UNKNOWN),
    ],
)
def test_workload_kind_classifies_by_prefix(text: str, kind: WorkloadKind) -> None:
    assert workload_kind(text) is kind


@pytest.mark.parametrize(
    ("workload", "contract"),
    [
        ("ai:acme", "acme"),
        ("ai:org:model", "org:model"),
        ("mine:acme", None),
        ("idle", None),
        ("acme", None),
        (None, None),
    ],
)
def test_ai_contract_of_names_the_contract_of_ai_workloads_only(
    workload: str | None, contract: str | None
) -> None:
    assert ai_contract_of(workload) == contract


@given(name=names)
def test_ai_contract_of_inverts_ai_workload(name: str) -> None:
    assert ai_contract_of(ai_workload(name)) == name
    assert ai_contract_of(mine_workload(name)) is None


def test_prefixes_are_the_ones_on_the_wire() -> None:
    """Agents, the planner and stored overrides all carry these exact strings."""
    assert (MINE_PREFIX, AI_PREFIX, IDLE, UNKNOWN) == ("mine:", "ai:", "idle", "unknown")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("rig-1:0", GpuKey("rig-1", 0)),
        ("rig-1:13", GpuKey("rig-1", 13)),
        ("site:a:rig:7", GpuKey("site:a:rig", 7)),  # the last colon splits
    ],
)
def test_gpu_key_parse_reads_node_and_index(text: str, key: GpuKey) -> None:
    assert GpuKey.parse(text) == key
    assert str(key) == text


@given(node=nodes, index=indexes)
def test_gpu_key_round_trips(node: str, index: int) -> None:
    """Any node name (colons included) and index survive str() and parse()."""
    key = GpuKey(node, index)
    assert str(key) == gpu_key(node, index)
    assert GpuKey.parse(str(key)) == key
    assert (GpuKey.parse(gpu_key(node, index)).node, GpuKey.parse(str(key)).index) == (node, index)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "rig-1",  # no index
        ":3",  # no node
        "rig-1:",  # empty index
        "rig-1:x",
        "rig-1:-1",
        "rig-1:+1",
        "rig-1: 1",
        "rig-1:1.0",
        "rig-1:\u0663",  # an Arabic-Indic digit: isdigit() but not an NVML index
        "rig-1:\u00b2",  # a superscript two
        "GPU-5f1e2c3d-0000-1111-2222-333344445555",  # a UUID is not a node:index key
    ],
)
def test_gpu_key_parse_refuses_anything_but_node_colon_index(text: str) -> None:
    with pytest.raises(ValueError, match="not a GPU key"):
        GpuKey.parse(text)


def test_agent_switch_states_are_the_switch_states_an_agent_reports() -> None:
    """One vocabulary: the protocol's agent states are exactly the `SwitchState` values
    from `accepted` to the final words, and the final ones are those `final` names."""
    agent_states = set(get_args(AgentSwitchState))
    assert agent_states == {
        s.value for s in SwitchState if s.final or s in (SwitchState.ACCEPTED, SwitchState.PROGRESS)
    }
    assert {s.value for s in AGENT_FINAL_STATES} == {"done", "failed", "rolled_back", "refused"}
    assert SwitchState.ROLLED_BACK.failure
    assert not SwitchState.DONE.failure
