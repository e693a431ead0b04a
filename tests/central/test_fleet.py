"""Fleet state transitions: online, last will, silence, and unknown (never stopped) GPUs."""

from __future__ import annotations

from orchestrator.central.fleet import FleetState
from orchestrator.domain import NodeStatus
from orchestrator.protocol import GpuTelemetry, NodeStatusMessage, NodeTelemetry, WorkloadReport


def telemetry(node: str, *, seq: int = 1) -> NodeTelemetry:
    return NodeTelemetry(
        node=node,
        seq=seq,
        sent_at_s=0.0,
        agent_version="t",
        nvml_backend="fake",
        gpus=(GpuTelemetry(index=0, workload=WorkloadReport(workload="ai:acme")),),
    )


def test_telemetry_brings_a_node_online_and_the_latest_snapshot_wins() -> None:
    fleet = FleetState(offline_after_s=10)
    fleet.apply_telemetry(telemetry("a", seq=1), now_s=100)
    fleet.apply_telemetry(telemetry("a", seq=2), now_s=101)
    record = fleet.nodes["a"]
    assert record.status is NodeStatus.ONLINE
    assert record.telemetry is not None
    assert record.telemetry.seq == 2
    assert record.reports_total == 2
    assert [(v.key, v.workload) for v in fleet.gpus()] == [("a:0", "ai:acme")]


def test_the_last_will_makes_gpus_unknown_and_new_telemetry_brings_them_back() -> None:
    fleet = FleetState(offline_after_s=10)
    fleet.apply_telemetry(telemetry("a"), now_s=100)
    version = fleet.version
    fleet.apply_status(NodeStatusMessage(node="a", status=NodeStatus.OFFLINE), now_s=101)
    assert fleet.version > version
    assert fleet.nodes["a"].status_reason == "last will: offline"
    assert [(v.state, v.workload) for v in fleet.gpus()] == [("unknown", "unknown")]
    fleet.apply_telemetry(telemetry("a", seq=2), now_s=102)
    assert fleet.nodes["a"].status is NodeStatus.ONLINE
    assert [v.workload for v in fleet.gpus()] == ["ai:acme"]


def test_silence_beyond_the_limit_marks_a_node_offline_once() -> None:
    fleet = FleetState(offline_after_s=10)
    fleet.apply_telemetry(telemetry("a"), now_s=100)
    fleet.apply_telemetry(telemetry("b"), now_s=105)
    assert fleet.expire_silent(now_s=110) == []
    assert fleet.expire_silent(now_s=110.5) == ["a"]
    assert fleet.expire_silent(now_s=111) == []
    assert fleet.nodes["a"].status_reason == "silent for 10.5 s"
    assert fleet.nodes["b"].status is NodeStatus.ONLINE


def test_a_node_known_only_from_a_retained_status_gets_a_grace_period_from_start() -> None:
    fleet = FleetState(offline_after_s=10, started_at_s=1000)
    fleet.apply_status(NodeStatusMessage(node="a", status=NodeStatus.ONLINE), now_s=1000)
    assert fleet.expire_silent(now_s=1009) == []
    assert fleet.expire_silent(now_s=1011) == ["a"]
    assert fleet.counts() == {
        "nodes_total": 1,
        "nodes_online": 0,
        "gpus_total": 0,
        "gpus_ok": 0,
        "gpus_unknown": 0,
    }


def test_counts_agree_with_the_gpu_views_for_a_mixed_fleet() -> None:
    from orchestrator.domain import Health  # noqa: PLC0415

    fleet = FleetState(offline_after_s=10)
    sick = NodeTelemetry(
        node="b",
        seq=1,
        sent_at_s=0.0,
        agent_version="t",
        nvml_backend="fake",
        gpus=(GpuTelemetry(index=0), GpuTelemetry(index=1, health=Health.UNHEALTHY)),
    )
    fleet.apply_telemetry(telemetry("a"), now_s=100)
    fleet.apply_telemetry(sick, now_s=100)
    fleet.apply_telemetry(telemetry("c"), now_s=100)
    fleet.apply_status(NodeStatusMessage(node="c", status=NodeStatus.OFFLINE), now_s=101)
    fleet.apply_status(NodeStatusMessage(node="d", status=NodeStatus.ONLINE), now_s=101)
    views = list(fleet.gpus())
    assert fleet.counts() == {
        "nodes_total": 4,
        "nodes_online": 3,
        "gpus_total": len(views),
        "gpus_ok": sum(1 for v in views if v.state == "ok"),
        "gpus_unknown": sum(1 for v in views if v.state == "unknown"),
    }
    assert (fleet.counts()["gpus_ok"], fleet.counts()["gpus_unknown"]) == (2, 1)
