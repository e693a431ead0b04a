"""What every GPU backend offers the agent, and the health rules they share.

A backend is opened once, sampled every telemetry interval and closed at shutdown. `sample()`
is synchronous (NVML is a blocking C library); the agent calls it through `asyncio.to_thread`.
It returns one `GpuTelemetry` per GPU the backend knows, in index order, every time: a GPU
that cannot be read is still listed, marked `unhealthy` or `lost` with its reasons, so that
the snapshot stays whole (silence would read as "unknown" upstream, and a failing GPU must be
seen as failing). The `workload` field is left empty: what runs on a GPU is the agent's
knowledge, not the hardware's.

`WorkloadSettable` is the optional ability of a simulated backend: a simulated driver tells
it what now runs on a GPU, and the readings follow (power, memory, processes).

The health rules below are shared so that the real and the fake backend judge the same
counters the same way. A finding is `(Health, reason)`; a GPU's health is its worst finding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol, runtime_checkable

from orchestrator.domain import Health
from orchestrator.protocol import GpuTelemetry

_SEVERITY = {Health.OK: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2, Health.LOST: 3}

# Xid codes that NVIDIA's documentation attributes to the application rather than the GPU
# (illegal access, page fault, stopped or pre-empted context, video engine exception,
# context-switch timeout). The Kubernetes device plugin skips the same set.
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 109})


@runtime_checkable
class GpuBackend(Protocol):
    """A source of per-GPU telemetry for one node."""

    @property
    def name(self) -> str:
        """`nvml` or `fake`: published as the node's `nvml_backend`."""
        ...

    def open(self) -> None:
        """Acquire the hardware (or simulation); raises a `PermanentError` if impossible."""
        ...

    def close(self) -> None:
        """Release what `open` acquired; safe to call twice or without `open`."""
        ...

    def driver_version(self) -> str | None:
        """The GPU driver's version string, once open; None when unknown."""
        ...

    def sample(self) -> list[GpuTelemetry]:
        """One reading of every GPU, in index order. Blocking; cheap enough for 1 Hz."""
        ...


@runtime_checkable
class WorkloadSettable(Protocol):
    """A backend whose GPUs' workload a simulated driver sets (the fake backend)."""

    def set_workload(self, index: int, workload: str, *, since_s: float) -> None:
        """From `since_s` (unix seconds) on, GPU `index` runs `workload` (`idle`, `mine:x` ...)."""
        ...

    def workload_of(self, index: int) -> str:
        """The workload GPU `index` runs now."""
        ...


class Finding(NamedTuple):
    """One observation about a GPU's health."""

    health: Health
    reason: str


def worst_health(findings: Iterable[Finding]) -> Health:
    """The most severe health among the findings; OK when there are none."""
    worst = Health.OK
    for finding in findings:
        if _SEVERITY[finding.health] > _SEVERITY[worst]:
            worst = finding.health
    return worst


def memory_error_findings(
    *,
    ecc_corrected_volatile: int | None,
    ecc_uncorrected_volatile: int | None,
    retired_pages_pending: bool | None,
) -> list[Finding]:
    """Judge the ECC counters (since driver load) and page retirement.

    Uncorrected errors mean data was corrupted: unhealthy. Corrected errors and pending page
    retirement still work but want a reset at the next convenient moment: degraded.
    """
    findings: list[Finding] = []
    if ecc_uncorrected_volatile:
        findings.append(
            Finding(
                Health.UNHEALTHY,
                f"uncorrected ECC errors since driver load: {ecc_uncorrected_volatile}",
            )
        )
    if ecc_corrected_volatile:
        findings.append(
            Finding(
                Health.DEGRADED, f"corrected ECC errors since driver load: {ecc_corrected_volatile}"
            )
        )
    if retired_pages_pending:
        findings.append(Finding(Health.DEGRADED, "retired pages pending: a GPU reset is required"))
    return findings


def xid_finding(xid: int) -> Finding:
    """An Xid error: degraded if the application caused it, otherwise unhealthy."""
    if xid in APPLICATION_XIDS:
        return Finding(Health.DEGRADED, f"Xid {xid} (application error)")
    return Finding(Health.UNHEALTHY, f"Xid {xid} (critical error since the agent started)")
