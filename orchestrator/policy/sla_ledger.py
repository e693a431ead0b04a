"""The SLA ledger: GPU-hours delivered against GPU-hours committed, per billing period.

Pure accounting. `accrue(now_s, serving)` adds the time since the previous accrual: for
every reserved contract whose window is open (lead time does not count: the customer
buys the window itself), `committed_gpus x dt` is owed and `min(serving, committed) x dt`
is delivered, where *serving* counts GPUs that are online, healthy and reporting the
contract's workload. A GPU whose node is silent is not counted as delivering: the ledger
only credits what was observed. A gap longer than `max_gap_s` (the daemon was down) is
not accrued at all, rather than guessed.

A billing period is a UTC calendar month, ISO week or day. Availability is delivered /
committed for the period. The SLA is met at the contract's availability target: the
shortfall is the GPU-hours delivered below target x committed, and only that is charged at
the penalty rate (the planner and the backtest charge the same, GPU by GPU, each hour).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from orchestrator.policy.model import ReservedContract

BillingPeriod = Literal["month", "week", "day"]
SECONDS_PER_HOUR = 3600.0
_ROUNDING_TOLERANCE = 1e-9


def period_start(now_s: float, period: BillingPeriod) -> datetime:
    moment = datetime.fromtimestamp(now_s, tz=UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


@dataclass(slots=True)
class LedgerEntry:
    contract_id: str
    period_start_s: float
    committed_gpu_hours: float = 0.0
    delivered_gpu_hours: float = 0.0
    penalty_usd_per_gpu_hour: float = 0.0
    availability_target_fraction: float = 1.0

    @property
    def target_gpu_hours(self) -> float:
        """What meets the SLA: committed GPU-hours x the availability target."""
        return self.committed_gpu_hours * self.availability_target_fraction

    @property
    def shortfall_gpu_hours(self) -> float:
        """GPU-hours delivered below the target: what the penalty is charged on."""
        return max(0.0, self.target_gpu_hours - self.delivered_gpu_hours)

    @property
    def availability_fraction(self) -> float | None:
        if self.committed_gpu_hours <= 0:
            return None
        return self.delivered_gpu_hours / self.committed_gpu_hours

    @property
    def penalty_usd(self) -> float:
        return self.shortfall_gpu_hours * self.penalty_usd_per_gpu_hour

    @property
    def below_target(self) -> bool:
        availability = self.availability_fraction
        # GPU-hours are sums of many small floats: availability exactly at the target must
        # not read as below it by a rounding error
        return (
            availability is not None
            and availability < self.availability_target_fraction - _ROUNDING_TOLERANCE
        )

    def to_json(self) -> dict[str, object]:
        return {
            "contract": self.contract_id,
            "period_start": datetime.fromtimestamp(self.period_start_s, tz=UTC).isoformat(),
            "committed_gpu_hours": round(self.committed_gpu_hours, 6),
            "delivered_gpu_hours": round(self.delivered_gpu_hours, 6),
            "target_gpu_hours": round(self.target_gpu_hours, 6),
            "shortfall_gpu_hours": round(self.shortfall_gpu_hours, 6),
            "availability_fraction": self.availability_fraction,
            "availability_target_fraction": self.availability_target_fraction,
            "below_target": self.below_target,
            "penalty_usd": round(self.penalty_usd, 4),
        }


@dataclass(slots=True)
class SlaLedger:
    contracts: tuple[ReservedContract, ...]
    period: BillingPeriod = "month"
    max_gap_s: float = 120.0
    entries: dict[tuple[str, float], LedgerEntry] = field(default_factory=dict)
    last_accrual_s: float | None = None

    def accrue(self, now_s: float, serving: Mapping[str, int]) -> None:
        """Account the time since the last call; `serving` counts GPUs by contract id."""
        previous_s, self.last_accrual_s = self.last_accrual_s, now_s
        if previous_s is None or now_s <= previous_s or now_s - previous_s > self.max_gap_s:
            return
        hours = (now_s - previous_s) / SECONDS_PER_HOUR
        start_s = period_start(now_s, self.period).timestamp()
        for contract in self.contracts:
            if not in_window(contract, now_s):
                continue
            entry = self.entry(contract, start_s)
            entry.committed_gpu_hours += contract.committed_gpus * hours
            entry.delivered_gpu_hours += (
                min(serving.get(contract.id, 0), contract.committed_gpus) * hours
            )

    def entry(self, contract: ReservedContract, start_s: float) -> LedgerEntry:
        key = (contract.id, start_s)
        entry = self.entries.get(key)
        if entry is None:
            entry = LedgerEntry(
                contract_id=contract.id,
                period_start_s=start_s,
                penalty_usd_per_gpu_hour=contract.penalty_usd_per_gpu_hour,
                availability_target_fraction=contract.availability_target_fraction,
            )
            self.entries[key] = entry
        return entry

    def current(self, now_s: float) -> list[LedgerEntry]:
        """This period's entry for every reserved contract (zeros where nothing accrued)."""
        start_s = period_start(now_s, self.period).timestamp()
        return [self.entry(contract, start_s) for contract in self.contracts]


def in_window(contract: ReservedContract, now_s: float) -> bool:
    if contract.windows is None:
        return True
    return any(window.open_or_opening(now_s, 0.0) for window in contract.windows)
