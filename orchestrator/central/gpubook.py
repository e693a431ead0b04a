"""One truth per GPU: what the plan wants, the command in flight, and what the agent said.

For each GPU `serve` keeps these things, and nothing else decides what a GPU runs:

- `desired`: the workload the newest plan gave it;
- `held`: a switch the plan wants that the wave has not released yet (`wave`): nothing is
  written or sent for it; a GPU has a held switch or a command in flight, never both;
- `commands`: at most one command in flight (a dict by GPU, so two cannot exist), with the
  step the agent last reported;
- `facts`: the agent's last final word on a switch (`done`, `failed`, `rolled_back`,
  `refused`): what the GPU runs after it, since when, and where that word stands in the
  agent's own order of reports.

The actual workload is the newest thing the agent said, by the agent's order
(`(boot_s, seq)`, `protocol`'s note on ordering), not by arrival: a final event moves it at
once, and telemetry numbered before that event (sampled before the switch ended, however
late it arrives) is not used for planning; telemetry numbered after it is the truth again.
Numbers are compared within one run of the agent (one `boot_s`) only. Across runs, a
newer final event replaces an older one as it arrives, and a snapshot from another run than
the GPU's last final event is taken as it is: a restarted agent is the truth about its GPUs
from its first report (which it publishes at its connection), even when its clock stepped
back across the reboot (a node that boots before its clock is synchronised). The gap: a
restarted agent's first snapshot lost, and a switch ending before its next one, leaves
serve on the previous run's last snapshot for up to one telemetry interval.
Telemetry confirms; it never ends a command (only the agent's final event or a timeout
does: `dispatch`).

Pure bookkeeping, no I/O: the dispatcher persists facts with the command they end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.central.store import CommandRecord
from orchestrator.domain import SwitchState
from orchestrator.protocol import NodeTelemetry, SwitchEvent

# (boot_s, seq, timestamp): an agent's order of its own reports. Agents that number their
# reports are ordered by (boot_s, seq); the snapshots of an older agent, which sends neither,
# sort by its own clock (boot 0, seq 0, the timestamp). Its final events set no fact: they do
# not say what the GPU runs afterwards.
Order = tuple[float, int, float]


def telemetry_order(message: NodeTelemetry) -> Order:
    """Where a snapshot stands among its agent's reports."""
    if message.boot_s is None:
        return (0.0, 0, message.sent_at_s)
    return (message.boot_s, message.seq, message.sent_at_s)


def event_order(event: SwitchEvent) -> Order:
    """Where a switch event stands among its agent's reports."""
    if event.boot_s is None or event.seq is None:
        return (0.0, 0, event.at_s)
    return (event.boot_s, event.seq, event.at_s)


@dataclass(frozen=True, slots=True)
class Fact:
    """What the agent's last final event said about a GPU."""

    order: Order
    workload: str | None  # what the GPU runs after the event; None: the agent cannot tell
    since_s: float | None
    state: SwitchState
    command_id: str
    at_s: float  # the agent's clock when it said so

    def to_json(self) -> dict[str, object]:
        return {
            "workload": self.workload,
            "since_s": self.since_s,
            "state": self.state.value,
            "command_id": self.command_id,
            "at_s": self.at_s,
        }


def fact_of(event: SwitchEvent) -> Fact:
    return Fact(
        order=event_order(event),
        workload=event.actual,
        since_s=event.actual_since_s,
        state=SwitchState(event.state),
        command_id=event.command_id,
        at_s=event.at_s,
    )


@dataclass(frozen=True, slots=True)
class Held:
    """A command the plan wants that has not been released: nothing is written or sent for
    it yet. It lives only in memory: a restarted serve forgets it and its next plan decides
    again."""

    gpu: str
    workload: str
    previous: str | None
    reason: str
    generation: int
    uuid: str | None
    held_since_s: float
    why: str = ""  # once a release decision held it back: one of `wave.HELD_REASONS`
    rise_w: float = 0.0  # at that decision

    def to_json(self) -> dict[str, object]:
        return {
            "workload": self.workload,
            "previous": self.previous,
            "generation": self.generation,
            "held_since_s": self.held_since_s,
            "why": self.why,
            "rise_w": round(self.rise_w, 1),
        }


@dataclass(frozen=True, slots=True)
class GpuLine:
    """One GPU's whole lifecycle state, for reading (`GpuBook.line`)."""

    key: str
    desired: str | None
    command: CommandRecord | None
    fact: Fact | None
    held: Held | None = None


@dataclass(slots=True)
class GpuBook:
    desired: dict[str, str] = field(default_factory=dict)
    commands: dict[str, CommandRecord] = field(default_factory=dict)  # in flight, by GPU
    facts: dict[str, Fact] = field(default_factory=dict)
    held: dict[str, Held] = field(default_factory=dict)  # planned, not yet released

    def line(self, key: str) -> GpuLine:
        return GpuLine(
            key,
            self.desired.get(key),
            self.commands.get(key),
            self.facts.get(key),
            self.held.get(key),
        )

    def record_final(self, key: str, fact: Fact) -> bool:
        """Take a final event's word as the GPU's actual state, unless the agent has said
        something later already (a duplicate or an event overtaken in delivery)."""
        known = self.facts.get(key)
        if known is not None and known.order[0] == fact.order[0] and fact.order <= known.order:
            return False
        self.facts[key] = fact
        return True

    def actual(
        self, key: str, order: Order, workload: str | None, since_s: float | None
    ) -> tuple[str | None, float | None]:
        """What GPU `key` runs, given a telemetry reading numbered `order`: the reading,
        unless the GPU's last final event was said after it."""
        fact = self.facts.get(key)
        if fact is not None and order[0] == fact.order[0] and order < fact.order:
            return fact.workload, fact.since_s
        return workload, since_s
