"""The root models of the two config files, `serve` and `agent`.

Each root is a handful of sections (STYLE point 17). Every field has a default that is
sensible on one machine, so an empty file is a valid config; a site changes what differs.
"""

from __future__ import annotations

import socket
from typing import Self

from pydantic import Field, model_validator

from orchestrator.config._base import Section
from orchestrator.config.common import HttpSection, LogSection, MqttSection
from orchestrator.config.gpu import GpuSection
from orchestrator.config.market import MarketConfig
from orchestrator.config.policy import (
    ContractsSection,
    MiningProfileSection,
    PlannerSection,
    PolicySection,
)
from orchestrator.config.profiles import ProfileList


class IngestSection(Section):
    """How `serve` treats what the nodes send."""

    # a node silent this long is offline, even without its last will
    node_offline_after_s: float = Field(default=10.0, gt=0, le=86_400)
    # how often the silence check runs
    staleness_check_interval_s: float = Field(default=1.0, gt=0, le=60)


class DispatchSection(Section):
    """How `serve` hands planned switches to the agents."""

    # an unacknowledged command is considered lost after this long and may be issued again
    command_timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    # a command an agent receives after this long is stale and must not run
    command_ttl_s: float = Field(default=300.0, gt=0, le=86_400)


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
    dispatch: DispatchSection = DispatchSection()

    @model_validator(mode="after")
    def _profile_ids_unique(self) -> Self:
        seen: set[str] = set()
        for profile in self.mining_profiles:
            if profile.id in seen:
                raise ValueError(f"mining profile id {profile.id!r} appears twice")
            seen.add(profile.id)
        return self

    def policy(self) -> PolicySection:
        """The planner's sections, as one."""
        return PolicySection(
            mining_profiles=self.mining_profiles, contracts=self.contracts, planner=self.planner
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


class AgentConfig(Section):
    """`orchestrator agent -c FILE`."""

    node: NodeSection = NodeSection()
    mqtt: MqttSection = MqttSection()
    http: HttpSection = HttpSection(port=9851)
    log: LogSection = LogSection()
    telemetry: TelemetrySection = TelemetrySection()
    gpu: GpuSection = GpuSection()
    # the workloads this node may run; a command names one of these ids, never a command line
    profiles: ProfileList = Field(default_factory=list)
