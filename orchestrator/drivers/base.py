"""The driver protocol: what the switch executor may ask of any workload driver.

Shape (STYLE points 9-11, after Nomad's driver plugin API): `start`, `stop` (graceful, then
forced, bounded by a timeout), `destroy` (forced, now), `inspect`, `recover` (re-attach after
an agent restart from a persisted handle). Everything is async and bounded; no method waits
forever. Optional abilities are small extra protocols (`Drainable`, `HealthReporting`,
`Discoverable`, `HasLogs`), checked with `isinstance`, never a fat base class.

What flows in and out:

- `WorkloadSpec` is a declared profile placed on one GPU (node, index, UUID, PCI bus id). It is
  built by the agent from a profile id a command named; it never carries a command line from
  outside. `spec.render(template)` fills the profile's placeholders for this GPU.
- `Handle` is what a started workload is known by. It is plain JSON (`to_json` / `from_json`,
  with a format version) so that the executor can persist it before acting on it further and
  hand it back to `recover` after a restart. `ref` is the driver's own name for the workload
  (a pid, a container id, a unit name); `details` holds what the driver needs besides it.
- `WorkloadStatus` is one observation: running, exited (with the exit code where known) or
  unknown (the driver could not tell: "nothing observed" is never "stopped"). Exit codes
  follow the shell's convention, 128 + N for death by signal N, whatever the driver.
- `StopResult` says how a stop ended: gracefully, or forced after the timeout.

Errors are typed by what the caller should do: `WorkloadStartError` (permanent: this profile
will not start this way; roll back), `DriverUnavailableError` (temporary: the engine or
systemctl did not answer; retry later), `HandleError` (permanent: a persisted handle that this
driver cannot read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from orchestrator.domain import ai_workload, mine_workload
from orchestrator.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrator.config.profiles import ProfileSection

HANDLE_VERSION = 1

JsonScalar = str | int | float | bool | None


class WorkloadStartError(PermanentError):
    """The workload could not be started as declared; retrying the same way fails the same way.

    `detail` is the underlying system's own message (dockerd's error text, systemctl's stderr,
    the exec error), so an operator sees the real cause.
    """

    def __init__(self, driver: str, profile_id: str, detail: str) -> None:
        self.driver = driver
        self.profile_id = profile_id
        self.detail = detail
        super().__init__(f"{driver} could not start profile {profile_id!r}: {detail}")


class DriverUnavailableError(TemporaryError):
    """The driver's backend (dockerd, systemctl) did not answer in time; try again later."""

    def __init__(self, driver: str, detail: str, *, delay_s: float = 5.0) -> None:
        self.driver = driver
        self.detail = detail
        super().__init__(f"{driver} unavailable: {detail}", delay_s=delay_s)


class HandleError(PermanentError):
    """A persisted handle that is malformed, of another version, or of another driver."""


@dataclass(frozen=True, slots=True)
class GpuRef:
    """One GPU as NVML names it on this node."""

    index: int
    uuid: str
    pci_bus_id: str


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """A declared profile placed on one GPU of one node."""

    profile: ProfileSection
    gpu: GpuRef
    node: str
    workload_id: str  # what telemetry will say runs: `mine:<profile>` or `ai:<contract>`

    @classmethod
    def build(
        cls, profile: ProfileSection, gpu: GpuRef, *, node: str, workload_id: str | None = None
    ) -> WorkloadSpec:
        """`profile` on `gpu`; the workload id defaults to `mine:<id>` / `ai:<id>`."""
        default = mine_workload if profile.kind == "mining" else ai_workload
        return cls(profile, gpu, node, workload_id or default(profile.id))

    @property
    def port(self) -> int | None:
        """The workload's API port on this GPU (`api_port_base + index`), if it has one."""
        return self.profile.port_for(self.gpu.index)

    def template_values(self) -> dict[str, str]:
        values = {
            "gpu_index": str(self.gpu.index),
            "gpu_uuid": self.gpu.uuid,
            "pci_bus_id": self.gpu.pci_bus_id,
            "node": self.node,
            "profile": self.profile.id,
        }
        if self.port is not None:
            values["port"] = str(self.port)
        return values

    def render(self, template: str) -> str:
        """Fill a profile template's placeholders for this GPU (validated when loaded)."""
        return template.format_map(self.template_values())


