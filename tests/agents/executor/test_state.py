"""The persisted state: atomic JSON files, another node's directory refused, bad files set aside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.agents.state import GpuRecord, NodeRecord, StateDirError, StateStore


async def test_records_round_trip_and_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state", node="rig")
    assert store.load_node() == NodeRecord("rig")  # a fresh node: nothing acted on
    record = GpuRecord(
        0, workload="mine:a", since_s=12.5, profile_id="a", desired_workload="mine:a"
    )
    record.remember({"command_id": "c1", "state": "done"}, keep=2)
    record.remember({"command_id": "c2", "state": "refused"}, keep=2)
    record.remember({"command_id": "c3", "state": "done"}, keep=2)
    await store.save_gpu(record)
    await store.save_node(NodeRecord("rig", 9))

    again = StateStore(tmp_path / "state", node="rig")
    assert again.load_node().highest_generation == 9
    loaded = again.load_gpu(0)
    assert loaded == record
    assert loaded.result_for("c1") is None  # only the newest `keep` results are remembered
    assert loaded.result_for("c3") == {"command_id": "c3", "state": "done"}
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["gpu-0.json", "node.json"]


async def test_a_state_dir_of_another_node_is_refused(tmp_path: Path) -> None:
    await StateStore(tmp_path, node="rig-a").save_node(NodeRecord("rig-a", 3))
    with pytest.raises(StateDirError, match="belongs to node 'rig-a'"):
        StateStore(tmp_path, node="rig-b").load_node()


def test_an_unreadable_gpu_file_is_moved_aside_and_the_gpu_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "gpu-1.json").write_text("{not json")
    (tmp_path / "gpu-2.json").write_text(json.dumps({"version": 1, "index": 3}))
    store = StateStore(tmp_path, node="rig")
    assert store.load_gpu(1) is None
    assert store.load_gpu(2) is None  # a record of another GPU in this GPU's file
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n.split("-")[0:2] for n in names] == [
        ["gpu", "1.json.corrupt"],
        ["gpu", "2.json.corrupt"],
    ]
