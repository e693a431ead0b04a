"""Scrape-time gauges over the fleet snapshot (STYLE point 20).

Nothing is updated per message: at scrape time the collector walks the fleet once and
emits per-GPU gauges with dcgm-exporter's label names (`gpu`, `UUID`, `modelName`,
`Hostname`), so dashboards built for DCGM join on the same labels. Counters for events
live beside the code that counts them (ingest, planner, dispatcher).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orchestrator.central.fleet import FleetState
from orchestrator.domain import NodeStatus

_GPU_LABELS = ["gpu", "UUID", "modelName", "Hostname"]
# workload and state change with switches: only the info series carries them
_INFO_LABELS = [*_GPU_LABELS, "workload", "state"]


class FleetCollector(Collector):
    def __init__(self, fleet: FleetState, *, clock: Callable[[], float] = time.time) -> None:
        self.fleet = fleet
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now_s = self.clock()
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
                "orchestrator_gpu_power_watts", "GPU power draw", labels=_GPU_LABELS
            ),
            "temp": GaugeMetricFamily(
                "orchestrator_gpu_temperature_celsius", "GPU temperature", labels=_GPU_LABELS
            ),
            "util": GaugeMetricFamily(
                "orchestrator_gpu_utilization_ratio", "GPU utilisation (0-1)", labels=_GPU_LABELS
            ),
            "mem": GaugeMetricFamily(
                "orchestrator_gpu_memory_used_bytes", "GPU memory in use", labels=_GPU_LABELS
            ),
            "hash": GaugeMetricFamily(
                "orchestrator_gpu_hashrate_hashes_per_second",
                "Hashrate the GPU's miner reports",
                labels=_GPU_LABELS,
            ),
            "quarantined": GaugeMetricFamily(
                "orchestrator_gpu_quarantined",
                "1 while the node's watchdog keeps the GPU out of service",
                labels=_GPU_LABELS,
            ),
            "info": GaugeMetricFamily(
                "orchestrator_gpu_info", "1 for every GPU the fleet reports", labels=_INFO_LABELS
            ),
        }
        for record in self.fleet.nodes.values():
            node_up.add_metric([record.name], 1.0 if record.status is NodeStatus.ONLINE else 0.0)
            if record.received_at_s is not None:
                node_age.add_metric([record.name], max(0.0, now_s - record.received_at_s))
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
