"""From the fleet's telemetry to the planner's `GpuState`s, with measured rates smoothed.

Once per plan (not per message) this walks the fleet and builds one `GpuState` per GPU:
online or not, healthy or not, what it runs and since when, and what it has measured.
Measurements are exponentially smoothed per GPU and mining profile: a GPU that reports a
hashrate while mining `mine:<profile>` contributes that hashrate and its NVML power draw,
and from then on the planner uses the measured figures instead of the benchmark table.

"Since when" is the agent's `since_s` when it reports one, else the first time this daemon
saw the GPU on that workload (after a restart of `serve` that is conservative: dwell restarts).
While a switch is in flight the planner is told the target workload, so it does not plan
the same switch twice or plan against a state that is about to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.central.fleet import FleetState
from orchestrator.domain import UNKNOWN, Health, NodeStatus, gpu_key
from orchestrator.policy.model import GpuState, MeasuredRate

_MINE_PREFIX = "mine:"


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

    def observe(
        self, fleet: FleetState, *, now_s: float, in_flight: Mapping[str, str] | None = None
    ) -> list[GpuState]:
        in_flight = in_flight or {}
        states: list[GpuState] = []
        for record in fleet.nodes.values():
            telemetry = record.telemetry
            if telemetry is None:
                continue
            online = record.status is NodeStatus.ONLINE
            for gpu in telemetry.gpus:
                key = gpu_key(record.name, gpu.index)
                if gpu.uuid:
                    self.uuids[gpu.uuid] = key
                reported = gpu.workload.workload if gpu.workload else None
                if reported == UNKNOWN:
                    reported = None
                since_s = None
                if reported is not None and online:
                    since_s = self._since(
                        key, reported, gpu.workload.since_s if gpu.workload else None, now_s
                    )
                    self._measure(
                        key,
                        reported,
                        gpu.workload.hashrate_hs if gpu.workload else None,
                        gpu.power_draw_w,
                    )
                current = in_flight.get(key, reported)
                states.append(
                    GpuState(
                        key=key,
                        uuid=gpu.uuid or key,
                        model=gpu.name or "unknown",
                        memory_total_bytes=gpu.memory_total_bytes or 0,
                        online=online,
                        healthy=gpu.health in (Health.OK, Health.DEGRADED),
                        current_workload=current,
                        since_s=since_s,
                        measured=self.measured.get(key, {}),
                    )
                )
        return states

    def _since(
        self, key: str, workload: str, reported_since_s: float | None, now_s: float
    ) -> float:
        seen = self.seen.get(key)
        if seen is None or seen.workload != workload:
            seen = _Seen(workload, reported_since_s if reported_since_s is not None else now_s)
            self.seen[key] = seen
        elif reported_since_s is not None:
            seen.since_s = reported_since_s
        return seen.since_s

    def _measure(
        self, key: str, workload: str, hashrate_hs: float | None, power_w: float | None
    ) -> None:
        if not workload.startswith(_MINE_PREFIX) or not hashrate_hs or power_w is None:
            return
        profile = workload[len(_MINE_PREFIX) :]
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