@dataclass(frozen=True, slots=True)
class Handle:
    """A started workload, as plain JSON-friendly values."""

    driver: str
    ref: str  # pid, container id, unit name, simulation id
    profile_id: str
    workload_id: str
    node: str
    gpu_index: int
    gpu_uuid: str
    started_at_s: float  # unix seconds
    details: dict[str, JsonScalar] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict that `from_json` reads back."""
        return {
            "version": HANDLE_VERSION,
            "driver": self.driver,
            "ref": self.ref,
            "profile_id": self.profile_id,
            "workload_id": self.workload_id,
            "node": self.node,
            "gpu_index": self.gpu_index,
            "gpu_uuid": self.gpu_uuid,
            "started_at_s": self.started_at_s,
            "details": dict(self.details),
        }

    @classmethod
    def from_json(cls, data: object, *, driver: str | None = None) -> Handle:
        """Read a persisted handle; `HandleError` if it is not one (of `driver`, when given)."""
        if not isinstance(data, dict):
            raise HandleError(f"a handle is a JSON object, got {type(data).__name__}")
        if data.get("version") != HANDLE_VERSION:
            raise HandleError(f"handle version {data.get('version')!r} is not {HANDLE_VERSION}")
        try:
            handle = cls(
                driver=_typed(data, "driver", str),
                ref=_typed(data, "ref", str),
                profile_id=_typed(data, "profile_id", str),
                workload_id=_typed(data, "workload_id", str),
                node=_typed(data, "node", str),
                gpu_index=_typed(data, "gpu_index", int),
                gpu_uuid=_typed(data, "gpu_uuid", str),
                started_at_s=float(_typed(data, "started_at_s", (int, float))),
                details=dict(_typed(data, "details", dict)),
            )
        except KeyError as missing:
            raise HandleError(f"handle lacks {missing}") from None
        if driver is not None and handle.driver != driver:
            raise HandleError(f"handle of driver {handle.driver!r} given to {driver!r}")
        return handle

    def detail_int(self, key: str) -> int | None:
        value = self.details.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def detail_str(self, key: str) -> str | None:
        value = self.details.get(key)
        return value if isinstance(value, str) else None


def _typed(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise HandleError(f"handle field {key!r} has the wrong type: {value!r}")
    return value


class WorkloadState(StrEnum):
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"  # the driver could not tell (engine away): never read as "stopped"


@dataclass(frozen=True, slots=True)
class WorkloadStatus:
    """One observation of a workload."""

    state: WorkloadState
    exit_code: int | None = None  # EXITED: the code where known; 128 + N for signal N
    pid: int | None = None
    container_id: str | None = None
    started_at_s: float | None = None
    detail: str = ""

    @property
    def running(self) -> bool:
        return self.state is WorkloadState.RUNNING


@dataclass(frozen=True, slots=True)
class StopResult:
    """How a stop ended."""

    forced: bool  # the graceful stop ran out of time and the workload was killed
    exit_code: int | None  # None when the driver could not learn it


@dataclass(frozen=True, slots=True)
class WorkloadHealth:
    """What a self-reporting (simulated) workload says about itself."""

    ready: bool  # AI: the model is loaded and requests are served; mining: hashrate > 0
    hashrate_hs: float | None  # mining only


def signal_exit_code(signal_number: int) -> int:
    """The shell's exit code for death by a signal."""
    return 128 + signal_number


def whole_seconds(timeout_s: float) -> int:
    """A timeout rounded up to whole seconds, as APIs taking integer seconds want it."""
    return max(0, math.ceil(timeout_s))


@runtime_checkable
class Driver(Protocol):
    """Starts, stops, observes and re-attaches to workloads of one kind."""

    @property
    def name(self) -> str:
        """`process`, `docker`, `systemd` or `sim`: the `driver` of the handles it makes."""
        ...

    async def start(self, spec: WorkloadSpec) -> Handle:
        """Launch the workload and return as soon as it runs (not when it is healthy).

        Raises `WorkloadStartError` when it cannot start as declared, `DriverUnavailableError`
        when the backend does not answer.
        """
        ...

    async def stop(self, handle: Handle, timeout_s: float) -> StopResult:
        """Ask the workload to exit; kill it after `timeout_s`. Bounded; idempotent."""
        ...

    async def destroy(self, handle: Handle) -> None:
        """Kill the workload now and release what it held. Bounded; idempotent."""
        ...

    async def inspect(self, handle: Handle) -> WorkloadStatus:
        """Observe the workload; UNKNOWN (never an exception) when the backend cannot tell."""
        ...

    async def recover(self, persisted: dict[str, Any]) -> Handle | None:
        """Re-attach to a workload from `Handle.to_json()` after an agent restart.

        None when nothing of it remains; otherwise its handle (`inspect` says whether it still
        runs). Raises `HandleError` for a handle this driver cannot read, and
        `DriverUnavailableError` when the backend cannot tell (never guess "gone").
        """
        ...

    async def close(self) -> None:
        """Release the driver's own resources (connections); workloads keep running."""
        ...


@runtime_checkable
class Drainable(Protocol):
    """An AI workload that can stop admitting requests and finish those in flight."""

    async def drain(self, handle: Handle, timeout_s: float) -> bool:
        """Stop admitting work; wait up to `timeout_s` for in-flight requests. True if drained."""
        ...


@runtime_checkable
class HealthReporting(Protocol):
    """A workload whose driver knows its health without a probe (the simulation)."""

    async def health(self, handle: Handle) -> WorkloadHealth: ...


@runtime_checkable
class Discoverable(Protocol):
    """A driver that can list the workloads this node started, handle or no handle.

    The safety net for a crash between "started" and "handle persisted": the agent finds its
    workloads by their marks (container labels, an environment marker) before reconciling.
    """

    async def discover(self, node: str) -> list[Handle]:
        """Every workload `node` started through this driver that still exists."""
        ...


@runtime_checkable
class HasLogs(Protocol):
    """A driver that writes each workload's output to a file."""

    def log_path(self, handle: Handle) -> Path | None: ...
