"""From a profile to the driver instance that runs it: `build_driver` and `DriverRegistry`.

The agent builds one registry at start (STYLE point 18: dependencies made in one place and
passed in) and asks it for the driver of each profile a command names. Instances are shared
where sharing is right: one process driver (it remembers its children), one systemd driver,
one sim driver (it holds the simulation), and one docker driver per engine socket (each keeps
one connection pool). `close()` releases connections; workloads keep running.

This module is the only one in the package that knows all four drivers; the drivers never
import each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.config.profiles import ProfileSection
from orchestrator.drivers.base import Driver
from orchestrator.drivers.docker import DockerDriver
from orchestrator.drivers.process import ProcessDriver
from orchestrator.drivers.sim import SimDriver, WorkloadSink
from orchestrator.drivers.systemd import SystemdDriver


def build_driver(
    profile: ProfileSection,
    *,
    log_dir: Path,
    gpu_backend: WorkloadSink | None = None,
    time_scale: float = 1.0,
    clock: Callable[[], float] = time.time,
    systemctl: str = "systemctl",
    command_timeout_s: float = 15.0,
) -> Driver:
    """A new driver instance for `profile` (prefer `DriverRegistry`, which shares them)."""
    if profile.driver == "process":
        return ProcessDriver(log_dir=log_dir)
    if profile.driver == "docker":
        assert profile.docker is not None  # noqa: S101  (the config validator guarantees it)
        return DockerDriver(socket_path=profile.docker.socket_path)
    if profile.driver == "systemd":
        return SystemdDriver(systemctl=systemctl, command_timeout_s=command_timeout_s)
    return SimDriver(backend=gpu_backend, time_scale=time_scale, clock=clock)


class DriverRegistry:
    """The agent's drivers, one per kind (one per socket for docker), built on first use."""

    def __init__(
        self,
        *,
        log_dir: Path,
        gpu_backend: WorkloadSink | None = None,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        systemctl: str = "systemctl",
        command_timeout_s: float = 15.0,
    ) -> None:
        self._log_dir = log_dir
        self._gpu_backend = gpu_backend
        self._time_scale = time_scale
        self._clock = clock
        self._systemctl = systemctl
        self._command_timeout_s = command_timeout_s
        self._drivers: dict[str, Driver] = {}

    @staticmethod
    def _key(profile: ProfileSection) -> str:
        if profile.docker is not None:
            return f"docker:{profile.docker.socket_path}"
        return profile.driver

    def for_profile(self, profile: ProfileSection) -> Driver:
        """The driver that runs `profile`, shared with every profile of the same kind."""
        key = self._key(profile)
        driver = self._drivers.get(key)
        if driver is None:
            driver = build_driver(
                profile,
                log_dir=self._log_dir,
                gpu_backend=self._gpu_backend,
                time_scale=self._time_scale,
                clock=self._clock,
                systemctl=self._systemctl,
                command_timeout_s=self._command_timeout_s,
            )
            self._drivers[key] = driver
        return driver

    def drivers(self) -> list[Driver]:
        """Every driver built so far (for `discover` sweeps at start)."""
        return list(self._drivers.values())

    async def close(self) -> None:
        """Close every driver's connections; workloads keep running."""
        for driver in self._drivers.values():
            await driver.close()
        self._drivers.clear()
