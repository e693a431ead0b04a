"""What the HTTP surface may read of `serve`: one narrow, read-only door.

The API, the status page and the metrics collectors read the daemon through a `ServeReader`
and nothing else: the fleet's snapshots, the newest plan, the command journal, each GPU's
lifecycle line (`gpubook`), the SLA ledger and the contracts. They never reach into the
policy loop or the dispatcher, so those can change shape without the HTTP layer noticing,
and nothing the HTTP layer does can change a command or a plan (operators' writes go
through `OverrideService`, which audits them).

`PlanRecord` (the newest plan as the policy loop keeps it) is re-exported here, so a reader
of the plan never imports the policy loop itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.central.dispatch import Dispatcher
from orchestrator.central.fleet import FleetState
from orchestrator.central.gpubook import GpuLine
from orchestrator.central.policy_loop import PlanRecord, PolicyLoop
from orchestrator.central.sla import SlaAccrual
from orchestrator.central.store import CommandRecord
from orchestrator.policy.model import Contracts
from orchestrator.policy.sla_ledger import SlaLedger

__all__ = ["PlanRecord", "ServeReader"]


@dataclass(frozen=True, slots=True)
class ServeReader:
    fleet: FleetState
    _loop: PolicyLoop
    _dispatcher: Dispatcher
    _sla: SlaAccrual
    clock: Callable[[], float]

    @property
    def last_plan(self) -> PlanRecord | None:
        return self._loop.last

    @property
    def contracts(self) -> Contracts:
        return self._loop.policy.contracts

    @property
    def ledger(self) -> SlaLedger:
        return self._sla.ledger

    def serving(self) -> dict[str, int]:
        """GPUs serving each AI contract now, by the agents' latest word."""
        return self._sla.serving()

    def recent_commands(self, limit: int = 100) -> list[CommandRecord]:
        """The newest commands first: in flight, then ended."""
        return self._dispatcher.recent(limit)

    def ended_command(self, command_id: str) -> CommandRecord | None:
        """An ended command by id: from the store (indexed), else the in-memory journal."""
        dispatcher = self._dispatcher
        if dispatcher.store is not None:
            return dispatcher.store.command(command_id)
        return next((r for r in dispatcher.journal if r.command_id == command_id), None)

    def line(self, key: str) -> GpuLine:
        """GPU `key`'s lifecycle: desired workload, command in flight, last final event."""
        return self._dispatcher.book.line(key)

    def wave(self) -> dict[str, object]:
        """The switch wave now: held switches (by what holds them), the site's estimated
        wall power as the wave counts it, and the cap it holds to."""
        return self._dispatcher.wave_summary()

    def cooldown_until(self, key: str, workload: str) -> float | None:
        """Until when a failed switch of `key` to `workload` is not ordered again."""
        until_s = self._dispatcher.cooldowns.get((key, workload))
        return until_s if until_s is not None and until_s > self.clock() else None

    def resolve(self, name: str) -> str | None:
        """`node:index` for a GPU named either way (`node:index` or its NVML UUID)."""
        return self._loop.observer.resolve(name)
