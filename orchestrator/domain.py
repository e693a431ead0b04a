"""Domain words shared by every layer: GPU identity, health, workloads, switch states.

Pure values only. A GPU is named `node:index` (NVML's index on that node) or by its NVML
UUID; `GpuKey` builds and reads the first form. A workload id is a short string that the
planner, the dispatcher and the agent all read the same way: `mine:<profile>`,
`ai:<contract>`, `idle`; `Workload` builds and reads it, so no module splits strings of its
own. A GPU whose node is silent has no known workload: `UNKNOWN`, never "stopped".

`SwitchState` is the one vocabulary of a switch command's life, shared by the agent (which
reports the states from `accepted` to its final word) and `serve` (which adds the states a
command has before it reaches an agent and after it is given up on).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


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
MINE_PREFIX = "mine:"
AI_PREFIX = "ai:"


class Workload(NamedTuple):
    """A workload id read into its parts: `mine:<profile>`, `ai:<contract>` or `idle`.

    `Workload.parse(text)` reads one; `str(workload)` writes it back. The helpers
    `mine_workload`, `ai_workload` and `workload_kind` are the common one-liners.
    """

    kind: WorkloadKind
    name: str = ""  # the profile (mining) or the contract (AI); empty for idle

    @classmethod
    def parse(cls, text: str) -> Workload:
        if text.startswith(MINE_PREFIX):
            return cls(WorkloadKind.MINING, text[len(MINE_PREFIX) :])
        if text.startswith(AI_PREFIX):
            return cls(WorkloadKind.AI, text[len(AI_PREFIX) :])
        if text == IDLE:
            return cls(WorkloadKind.IDLE)
        return cls(WorkloadKind.UNKNOWN, text)

    def __str__(self) -> str:
        if self.kind is WorkloadKind.MINING:
            return MINE_PREFIX + self.name
        if self.kind is WorkloadKind.AI:
            return AI_PREFIX + self.name
        if self.kind is WorkloadKind.IDLE:
            return IDLE
        return self.name or UNKNOWN


def mine_workload(profile_id: str) -> str:
    """The workload id of mining with `profile_id`."""
    return MINE_PREFIX + profile_id


def ai_workload(contract_id: str) -> str:
    """The workload id of serving AI contract `contract_id`."""
    return AI_PREFIX + contract_id


def workload_kind(workload_id: str) -> WorkloadKind:
    """Classify a workload id (`mine:x`, `ai:y`, `idle`)."""
    return Workload.parse(workload_id).kind


def ai_contract_of(workload_id: str | None) -> str | None:
    """The contract an `ai:<contract>` workload serves, else None."""
    if workload_id is not None and workload_id.startswith(AI_PREFIX):
        return workload_id[len(AI_PREFIX) :]
    return None


@dataclass(frozen=True, slots=True, order=True)
class GpuKey:
    """A GPU by node and NVML index; `str()` gives `node:index`, `parse` reads it back."""

    node: str
    index: int

    @classmethod
    def parse(cls, text: str) -> GpuKey:
        """Read `node:index`; ValueError for anything else."""
        node, sep, index = text.rpartition(":")
        if not sep or not node or not (index.isascii() and index.isdigit()):
            raise ValueError(f"not a GPU key (node:index): {text!r}")
        return cls(node, int(index))

    def __str__(self) -> str:
        return f"{self.node}:{self.index}"


def gpu_key(node: str, index: int) -> str:
    """The short name of a GPU: `node:index`."""
    return f"{node}:{index}"


class SwitchState(StrEnum):
    """Where a switch command stands: one vocabulary for the agent and `serve`."""

    # serve's, before an agent has it
    PUBLISHING = "publishing"  # written to the store, about to be published
    IN_FLIGHT = "in_flight"  # published; no final word yet
    UNSENT = "unsent"  # the broker was away: never left
    # the agent's (protocol.AgentSwitchState)
    ACCEPTED = "accepted"  # the agent took the command and queued it for the GPU
    PROGRESS = "progress"  # a step began (drain, stop, verify, start, health, rollback)
    DONE = "done"  # the GPU runs the new workload and it is healthy
    FAILED = "failed"  # the switch failed and the previous workload could not be restored
    ROLLED_BACK = "rolled_back"  # the switch failed; the previous workload runs again
    REFUSED = "refused"  # not run: stale, older generation, unknown profile, quarantined
    # serve's, when it gives up on a command
    TIMED_OUT = "timed_out"  # no final word within the command timeout
    SUPERSEDED = "superseded"  # a newer plan wanted something else

    @property
    def final(self) -> bool:
        """The agent's last word on a command (done, failed, rolled back, refused)."""
        return self in AGENT_FINAL_STATES

    @property
    def failure(self) -> bool:
        """A switch that did not happen as ordered (a rollback counts: it is a failure)."""
        return self in FAILURE_STATES


AGENT_FINAL_STATES = frozenset(
    {SwitchState.DONE, SwitchState.FAILED, SwitchState.ROLLED_BACK, SwitchState.REFUSED}
)
FAILURE_STATES = frozenset({SwitchState.FAILED, SwitchState.ROLLED_BACK, SwitchState.REFUSED})
OPEN_STATES = frozenset({SwitchState.PUBLISHING, SwitchState.IN_FLIGHT})
