"""SLA accrual: a task of its own that books each reserved contract's GPU-hours.

Every `interval_s` it counts the GPUs actually serving each contract (online, healthy, and
running `ai:<contract>` by the agent's latest word: `GpuBook.actual`, so a report from
before a switch ended is not counted) and accrues committed and delivered GPU-hours for the
billing period (`policy.sla_ledger`, pure). The ledger is saved after each accrual and
restored at start, so a restart neither loses nor double-counts an hour.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from orchestrator.central.fleet import FleetState
from orchestrator.central.gpubook import GpuBook, telemetry_order
from orchestrator.central.store import Store
from orchestrator.domain import Health, NodeStatus, ai_contract_of, gpu_key
from orchestrator.policy.model import Contracts
from orchestrator.policy.sla_ledger import BillingPeriod, SlaLedger

_SERVING_HEALTH = (Health.OK, Health.DEGRADED)


class SlaAccrual:
    def __init__(
        self,
        *,
        fleet: FleetState,
        book: GpuBook,
        contracts: Contracts,
        billing_period: BillingPeriod = "month",
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        store: Store | None = None,
    ) -> None:
        self.fleet = fleet
        self.book = book
        self.contracts = contracts
        self.interval_s = interval_s
        self.clock = clock
        self.store = store
        self.ledger = SlaLedger(contracts.reserved, period=billing_period)

    def serving(self) -> dict[str, int]:
        """GPUs online, healthy and running each AI contract's workload, by contract id."""
        counts: dict[str, int] = {}
        book = self.book
        for record in self.fleet.nodes.values():
            telemetry = record.telemetry
            if telemetry is None or record.status is not NodeStatus.ONLINE:
                continue
            order = telemetry_order(telemetry)
            for gpu in telemetry.gpus:
                if gpu.health not in _SERVING_HEALTH:
                    continue
                report = gpu.workload
                workload, _ = book.actual(
                    gpu_key(record.name, gpu.index),
                    order,
                    report.workload if report else None,
                    None,
                )
                contract = ai_contract_of(workload)
                if contract is not None:
                    counts[contract] = counts.get(contract, 0) + 1
        return counts

    def accrue_once(self) -> None:
        """Accrue if `interval_s` has passed since the last accrual, then save the ledger."""
        now_s = self.clock()
        last_s = self.ledger.last_accrual_s
        if last_s is not None and now_s - last_s < self.interval_s:
            return
        self.ledger.accrue(now_s, self.serving())
        if self.store is not None:
            self.store.save_ledger(
                (
                    (e.contract_id, e.period_start_s, e.committed_gpu_hours, e.delivered_gpu_hours)
                    for e in self.ledger.current(now_s)
                ),
                self.ledger.last_accrual_s,
            )

    async def step(self) -> None:
        """One turn of the named task `sla` (`lifecycle.forever` calls it)."""
        self.accrue_once()

    def restore(self) -> int:
        """Load the ledger a previous run saved; the number of entries."""
        if self.store is None:
            return 0
        rows, last_accrual_s = self.store.load_ledger()
        by_id = {c.id: c for c in self.contracts.reserved}
        for contract_id, start_s, committed, delivered in rows:
            contract = by_id.get(contract_id)
            if contract is not None:
                entry = self.ledger.entry(contract, start_s)
                entry.committed_gpu_hours = committed
                entry.delivered_gpu_hours = delivered
        self.ledger.last_accrual_s = last_accrual_s
        return len(rows)
