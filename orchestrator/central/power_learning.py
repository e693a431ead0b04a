"""Learning each GPU model's board power per workload from the fleet's telemetry.

`FleetObserver` hands every GPU of every snapshot it walks (once per plan) to
`PowerLearner.sample`, with the workload the GPU runs by the agent's latest word; at the end
of the walk `fold()` folds that round into the learnt figures (`orchestrator.policy.power`:
a round is averaged per (GPU model, workload), then smoothed against the past). The
planner reads them as a `PowerTable` (`table()`), each figure blended with its prior.

What counts as a reading, per GPU:
- Only a reporting (online, healthy) GPU with no switch in flight, on a known workload the
  snapshot itself names: a reading mid-switch belongs to neither workload.
- Not within `settle_s` of the workload's start (the agent's `since_s`, else the first time
  this learner saw the GPU on it): a miner building its DAG, a model loading, or a board
  still warm from the last load (a real H200 idles at 126 W right after a load, 78 W later).
- Where the GPU reports NVML's total energy counter and the previous snapshot of the same
  GPU was already settled on the same run of the same workload: the mean power between the
  two (energy delta over time delta, on the agent's clock), with the mean of the two
  utilisation readings. Otherwise the snapshot's instantaneous power and utilisation. A
  counter that went backwards (a driver reload) gives no reading.
- A snapshot already sampled (the same `(boot_s, seq)`, planned twice) is not read again.
- A reading above 1.5 x the GPU's power limit, or negative, is implausible and dropped
  (counted in `rejected`).

The learner also remembers each GPU's latest power reading and each model's power limit:
a GPU whose workload is unknown counts at one of them against the site cap, never at 0 W.
State is in memory only: a restarted serve starts again from the priors and relearns
within a few plans.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from orchestrator.central.gpubook import Order
from orchestrator.policy.power import (
    LearntPower,
    PowerLearning,
    PowerRound,
    PowerTable,
    fold_round,
)
from orchestrator.protocol import GpuTelemetry

_MJ_PER_J = 1000.0
_IMPLAUSIBLE_LIMIT_FACTOR = 1.5


@dataclass(slots=True)
class _Previous:
    """What the last sampled snapshot of one GPU said."""

    workload: str
    start_s: float
    sample_s: float
    energy_mj: int | None
    utilisation_pct: float | None
    order: Order
    settled: bool


@dataclass(slots=True)
class PowerLearner:
    """Learnt board power by (GPU model, workload), fed from telemetry, read as a table."""

    settings: PowerLearning = field(default_factory=PowerLearning)
    learnt: dict[tuple[str, str], LearntPower] = field(default_factory=dict)
    last_draw_w: dict[str, float] = field(default_factory=dict)  # by GPU key
    limit_w: dict[str, float] = field(default_factory=dict)  # by GPU model
    readings: Counter[str] = field(default_factory=Counter)  # "energy", "instant"
    rejected: int = 0
    _round: dict[tuple[str, str], PowerRound] = field(default_factory=dict)
    _previous: dict[str, _Previous] = field(default_factory=dict)

    def remember(self, key: str, model: str, gpu: GpuTelemetry) -> None:
        """Keep the GPU's latest power reading and its model's limit (every GPU, every walk)."""
        draw_w = gpu.power_draw_w
        if draw_w is not None:
            self.last_draw_w[key] = draw_w
        limit_w = gpu.power_limit_w
        if limit_w and limit_w > self.limit_w.get(model, 0.0):
            self.limit_w[model] = limit_w

    def sample(
        self,
        key: str,
        model: str,
        workload: str,
        *,
        since_s: float | None,
        gpu: GpuTelemetry,
        sample_s: float,
        order: Order,
    ) -> None:
        """One snapshot of a GPU that reports `workload` with nothing in flight."""
        previous = self._previous.get(key)
        if previous is not None and previous.order == order:
            return
        same_run = previous is not None and previous.workload == workload
        if since_s is not None:
            start_s = since_s
        elif previous is not None and same_run:
            start_s = previous.start_s
        else:
            start_s = sample_s
        settled = sample_s - start_s >= self.settings.settle_s
        reading = self._reading(previous, workload, start_s, gpu, sample_s) if settled else None
        self._previous[key] = _Previous(
            workload,
            start_s,
            sample_s,
            gpu.total_energy_mj,
            gpu.utilization_gpu_pct,
            order,
            settled,
        )
        if reading is None:
            return
        watts, utilisation = reading
        limit_w = gpu.power_limit_w or self.limit_w.get(model)
        if limit_w and watts > _IMPLAUSIBLE_LIMIT_FACTOR * limit_w:
            self.rejected += 1
            return
        summed = self._round.get((model, workload))
        if summed is None:
            summed = self._round[model, workload] = PowerRound()
        if not summed.add(watts, utilisation):
            self.rejected += 1

    def _reading(
        self,
        previous: _Previous | None,
        workload: str,
        start_s: float,
        gpu: GpuTelemetry,
        sample_s: float,
    ) -> tuple[float, float | None] | None:
        if (
            previous is not None
            and previous.settled
            and previous.workload == workload
            and previous.start_s == start_s
            and previous.energy_mj is not None
            and gpu.total_energy_mj is not None
            and gpu.total_energy_mj >= previous.energy_mj
            and sample_s > previous.sample_s
        ):
            joules = (gpu.total_energy_mj - previous.energy_mj) / _MJ_PER_J
            watts = joules / (sample_s - previous.sample_s)
            utilisation = gpu.utilization_gpu_pct
            if utilisation is not None and previous.utilisation_pct is not None:
                utilisation = (utilisation + previous.utilisation_pct) / 2.0
            self.readings["energy"] += 1
            return watts, utilisation
        if gpu.power_draw_w is None:
            return None
        self.readings["instant"] += 1
        return gpu.power_draw_w, gpu.utilization_gpu_pct

    def fold(self) -> None:
        """Fold the round sampled since the last fold into the learnt figures."""
        for key, readings in self._round.items():
            if readings.count:
                previous = self.learnt.get(key)
                self.learnt[key] = fold_round(previous, readings, self.settings.smoothing)
        self._round = {}

    def table(self) -> PowerTable:
        """What the planner reads: a frozen copy of the learnt figures."""
        return PowerTable(dict(self.learnt), prior_samples=self.settings.prior_samples)
