"""The text renderings of `/api/v1/state` and the per-GPU metrics say exactly what the
generic paths said: the same JSON document, the same exposition lines."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orchestrator.central.fleet import FleetState, NodeRecord
from orchestrator.central.reader import PlanRecord
from orchestrator.domain import UNKNOWN, Health, NodeStatus, gpu_key
from orchestrator.policy.model import Assignment, CandidateValue
from orchestrator.protocol import (
    GpuProcess,
    GpuTelemetry,
    NodeStatusMessage,
    NodeTelemetry,
    WorkloadReport,
)
from orchestrator.web.metrics import FleetMetrics
from orchestrator.web.plan_metrics import PlanCollector
from orchestrator.web.rendering import LabelCache, StateRenderer, node_head

NOW_S = 1_790_000_000.0


def node_json(record: NodeRecord, now_s: float, plan: PlanRecord | None = None) -> dict[str, Any]:
    """The reference: one node of `/api/v1/state` built as dicts, the slow obvious way."""
    online = record.status is NodeStatus.ONLINE
    telemetry = record.telemetry
    gpus = []
    if telemetry is not None:
        for gpu in telemetry.gpus:
            reported = gpu.workload.workload if gpu.workload else UNKNOWN
            key = gpu_key(record.name, gpu.index)
            assignment = plan.plan.assignments.get(key) if plan else None
            gpus.append(
                {
                    "gpu": key,
                    "uuid": gpu.uuid,
                    "state": gpu.health.value if online else UNKNOWN,
                    "workload": reported if online else UNKNOWN,
                    "last_reported_workload": reported,
                    "planned_workload": assignment.workload if assignment else None,
                    "reason": assignment.reason if assignment else None,
                    "telemetry": gpu.model_dump(mode="json", exclude_none=True),
                }
            )
    return {**node_head(record, now_s), "gpus": gpus}


def _gpu(index: int, **extra: Any) -> GpuTelemetry:
    base: dict[str, Any] = {
        "index": index,
        "uuid": f"GPU-{index:04d}",
        "name": 'NVIDIA "Quoted" \\ Model',
        "memory_total_bytes": 24 * 1024**3,
        "memory_used_bytes": 3_807_205_658,
        "utilization_gpu_pct": 99.0,
        "temperature_c": 69.5,
        "power_draw_w": 289.03,
        "processes": (GpuProcess(pid=10 + index, used_memory_bytes=123, name="t-rex"),),
        "workload": WorkloadReport(workload="mine:kawpow", since_s=NOW_S - 60, hashrate_hs=58e6),
    }
    base.update(extra)
    return GpuTelemetry(**base)


def _fleet() -> FleetState:
    fleet = FleetState(offline_after_s=10.0)
    gpus = (
        _gpu(0),
        _gpu(1, uuid=None, workload=None, health=Health.DEGRADED),
        _gpu(2, health_reasons=("quarantined: crash loop",), power_draw_w=None),
        _gpu(3, name="Ünïcode GPU\nnewline", temperature_c=None),
    )
    for node in ("rig-b", "rig-a", "rig-c"):
        fleet.apply_telemetry(
            NodeTelemetry(
                node=node,
                seq=1,
                sent_at_s=NOW_S,
                agent_version="0.1.0",
                nvml_backend="fake",
                driver_version=None if node == "rig-c" else "550.1",
                gpus=gpus,
            ),
            now_s=NOW_S - 2,
        )
    fleet.apply_status(NodeStatusMessage(node="rig-c", status=NodeStatus.OFFLINE), now_s=NOW_S)
    fleet.apply_status(NodeStatusMessage(node="rig-quiet", status=NodeStatus.ONLINE), now_s=NOW_S)
    return fleet


def _assignments() -> dict[str, Assignment]:
    return {
        "rig-a:0": Assignment(
            "rig-a:0",
            "idle",
            "mine:kawpow",
            True,  # noqa: FBT003  (the dataclass's positional field `changed`)
            'switch to idle: "power" price',
            "free",
            (CandidateValue("mine:kawpow", -0.01, 280.0), CandidateValue("idle", 0.0, 30.0)),
        ),
        "rig-b:1": Assignment(
            "rig-b:1", None, None, changed=False, reason="unknown", lock="offline", candidates=()
        ),
    }


def _old_state(fleet: FleetState, plan: Any) -> dict[str, Any]:
    """`/api/v1/state` as the handler built it before the text rendering."""
    return {
        "site": "s",
        "generated_at_s": NOW_S,
        "summary": fleet.counts(),
        "plan_generation": plan.generation if plan else None,
        "nodes": [
            node_json(r, NOW_S, plan) for r in sorted(fleet.nodes.values(), key=lambda r: r.name)
        ],
    }


def _render(renderer: StateRenderer, fleet: FleetState, plan: Any) -> dict[str, Any]:
    body = renderer.render(
        fleet=fleet,
        site="s",
        now_s=NOW_S,
        assignments=plan.plan.assignments if plan else None,
        plan=plan,
        plan_generation=plan.generation if plan else None,
    )
    document: dict[str, Any] = json.loads(body)
    return document


def test_state_rendering_is_the_document_the_dicts_made_with_and_without_a_plan() -> None:
    fleet = _fleet()
    plan = SimpleNamespace(generation=7, plan=SimpleNamespace(assignments=_assignments()))
    renderer = StateRenderer()
    assert _render(renderer, fleet, None) == _old_state(fleet, None)
    assert _render(renderer, fleet, plan) == _old_state(fleet, plan)
    # a node's gpus are reused while nothing changed, and redone when its presence changes
    assert _render(renderer, fleet, plan) == _old_state(fleet, plan)
    fleet.apply_status(NodeStatusMessage(node="rig-a", status=NodeStatus.OFFLINE), now_s=NOW_S)
    rendered = _render(renderer, fleet, plan)
    assert rendered == _old_state(fleet, plan)
    assert {g["state"] for g in rendered["nodes"][0]["gpus"]} == {"unknown"}


class _OldFleetCollector(Collector):
    """The scrape-time collector `FleetMetrics` replaced, kept here as the reference."""

    def __init__(self, fleet: FleetState) -> None:
        self.fleet = fleet

    def collect(self) -> Any:
        labels_ = ["gpu", "UUID", "modelName", "Hostname"]
        node_up = GaugeMetricFamily(
            "orchestrator_node_up", "1 while a node reports, 0 once offline", labels=["Hostname"]
        )
        node_age = GaugeMetricFamily(
            "orchestrator_node_report_age_seconds",
            "Seconds since the node's last telemetry",
            labels=["Hostname"],
        )
        families = {
            "power": GaugeMetricFamily(
                "orchestrator_gpu_power_watts", "GPU power draw", labels=labels_
            ),
            "temp": GaugeMetricFamily(
                "orchestrator_gpu_temperature_celsius", "GPU temperature", labels=labels_
            ),
            "util": GaugeMetricFamily(
                "orchestrator_gpu_utilization_ratio", "GPU utilisation (0-1)", labels=labels_
            ),
            "mem": GaugeMetricFamily(
                "orchestrator_gpu_memory_used_bytes", "GPU memory in use", labels=labels_
            ),
            "hash": GaugeMetricFamily(
                "orchestrator_gpu_hashrate_hashes_per_second",
                "Hashrate the GPU's miner reports",
                labels=labels_,
            ),
            "quarantined": GaugeMetricFamily(
                "orchestrator_gpu_quarantined",
                "1 while the node's watchdog keeps the GPU out of service",
                labels=labels_,
            ),
            "info": GaugeMetricFamily(
                "orchestrator_gpu_info",
                "1 for every GPU the fleet reports",
                labels=[*labels_, "workload", "state"],
            ),
        }
        for record in self.fleet.nodes.values():
            node_up.add_metric([record.name], 1.0 if record.status is NodeStatus.ONLINE else 0.0)
            if record.received_at_s is not None:
                node_age.add_metric([record.name], max(0.0, NOW_S - record.received_at_s))
        for view in self.fleet.gpus():
            t = view.telemetry
            labels = [str(t.index), t.uuid or "", t.name or "", view.node]
            families["info"].add_metric([*labels, view.workload, view.state], 1.0)
            if view.node_status is not NodeStatus.ONLINE:
                continue
            quarantined = any(r.startswith("quarantined") for r in t.health_reasons)
            families["quarantined"].add_metric(labels, 1.0 if quarantined else 0.0)
            if t.power_draw_w is not None:
                families["power"].add_metric(labels, t.power_draw_w)
            if t.temperature_c is not None:
                families["temp"].add_metric(labels, t.temperature_c)
            if t.utilization_gpu_pct is not None:
                families["util"].add_metric(labels, t.utilization_gpu_pct / 100.0)
            if t.memory_used_bytes is not None:
                families["mem"].add_metric(labels, float(t.memory_used_bytes))
            if t.workload is not None and t.workload.hashrate_hs is not None:
                families["hash"].add_metric(labels, t.workload.hashrate_hs)
        yield node_up
        yield node_age
        yield from families.values()


def test_fleet_metrics_text_is_the_collectors_exposition_byte_for_byte() -> None:
    fleet = _fleet()
    registry = CollectorRegistry()
    registry.register(_OldFleetCollector(fleet))
    metrics = FleetMetrics(fleet, clock=lambda: NOW_S)
    assert metrics.text() == generate_latest(registry).decode()
    assert metrics.text() == generate_latest(registry).decode()  # again, from the label cache


def test_per_gpu_plan_family_matches_a_gauge_family() -> None:
    assignments = _assignments()
    gpus = {"rig-a:0": SimpleNamespace(uuid="GPU-0000", model='NVIDIA "Quoted" \\ Model')}
    reader = SimpleNamespace(
        last_plan=SimpleNamespace(plan=SimpleNamespace(assignments=assignments), gpus=gpus)
    )
    reference = GaugeMetricFamily(
        "orchestrator_gpu_expected_usd_per_hour",
        "Planned net revenue of a GPU's chosen workload",
        labels=["gpu", "UUID", "modelName", "Hostname", "workload"],
    )
    reference.add_metric(["0", "GPU-0000", 'NVIDIA "Quoted" \\ Model', "rig-a", "idle"], 0.0)

    class _One(Collector):
        def collect(self) -> Any:
            yield reference

    registry = CollectorRegistry()
    registry.register(_One())
    collector = PlanCollector(reader)  # type: ignore[arg-type]
    assert collector.per_gpu_text(LabelCache()) == generate_latest(registry).decode()


def test_state_rendering_follows_each_new_snapshot_and_plan() -> None:
    """The renderer's caches (a node's GPUs, each GPU's fields around its telemetry) never
    serve a replaced snapshot or an old plan's reasons."""
    fleet = _fleet()
    plan = SimpleNamespace(generation=7, plan=SimpleNamespace(assignments=_assignments()))
    renderer = StateRenderer()
    assert _render(renderer, fleet, plan) == _old_state(fleet, plan)
    rig_a = fleet.nodes["rig-a"].telemetry
    assert rig_a is not None
    hotter = tuple(g.model_copy(update={"temperature_c": 91.0}) for g in rig_a.gpus)
    newer = rig_a.model_copy(update={"seq": 2, "gpus": hotter})
    fleet.apply_telemetry(newer, now_s=NOW_S)
    rendered = _render(renderer, fleet, plan)
    assert rendered == _old_state(fleet, plan)
    assert [g["telemetry"]["temperature_c"] for g in rendered["nodes"][0]["gpus"]] == [91.0] * 4
    replanned = dict(_assignments())
    replanned["rig-a:0"] = replace(replanned["rig-a:0"], workload="ai:acme", reason="contract")
    plan = SimpleNamespace(generation=8, plan=SimpleNamespace(assignments=replanned))
    rendered = _render(renderer, fleet, plan)
    assert rendered == _old_state(fleet, plan)
    first = rendered["nodes"][0]["gpus"][0]
    assert (first["planned_workload"], first["reason"]) == ("ai:acme", "contract")
