"""From the fleet's telemetry to the planner's `GpuState`s, with measured rates smoothed.

Once per plan (not per message) this walks the fleet and builds one `GpuState` per GPU:
online or not, healthy or not, what it runs and since when, and what it has measured.
Measurements are exponentially smoothed per GPU and mining profile: a GPU that reports a
hashrate while mining `mine:<profile>` contributes that hashrate and its NVML power draw,
and from then on the planner uses the measured figures instead of the benchmark table.

What a GPU runs is the agent's latest word in its own order (`GpuBook.actual`): a snapshot
numbered before the GPU's last final switch event is passed over for that event's word.
While a switch is in flight the planner is told the target workload, so it does not plan
the same switch twice or plan against a state that is about to change.

Board power is learnt apart from the hashrate, per GPU model and workload, by a
`PowerLearner` (`central/power_learning.py`): each GPU that reports a known workload with
no switch in flight is one sample, and the walk's samples are folded in at its end. Each
`GpuState` also carries the GPU's latest power reading and power limit, at which a GPU of
unknown workload counts against the site cap.

"Since when" is a fact or nothing: the agent's `since_s` (it records when it started each
workload, and keeps that across its own restarts). A GPU whose start is unknown (a fresh
site, a workload that ended while its agent was down) owes no dwell and may move at the
first plan, except a GPU serving a reserved contract (`sla_workloads`): that one is held
from the first time this daemon saw it, so a restart never shuffles an SLA's GPUs.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from orchestrator.central.fleet import FleetState
from orchestrator.central.gpubook import GpuBook, telemetry_order
from orchestrator.central.power_learning import PowerLearner
from orchestrator.domain import MINE_PREFIX, UNKNOWN, Health, NodeStatus, gpu_key
from orchestrator.policy.model import GpuState, MeasuredRate


@dataclass(slots=True)
class _Seen:
    workload: str
    since_s: float


@dataclass(slots=True)
class FleetObserver:
    """Keeps per-GPU smoothing state between plans."""

    smoothing: float = 0.2  # weight of the newest reading
    measured: dict[str, dict[str, MeasuredRate]] = field(default_factory=dict)
    seen: dict[str, _Seen] = field(default_factory=dict)
    uuids: dict[str, str] = field(default_factory=dict)  # NVML UUID -> node:index
    power: PowerLearner = field(default_factory=PowerLearner)

    def observe(
        self,
        fleet: FleetState,
        *,
        now_s: float,
        book: GpuBook | None = None,
        sla_workloads: Collection[str] = (),
    ) -> list[GpuState]:
        book = book or GpuBook()
        in_flight = book.commands
        states: list[GpuState] = []
        for record in fleet.nodes.values():
            telemetry = record.telemetry
            if telemetry is None:
                continue
            online = record.status is NodeStatus.ONLINE
            order = telemetry_order(telemetry)
            for gpu in telemetry.gpus:
                key = gpu_key(record.name, gpu.index)
                if gpu.uuid:
                    self.uuids[gpu.uuid] = key
                report = gpu.workload
                reported, since_s = book.actual(
                    key,
                    order,
                    report.workload if report else None,
                    report.since_s if report else None,
                )
                if reported == UNKNOWN:
                    reported = None
                if reported is not None and online:
                    since_s = self._since(key, reported, since_s, now_s, sla_workloads)
                    if report is not None and report.workload == reported:
                        # the reading's hashrate is of the workload it reports, not a stale one
                        self._measure(key, reported, report.hashrate_hs, gpu.power_draw_w)
                else:
                    since_s = None
                pending = in_flight.get(key)
                current = pending.workload if pending is not None else reported
                model = gpu.name or UNKNOWN
                self.power.remember(key, model, gpu)
                healthy = gpu.health in (Health.OK, Health.DEGRADED)
                settled_report = report is not None and report.workload == reported
                if online and healthy and pending is None and reported and settled_report:
                    self.power.sample(
                        key,
                        model,
                        reported,
                        since_s=since_s,
                        gpu=gpu,
                        sample_s=telemetry.sent_at_s,
                        order=order,
                    )
                states.append(
                    GpuState(
                        key=key,
                        uuid=gpu.uuid or key,
                        model=gpu.name or UNKNOWN,
                        memory_total_bytes=gpu.memory_total_bytes or 0,
                        online=online,
                        healthy=gpu.health in (Health.OK, Health.DEGRADED),
                        current_workload=current,
                        since_s=since_s,
                        measured=self.measured.get(key, {}),
                        power_draw_w=self.power.last_draw_w.get(key),
                        power_limit_w=gpu.power_limit_w or self.power.limit_w.get(model),
                    )
                )
        self.power.fold()
        return states

    def _since(
        self,
        key: str,
        workload: str,
        reported_since_s: float | None,
        now_s: float,
        sla_workloads: Collection[str],
    ) -> float | None:
        """The agent's start time; unknown stays unknown, except on a reserved contract."""
        if reported_since_s is not None:
            self.seen.pop(key, None)
            return reported_since_s
        if workload not in sla_workloads:
            return None
        seen = self.seen.get(key)
        if seen is None or seen.workload != workload:
            seen = _Seen(workload, now_s)
            self.seen[key] = seen
        return seen.since_s

    def _measure(
        self, key: str, workload: str, hashrate_hs: float | None, power_w: float | None
    ) -> None:
        if not workload.startswith(MINE_PREFIX) or not hashrate_hs or power_w is None:
            return
        profile = workload[len(MINE_PREFIX) :]
        by_profile = self.measured.setdefault(key, {})
        previous = by_profile.get(profile)
        if previous is None:
            by_profile[profile] = MeasuredRate(hashrate_hs=hashrate_hs, power_w=power_w)
            return
        a = self.smoothing
        by_profile[profile] = MeasuredRate(
            hashrate_hs=a * hashrate_hs + (1 - a) * previous.hashrate_hs,
            power_w=a * power_w + (1 - a) * previous.power_w,
        )

    def resolve(self, name: str) -> str | None:
        """`node:index` for a GPU named either way (`node:index` or its NVML UUID)."""
        if name in self.uuids:
            return self.uuids[name]
        return name if ":" in name else None
