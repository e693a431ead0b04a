"""The root models of the two config files, `serve` and `agent`.

Each root is a handful of sections (STYLE point 17). Every field has a default that is
sensible on one machine, so an empty file is a valid config; a site changes what differs.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from orchestrator.config._base import Section
from orchestrator.config.backtest import BacktestSection
from orchestrator.config.common import HttpSection, LogSection, MqttSection
from orchestrator.config.curtailment import CurtailmentSection
from orchestrator.config.gpu import GpuSection
from orchestrator.config.market import MarketConfig
from orchestrator.config.policy import (
    ContractsSection,
    MiningProfileSection,
    PlannerSection,
    PolicySection,
    check_unique_profile_ids,
)
from orchestrator.config.power import PowerSection
from orchestrator.config.profiles import ProfileList


class IngestSection(Section):
    """How `serve` treats what the nodes send."""

    # a node silent this long is offline, even without its last will
    node_offline_after_s: float = Field(default=10.0, gt=0, le=86_400)
    # how often the silence check runs
    staleness_check_interval_s: float = Field(default=1.0, gt=0, le=60)


class DispatchSection(Section):
    """How `serve` hands planned switches to the agents.

    A plan's switches go out as a wave: those that lower a GPU's power at once, those that
    raise it (starts) as `planner.site_power_cap_kw`, the ramp limit and the per-node limit
    allow. Without a cap or limits everything goes at once, stops first."""

    # an unacknowledged command is considered lost after this long and may be issued again
    command_timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    # a command an agent receives after this long is stale and must not run
    command_ttl_s: float = Field(default=300.0, gt=0, le=86_400)
    # switch wave: at most this many kW of start power (switches that raise a GPU's power)
    # released in any 60 s, with or without a site cap (unset: no ramp limit)
    ramp_limit_kw_per_minute: float | None = Field(default=None, gt=0, le=1_000_000)
    # switch wave: at most this many starts in flight on one node at once (unset: no limit)
    max_starts_per_node: int | None = Field(default=None, ge=1, le=1024)


class SlaSection(Section):
    """How the SLA ledger accounts delivered against committed GPU-hours."""

    billing_period: Literal["month", "week", "day"] = "month"  # UTC calendar periods
    accrual_interval_s: float = Field(default=5.0, gt=0, le=600)


class StoreSection(Section):
    """Where `serve` keeps overrides, the switch journal, the SLA ledger and prices."""

    path: Path = Path("/var/lib/orchestrator/serve.sqlite3")


class ServeConfig(Section):
    """`orchestrator serve -c FILE`."""

    mqtt: MqttSection = MqttSection()
    http: HttpSection = HttpSection(port=9850)
    log: LogSection = LogSection()
    ingest: IngestSection = IngestSection()
    market: MarketConfig = MarketConfig()
    mining_profiles: list[MiningProfileSection] = Field(default_factory=list)
    contracts: ContractsSection = ContractsSection()
    planner: PlannerSection = PlannerSection()
    power: PowerSection = PowerSection()
    dispatch: DispatchSection = DispatchSection()
    sla: SlaSection = SlaSection()
    store: StoreSection = StoreSection()
    curtailment: CurtailmentSection = CurtailmentSection()
    # read by `orchestrator backtest` only
    backtest: BacktestSection | None = None

    @model_validator(mode="after")
    def _profile_ids_unique(self) -> Self:
        check_unique_profile_ids(self.mining_profiles)
        return self

    def policy(self) -> PolicySection:
        """The planner's sections, as one."""
        return PolicySection(
            mining_profiles=self.mining_profiles,
            contracts=self.contracts,
            planner=self.planner,
            power=self.power,
        )


class NodeSection(Section):
    name: str = Field(
        default_factory=lambda: socket.gethostname().split(".")[0] or "node",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    )


class TelemetrySection(Section):
    interval_s: float = Field(default=1.0, ge=0.05, le=3600)


class ExecutorSection(Section):
    """`[executor]`: how the agent switches its GPUs (`orchestrator.agents.executor`)."""

    # per-GPU state (current workload, driver handle, fencing generation, recent results),
    # written before each action; the systemd unit's StateDirectory
    state_dir: Path = Path("/var/lib/orchestrator/agent")
    # the process driver's per-GPU workload logs; the systemd unit's LogsDirectory
    log_dir: Path = Path("/var/log/orchestrator/agent")
    # after a stop, NVML must show the GPU free (no compute process, memory released) within this
    verify_free_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # "released": used memory at or below this (drivers reserve a few hundred MiB on an idle GPU)
    verify_free_max_memory_mib: int = Field(default=1024, ge=0, le=1_048_576)
    # switches running at once on this node (each GPU still switches one command at a time)
    max_parallel_switches: int = Field(default=4, ge=1, le=64)
    # finished command ids remembered per GPU, for idempotent replies to a repeated command
    remembered_results_per_gpu: int = Field(default=100, ge=1, le=10_000)
    # the sim driver's delays are multiplied by this (the demo: model loads in seconds)
    sim_time_scale: float = Field(default=1.0, ge=0, le=100)


class WatchdogSection(Section):
    """`[watchdog]`: per-GPU supervision of what runs (`orchestrator.agents.watchdog`)."""

    enabled: bool = True
    interval_s: float = Field(default=5.0, gt=0, le=3600)
    # a miner with 0 H/s, or an inference server failing readiness, this long is restarted
    unhealthy_after_s: float = Field(default=30.0, ge=0, le=86_400)
    # a miner whose accepted-share count has not moved this long is stalled
    stall_s: float = Field(default=900.0, gt=0, le=86_400)
    # this many restarts within window_s, and one more failure, quarantines the GPU
    max_restarts: int = Field(default=3, ge=1, le=100)
    window_s: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    # delay before a restart: exponential with full jitter, reset after window_s without one
    backoff_initial_s: float = Field(default=10.0, ge=0, le=3600)
    backoff_max_s: float = Field(default=300.0, ge=0, le=86_400)
    # POST /api/v1/gpus/{index}/clear-quarantine from another host than loopback
    clear_quarantine_remote: bool = False

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self


class AgentConfig(Section):
    """`orchestrator agent -c FILE`."""

    node: NodeSection = NodeSection()
    mqtt: MqttSection = MqttSection()
    http: HttpSection = HttpSection(port=9851)
    log: LogSection = LogSection()
    telemetry: TelemetrySection = TelemetrySection()
    gpu: GpuSection = GpuSection()
    executor: ExecutorSection = ExecutorSection()
    watchdog: WatchdogSection = WatchdogSection()
    # the workloads this node may run; a command names one of these ids, never a command line
    profiles: ProfileList = Field(default_factory=list)
