"""Drivers: how a node agent starts, stops, observes and re-attaches to GPU workloads.

The package offers the `Driver` protocol and its optional abilities (`base`), four drivers
(`process`: child processes in their own process group; `docker`: containers through the
Docker Engine API with the GPU requested by UUID; `systemd`: templated units through
`systemctl`; `sim`: simulated workloads that move the fake GPU backend), and the
`DriverRegistry` that maps a declared profile (`orchestrator.config.profiles`) to its driver.

The switch executor above it decides *when*; drivers only know *how*. Every call is bounded by
a timeout, handles are plain JSON for persist-before-act, and errors are typed by what the
caller should do (`WorkloadStartError`: roll back; `DriverUnavailableError`: retry later).
Drivers never import each other, nor the agent.
"""

from orchestrator.drivers.base import (
    Discoverable,
    Drainable,
    Driver,
    DriverUnavailableError,
    GpuRef,
    Handle,
    HandleError,
    HasLogs,
    HealthReporting,
    StopResult,
    WorkloadHealth,
    WorkloadSpec,
    WorkloadStartError,
    WorkloadState,
    WorkloadStatus,
)
from orchestrator.drivers.registry import DriverRegistry, build_driver

__all__ = [
    "Discoverable",
    "Drainable",
    "Driver",
    "DriverRegistry",
    "DriverUnavailableError",
    "GpuRef",
    "Handle",
    "HandleError",
    "HasLogs",
    "HealthReporting",
    "StopResult",
    "WorkloadHealth",
    "WorkloadSpec",
    "WorkloadStartError",
    "WorkloadState",
    "WorkloadStatus",
    "build_driver",
]
