"""The `[backtest]` section: what `orchestrator backtest` needs beyond the policy sections.

It lives with the other config sections so that one file can serve both the daemon and
the backtest: `serve` ignores it, `orchestrator config check` validates it.
"""

from __future__ import annotations

from pydantic import Field

from orchestrator.config._base import Section


class FleetGroupSection(Section):
    """`[[backtest.fleet]]`: GPUs of one model in the simulated fleet."""

    model: str = Field(min_length=1)  # NVML name, as in the benchmark tables
    count: int = Field(ge=1)
    memory_gib: float = Field(default=24.0, gt=0)


class BacktestSection(Section):
    step: str | None = None  # "1h", "15m", "3600"
    power_usd_per_kwh: float | None = Field(default=None, ge=0, le=10)  # constant, without --power
    static_split_ai_fraction: float = Field(default=0.5, ge=0, le=1)
    max_gap: str | None = None
    fleet: list[FleetGroupSection] = Field(default_factory=list)
