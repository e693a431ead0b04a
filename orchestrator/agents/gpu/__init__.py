"""GPU collection for the node agent: the real NVML collector and a simulated one.

Offers `GpuBackend` (what the agent samples), `WorkloadSettable` (the optional ability of a
simulated backend to be told what runs on a GPU), the two backends, the typed error
`NvmlUnavailableError`, and `build_backend`, which turns the `[gpu]` config section into a
backend. The factory lives here rather than in `orchestrator.config.gpu` because the import
contract keeps `orchestrator.config` below `orchestrator.agents`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from orchestrator.agents.gpu.base import GpuBackend, WorkloadSettable
from orchestrator.agents.gpu.fake import FAULT_KINDS, FakeGpuBackend, FaultKind
from orchestrator.agents.gpu.nvml import NvmlBackend, NvmlUnavailableError
from orchestrator.config.gpu import GpuSection

__all__ = [
    "FAULT_KINDS",
    "FakeGpuBackend",
    "FaultKind",
    "GpuBackend",
    "NvmlBackend",
    "NvmlUnavailableError",
    "WorkloadSettable",
    "build_backend",
]


def build_backend(
    section: GpuSection, *, node: str, clock: Callable[[], float] = time.time
) -> GpuBackend:
    """The backend `section` asks for, not yet opened. `clock` only drives the fake."""
    if section.backend == "fake":
        return FakeGpuBackend.from_section(section.fake, node=node, clock=clock)
    return NvmlBackend()
