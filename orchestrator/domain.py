"""Domain words shared by every layer: GPU identity, health, workloads.

Pure values only. A GPU is named `node:index` (NVML's index on that node) or by its NVML
UUID; `gpu_key` builds the first form. A workload id is a short string that the planner,
the dispatcher and the agent all read the same way: `mine:<profile>`, `ai:<contract>`,
`idle`. A GPU whose node is silent has no known workload: `UNKNOWN`, never "stopped".
"""

from __future__ import annotations

from enum import StrEnum


class Health(StrEnum):
    """What the agent could tell about a GPU."""

    OK = "ok"
    DEGRADED = (
        "degraded"  # working, but NVML reports errors worth a look (corrected ECC, throttling)
    )
    UNHEALTHY = "unhealthy"  # uncorrected ECC, XID errors, an NVML query failing for this GPU
    LOST = "lost"  # NVML says the GPU fell off the bus


class NodeStatus(StrEnum):
    """A node as the central daemon sees it."""

    ONLINE = "online"
    OFFLINE = "offline"


class WorkloadKind(StrEnum):
    MINING = "mining"
    AI = "ai"
    IDLE = "idle"
    UNKNOWN = "unknown"


IDLE = "idle"
UNKNOWN = "unknown"


def gpu_key(node: str, index: int) -> str:
    """The short name of a GPU: `node:index`."""
    return f"{node}:{index}"


def workload_kind(workload_id: str) -> WorkloadKind:
    """Classify a workload id (`mine:x`, `ai:y`, `idle`)."""
    if workload_id.startswith("mine:"):
        return WorkloadKind.MINING
    if workload_id.startswith("ai:"):
        return WorkloadKind.AI
    if workload_id == IDLE:
        return WorkloadKind.IDLE
    return WorkloadKind.UNKNOWN
