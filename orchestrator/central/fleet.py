"""The central daemon's picture of the fleet: the latest snapshot of every node.

Telemetry is a whole-node snapshot, so applying one is a dict store (latest wins) and
costs the same whatever the fleet's size. A node is online while it reports; it goes
offline on its last will (`offline` on its status topic) or after `offline_after_s` of
silence, checked by `expire_silent` on a timer (one pass over the nodes a second, not
work per message). An offline node keeps its last telemetry for display, but its GPUs'
workloads are *unknown*: silence never means "stopped" (STYLE point 7).

`version` increases whenever a node's presence changes, so the planner loop can tell
"something significant happened" without diffing the fleet.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from orchestrator.domain import UNKNOWN, Health, NodeStatus, gpu_key
from orchestrator.protocol import GpuTelemetry, NodeStatusMessage, NodeTelemetry


@dataclass(slots=True)
class NodeRecord:
    name: str
    status: NodeStatus
    status_reason: str
    status_changed_at_s: float
    telemetry: NodeTelemetry | None = None
    received_at_s: float | None = None
    reports_total: int = 0


@dataclass(frozen=True, slots=True)
class GpuView:
    """One GPU as the central daemon reports it."""

    key: str
    node: str
    node_status: NodeStatus
    telemetry: GpuTelemetry
    state: str  # a Health value, or "unknown" while the node is offline
    workload: str  # a workload id, or "unknown"


@dataclass(slots=True)
class FleetState:
    offline_after_s: float
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    version: int = 0
    started_at_s: float | None = None

    def apply_telemetry(self, message: NodeTelemetry, *, now_s: float) -> None:
        record = self.nodes.get(message.node)
        if record is None:
            record = NodeRecord(message.node, NodeStatus.ONLINE, "reporting", now_s)
            self.nodes[message.node] = record
            self.version += 1
        elif record.status is not NodeStatus.ONLINE:
            self._set_status(record, NodeStatus.ONLINE, "reporting again", now_s)
        record.telemetry = message
        record.received_at_s = now_s
        record.reports_total += 1

    def apply_status(self, message: NodeStatusMessage, *, now_s: float) -> None:
        record = self.nodes.get(message.node)
        reason = "last will: offline" if message.status is NodeStatus.OFFLINE else "status: online"
        if record is None:
            self.nodes[message.node] = NodeRecord(message.node, message.status, reason, now_s)
            self.version += 1
        elif record.status is not message.status:
            self._set_status(record, message.status, reason, now_s)

    def expire_silent(self, *, now_s: float) -> list[str]:
        """Mark nodes offline that have been silent too long; return their names."""
        expired = []
        for record in self.nodes.values():
            if record.status is not NodeStatus.ONLINE:
                continue
            last_heard_s = record.received_at_s
            if last_heard_s is None:
                # known only from a retained status: give it a grace period from our start
                last_heard_s = max(record.status_changed_at_s, self.started_at_s or 0.0)
            silent_s = now_s - last_heard_s
            if silent_s > self.offline_after_s:
                self._set_status(record, NodeStatus.OFFLINE, f"silent for {silent_s:.1f} s", now_s)
                expired.append(record.name)
        return expired

    def _set_status(
        self, record: NodeRecord, status: NodeStatus, reason: str, now_s: float
    ) -> None:
        record.status = status
        record.status_reason = reason
        record.status_changed_at_s = now_s
        self.version += 1

    def gpus(self) -> Iterator[GpuView]:
        for record in self.nodes.values():
            if record.telemetry is None:
                continue
            online = record.status is NodeStatus.ONLINE
            for gpu in record.telemetry.gpus:
                if online:
                    state = gpu.health.value
                    workload = gpu.workload.workload if gpu.workload else UNKNOWN
                else:
                    state, workload = UNKNOWN, UNKNOWN
                yield GpuView(
                    gpu_key(record.name, gpu.index),
                    record.name,
                    record.status,
                    gpu,
                    state,
                    workload,
                )

    def counts(self) -> dict[str, int]:
        """Nodes and GPUs by state: the same counts as walking `gpus()`, without building
        a view per GPU (it runs on every `/api/v1/state`)."""
        nodes_online = gpus_total = gpus_unknown = gpus_ok = 0
        for record in self.nodes.values():
            online = record.status is NodeStatus.ONLINE
            nodes_online += online
            if record.telemetry is None:
                continue
            gpus = record.telemetry.gpus
            gpus_total += len(gpus)
            if not online:
                gpus_unknown += len(gpus)
            else:
                gpus_ok += sum(1 for gpu in gpus if gpu.health is Health.OK)
        return {
            "nodes_total": len(self.nodes),
            "nodes_online": nodes_online,
            "gpus_total": gpus_total,
            "gpus_ok": gpus_ok,
            "gpus_unknown": gpus_unknown,
        }
