"""From the fleet's telemetry to the planner's `GpuState`s, with measured rates smoothed.

Once per plan (not per message) this walks the fleet and builds one `GpuState` per GPU:
online or not, healthy or not, what it runs and since when, and what it has measured.
Measurements are exponentially smoothed per GPU and mining profile: a GPU that reports a
hashrate while mining `mine:<profile>` contributes that hashrate and its NVML power draw.
Each telemetry snapshot counts once, however many plans see it. Readings within the
profile's `hashrate_warmup_s` of the miner's start (by the agent's `since_s` and its own
clock; from first sight when the agent cannot say) are a miner still ramping up and are
skipped. The number of readings taken goes with the figures (`hashrate_samples`), and the
economics blends the benchmark into the measurement until there are enough of them.

Share counters (the miner's accepted and rejected shares for the GPU, counted since the
miner started) are summed as increments, a counter that goes down being a new miner run,
over a window of the most recent `_SHARE_WINDOW` shares (older ones fade out in
proportion); once `min_shares` are counted the accepted fraction goes with the figures.

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

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

from orchestrator.central.fleet import FleetState
from orchestrator.central.gpubook import GpuBook, Order, telemetry_order
from orchestrator.central.power_learning import PowerLearner
from orchestrator.domain import MINE_PREFIX, UNKNOWN, Health, NodeStatus, gpu_key
from orchestrator.policy.model import (
    DEFAULT_HASHRATE_WARMUP_S,
    DEFAULT_MIN_SHARES,
    GpuState,
    MeasuredRate,
    MiningProfile,
)
from orchestrator.protocol import WorkloadReport

_SHARE_WINDOW = 1000.0  # shares: the accepted fraction follows about this many recent ones


@dataclass(slots=True)
class _Seen:
    workload: str
    since_s: float


@dataclass(slots=True)
class _Shares:
    """One GPU's share counts on one profile: decayed sums, and the miner's last counters."""

    accepted: float = 0.0
    rejected: float = 0.0
    last: tuple[int, int] | None = None

    def add(self, accepted: int, rejected: int) -> None:
        last = self.last
        if last is None or accepted < last[0] or rejected < last[1]:
            last = (0, 0)  # first sight, or the miner restarted and counts from zero
        self.accepted += accepted - last[0]
        self.rejected += rejected - last[1]
        self.last = (accepted, rejected)
        total = self.accepted + self.rejected
        if total > _SHARE_WINDOW:
            self.accepted *= _SHARE_WINDOW / total
            self.rejected *= _SHARE_WINDOW / total

    def accepted_fraction(self, min_shares: int) -> float | None:
        total = self.accepted + self.rejected
        if total < min(min_shares, _SHARE_WINDOW):
            return None
        return self.accepted / total


@dataclass(slots=True)
class FleetObserver:
    """Keeps per-GPU smoothing state between plans."""

    smoothing: float = 0.2  # weight of the newest reading
    profiles: Mapping[str, MiningProfile] = field(default_factory=dict)  # warm-up, min shares
    measured: dict[str, dict[str, MeasuredRate]] = field(default_factory=dict)
    seen: dict[str, _Seen] = field(default_factory=dict)
    uuids: dict[str, str] = field(default_factory=dict)  # NVML UUID -> node:index
    shares: dict[tuple[str, str], _Shares] = field(default_factory=dict)  # (GPU, profile)
    read: dict[str, Order] = field(default_factory=dict)  # the snapshot last measured, per GPU
    ramp: dict[str, _Seen] = field(default_factory=dict)  # first sight of a start not reported
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
                # the reading's figures are of the workload it reports, not a stale one
                settled_report = report is not None and report.workload == reported
                if reported is not None and online:
                    since_s = self._since(key, reported, since_s, now_s, sla_workloads)
                    if report is not None and settled_report:
                        self._measure(
                            key,
                            report,
                            gpu.power_draw_w,
                            order=order,
                            sent_at_s=telemetry.sent_at_s,
                            now_s=now_s,
                        )
                else:
                    since_s = None
                pending = in_flight.get(key)
                current = pending.workload if pending is not None else reported
                model = gpu.name or UNKNOWN
                self.power.remember(key, model, gpu)
                healthy = gpu.health in (Health.OK, Health.DEGRADED)
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
                        model=model,
                        memory_total_bytes=gpu.memory_total_bytes or 0,
                        online=online,
                        healthy=healthy,
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
        self,
        key: str,
        report: WorkloadReport,
        power_w: float | None,
        *,
        order: Order,
        sent_at_s: float,
        now_s: float,
    ) -> None:
        workload = report.workload
        if not workload.startswith(MINE_PREFIX):
            self.ramp.pop(key, None)  # a later mining run warms up from its own first sight
            return
        if self.read.get(key) == order:
            return  # a snapshot already taken (plans outpace telemetry)
        self.read[key] = order
        profile_id = workload[len(MINE_PREFIX) :]
        profile = self.profiles.get(profile_id)
        warmup_s = profile.hashrate_warmup_s if profile else DEFAULT_HASHRATE_WARMUP_S
        shares = self.shares.setdefault((key, profile_id), _Shares())
        if report.accepted_shares is not None and report.rejected_shares is not None:
            shares.add(report.accepted_shares, report.rejected_shares)
        fraction = shares.accepted_fraction(profile.min_shares if profile else DEFAULT_MIN_SHARES)
        by_profile = self.measured.setdefault(key, {})
        previous = by_profile.get(profile_id)
        hashrate_hs = report.hashrate_hs
        if (
            not hashrate_hs
            or power_w is None
            or self._ramping(key, report, sent_at_s, now_s, warmup_s)
        ):
            if previous is not None:
                by_profile[profile_id] = replace(previous, accepted_fraction=fraction)
            return
        if previous is None:
            by_profile[profile_id] = MeasuredRate(hashrate_hs, power_w, 1, fraction)
            return
        a = self.smoothing
        by_profile[profile_id] = MeasuredRate(
            hashrate_hs=a * hashrate_hs + (1 - a) * previous.hashrate_hs,
            power_w=a * power_w + (1 - a) * previous.power_w,
            hashrate_samples=(previous.hashrate_samples or 0) + 1,
            accepted_fraction=fraction,
        )

    def _ramping(
        self, key: str, report: WorkloadReport, sent_at_s: float, now_s: float, warmup_s: float
    ) -> bool:
        """Whether the miner started less than `warmup_s` ago: by the agent's clock when it
        says when it started, else from the first time this daemon saw it run."""
        if report.since_s is not None:
            self.ramp.pop(key, None)
            return sent_at_s - report.since_s < warmup_s
        seen = self.ramp.get(key)
        if seen is None or seen.workload != report.workload:
            seen = self.ramp[key] = _Seen(report.workload, now_s)
        return now_s - seen.since_s < warmup_s

    def resolve(self, name: str) -> str | None:
        """`node:index` for a GPU named either way (`node:index` or its NVML UUID)."""
        if name in self.uuids:
            return self.uuids[name]
        return name if ":" in name else None
