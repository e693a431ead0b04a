"""The real GPU collector: NVML through `nvidia-ml-py` (module `pynvml`).

`open()` initialises NVML once, reads the driver version and, per GPU, its handle and static
identity (UUID, PCI bus id in NVML's `00000000:01:00.0` form, name), and registers every GPU
that supports it for Xid critical-error events. `sample()` then costs one short series of
NVML queries per GPU and one non-blocking drain of the event set; `close()` frees the event
set and shuts NVML down. `nvmlInit` failing (no driver: `NVMLError_LibraryNotFound`, code 12;
driver/library mismatch after an upgrade without reboot; no permission) is
`NvmlUnavailableError`, a `PermanentError` that tells the operator what to do.

Per field, NVML errors are judged by what they mean:
- Not supported (datacenter boards have no fan, GeForce boards have no ECC, old drivers lack a
  function): the field is None and nothing else happens. The unsupported query is remembered
  per GPU and not repeated (a MIG-mode change needs a GPU reset, and an agent restart with it).
- GPU is lost (fell off the bus): the GPU is reported `lost`, with its cached identity and no
  readings; the other GPUs are sampled as usual.
- Anything else: the field is None and the GPU is `unhealthy`, the failing call and NVML's
  message in `health_reasons`. Sampling of that GPU's other fields, and of the other GPUs, goes on.
A value outside the wire protocol's bounds (a driver glitch) is dropped the same way, so one
odd reading never loses the snapshot.

Health also comes from the counters NVML keeps: volatile (since driver load) corrected and
uncorrected ECC totals, retired pages pending, row remapping pending or failed (Ampere and
later use row remapping instead of page retirement), and Xid critical errors. An Xid that
NVIDIA attributes to the application (13, 31, 43, 45, 68, 109) degrades the GPU for the sample
in which it arrives; any other Xid marks it unhealthy until the agent restarts, because NVML
keeps no history of Xids to read back. Watching Xids is optional (`watch_xid_events`) and
skipped for a GPU whose event registration fails.

Process names come from `/proc/<pid>/comm`; NVML reports host PIDs, so an agent in a container
needs the host PID namespace to name them (otherwise the name is None).

The `pynvml` module is a constructor argument (`nvml=`) defaulting to the real one, so tests
put a fake NVML at exactly this hardware boundary.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pynvml
from pydantic import ValidationError

from orchestrator.agents.gpu.base import (
    Finding,
    memory_error_findings,
    worst_health,
    xid_finding,
)
from orchestrator.domain import Health
from orchestrator.errors import PermanentError
from orchestrator.protocol import GpuProcess, GpuTelemetry

# NVML return codes and query constants (nvml.h; stable across driver versions).
_NOT_SUPPORTED = 3
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_TEMPERATURE_GPU = 0
_CLOCK_SM = 1
_CLOCK_MEM = 2
_ECC_CORRECTED = 0
_ECC_UNCORRECTED = 1
_ECC_VOLATILE = 0
_EVENT_TYPE_XID_CRITICAL = 0x8
_FEATURE_ENABLED = 1

_MAX_EVENTS_PER_SAMPLE = 64
_MAX_PROCESSES = 256
_MAX_REASONS = 32
_MW_PER_W = 1000.0


class NvmlUnavailableError(PermanentError):
    """NVML cannot be used on this node; `nvml_error_code` is NVML's code when it gave one."""

    def __init__(self, detail: str, *, nvml_error_code: int | None = None) -> None:
        super().__init__(
            f"NVML is not usable on this node: {detail}. Install the NVIDIA driver (it provides "
            'libnvidia-ml.so.1), or set gpu.backend = "fake" in the agent config to simulate GPUs.'
        )
        self.nvml_error_code = nvml_error_code


class _GpuLostError(Exception):
    def __init__(self, call: str) -> None:
        super().__init__(call)
        self.call = call


@dataclass
class _Gpu:
    """What `open` learnt about one GPU, plus what sampling remembers about it."""

    index: int
    handle: Any = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    name: str | None = None
    identified: bool = False
    unsupported: set[str] = field(default_factory=set)
    critical_xids: list[int] = field(default_factory=list)


class _Reader:
    """Calls NVML for one GPU and turns its errors into None plus findings."""

    def __init__(self, nvml: Any, gpu: _Gpu, unsupported_errors: tuple[type[BaseException], ...]):
        self._nvml = nvml
        self._gpu = gpu
        self._unsupported_errors = unsupported_errors
        self.findings: list[Finding] = []
        self.failed = False

    def call(self, function: Any, *args: Any) -> Any:
        name = getattr(function, "__name__", "nvml")
        key = f"{name}{args}" if args else name
        if key in self._gpu.unsupported:
            return None
        try:
            return function(self._gpu.handle, *args)
        except self._unsupported_errors:
            self._gpu.unsupported.add(key)
            return None
        except self._nvml.NVMLError as error:
            code = getattr(error, "value", None)
            if code in (_NOT_SUPPORTED, _FUNCTION_NOT_FOUND):
                self._gpu.unsupported.add(key)
                return None
            if code == _GPU_IS_LOST:
                raise _GpuLostError(name) from None
            self.failed = True
            self.findings.append(Finding(Health.UNHEALTHY, f"{name}: {error}"))
            return None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _integer(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _watts(milliwatts: object) -> float | None:
    return None if milliwatts is None else float(milliwatts) / _MW_PER_W  # type: ignore[arg-type]


class NvmlBackend:
    """The real GPUs of this node, read through NVML."""

    name = "nvml"

    def __init__(
        self,
        *,
        nvml: Any = None,
        proc_root: Path = Path("/proc"),
        watch_xid_events: bool = True,
    ) -> None:
        self._nvml: Any = pynvml if nvml is None else nvml
        self._proc_root = proc_root
        self._watch_xid_events = watch_xid_events
        mismatch = getattr(self._nvml, "NVMLLibraryMismatchError", None)
        self._unsupported_errors: tuple[type[BaseException], ...] = (
            (mismatch,) if isinstance(mismatch, type) else ()
        )
        self._lock = threading.Lock()
        self._opened = False
        self._driver_version: str | None = None
        self._gpus: list[_Gpu] = []
        self._event_set: Any = None

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        with self._lock:
            if self._opened:
                return
            nvml = self._nvml
            try:
                nvml.nvmlInit()
            except nvml.NVMLError as error:
                code = getattr(error, "value", None)
                raise NvmlUnavailableError(
                    f"nvmlInit failed with {type(error).__name__} ({error}, NVML error {code})",
                    nvml_error_code=code,
                ) from error
            try:
                count = int(nvml.nvmlDeviceGetCount())
            except nvml.NVMLError as error:
                with contextlib.suppress(nvml.NVMLError):
                    nvml.nvmlShutdown()
                code = getattr(error, "value", None)
                raise NvmlUnavailableError(
                    f"nvmlDeviceGetCount failed ({error})", nvml_error_code=code
                ) from error
            try:
                self._driver_version = _text(nvml.nvmlSystemGetDriverVersion())
            except nvml.NVMLError:
                self._driver_version = None
            self._gpus = [_Gpu(index=index) for index in range(count)]
            for gpu in self._gpus:
                with contextlib.suppress(_GpuLostError):
                    self._acquire(gpu, _Reader(nvml, gpu, self._unsupported_errors))
            self._event_set = self._watch_xids() if self._watch_xid_events else None
            self._opened = True

    def close(self) -> None:
        with self._lock:
            if not self._opened:
                return
            nvml = self._nvml
            if self._event_set is not None:
                with contextlib.suppress(nvml.NVMLError):
                    nvml.nvmlEventSetFree(self._event_set)
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlShutdown()
            self._event_set = None
            self._gpus = []
            self._opened = False

    def driver_version(self) -> str | None:
        return self._driver_version

    # ------------------------------------------------------------------ sampling

    def sample(self) -> list[GpuTelemetry]:
        with self._lock:
            if not self._opened:
                raise RuntimeError("NvmlBackend.sample() called before open()")
            fresh_xids = self._drain_xid_events()
            return [self._sample_gpu(gpu, fresh_xids.get(gpu.index, [])) for gpu in self._gpus]

    def _acquire(self, gpu: _Gpu, reader: _Reader) -> None:
        """Get the handle and the static identity of a GPU (at open, retried while missing)."""
        nvml = self._nvml
        if gpu.handle is None:
            try:
                gpu.handle = nvml.nvmlDeviceGetHandleByIndex(gpu.index)
            except nvml.NVMLError as error:
                if getattr(error, "value", None) == _GPU_IS_LOST:
                    raise _GpuLostError("nvmlDeviceGetHandleByIndex") from None
                reader.failed = True
                reader.findings.append(
                    Finding(Health.UNHEALTHY, f"nvmlDeviceGetHandleByIndex: {error}")
                )
                return
        failed_before = reader.failed
        reader.failed = False
        gpu.uuid = _text(reader.call(nvml.nvmlDeviceGetUUID))
        gpu.name = _text(reader.call(nvml.nvmlDeviceGetName))
        pci = reader.call(nvml.nvmlDeviceGetPciInfo)
        gpu.pci_bus_id = None if pci is None else _text(getattr(pci, "busId", None))
        gpu.identified = not reader.failed
        reader.failed = reader.failed or failed_before

    def _sample_gpu(self, gpu: _Gpu, fresh_xids: list[int]) -> GpuTelemetry:
        reader = _Reader(self._nvml, gpu, self._unsupported_errors)
        try:
            if not gpu.identified:
                self._acquire(gpu, reader)
            if gpu.handle is None:
                return self._telemetry(gpu, {}, reader.findings)
            fields = self._read_fields(reader)
        except _GpuLostError as lost:
            return self._telemetry(gpu, {}, [Finding(Health.LOST, f"GPU is lost ({lost.call})")])
        findings = reader.findings
        findings.extend(xid_finding(xid) for xid in gpu.critical_xids)
        findings.extend(xid_finding(xid) for xid in fresh_xids if xid not in gpu.critical_xids)
        return self._telemetry(gpu, fields, findings)

    def _read_fields(self, reader: _Reader) -> dict[str, Any]:
        nvml = self._nvml
        memory = reader.call(nvml.nvmlDeviceGetMemoryInfo)
        utilization = reader.call(nvml.nvmlDeviceGetUtilizationRates)
        processes = reader.call(nvml.nvmlDeviceGetComputeRunningProcesses)
        ecc_corrected = reader.call(nvml.nvmlDeviceGetTotalEccErrors, _ECC_CORRECTED, _ECC_VOLATILE)
        ecc_uncorrected = reader.call(
            nvml.nvmlDeviceGetTotalEccErrors, _ECC_UNCORRECTED, _ECC_VOLATILE
        )
        pending = reader.call(nvml.nvmlDeviceGetRetiredPagesPendingStatus)
        retired_pages_pending = None if pending is None else int(pending) == _FEATURE_ENABLED
        remapped_rows = reader.call(nvml.nvmlDeviceGetRemappedRows)
        reader.findings.extend(
            memory_error_findings(
                ecc_corrected_volatile=ecc_corrected,
                ecc_uncorrected_volatile=ecc_uncorrected,
                retired_pages_pending=retired_pages_pending,
            )
        )
        if remapped_rows is not None:
            _corrected_rows, _uncorrected_rows, remap_pending, remap_failed = remapped_rows
            if remap_failed:
                reader.findings.append(Finding(Health.UNHEALTHY, "row remapping failed"))
            if remap_pending:
                reader.findings.append(
                    Finding(Health.DEGRADED, "row remapping pending: a GPU reset is required")
                )
        return {
            "memory_total_bytes": None if memory is None else int(memory.total),
            "memory_used_bytes": None if memory is None else int(memory.used),
            "utilization_gpu_pct": None if utilization is None else float(utilization.gpu),
            "utilization_memory_pct": None if utilization is None else float(utilization.memory),
            "temperature_c": reader.call(nvml.nvmlDeviceGetTemperature, _TEMPERATURE_GPU),
            "power_draw_w": _watts(reader.call(nvml.nvmlDeviceGetPowerUsage)),
            "power_limit_w": _watts(reader.call(nvml.nvmlDeviceGetEnforcedPowerLimit)),
            "total_energy_mj": _integer(reader.call(nvml.nvmlDeviceGetTotalEnergyConsumption)),
            "sm_clock_mhz": reader.call(nvml.nvmlDeviceGetClockInfo, _CLOCK_SM),
            "memory_clock_mhz": reader.call(nvml.nvmlDeviceGetClockInfo, _CLOCK_MEM),
            "fan_speed_pct": reader.call(nvml.nvmlDeviceGetFanSpeed),
            "ecc_errors_corrected_volatile": ecc_corrected,
            "ecc_errors_uncorrected_volatile": ecc_uncorrected,
            "retired_pages_pending": retired_pages_pending,
            "processes": self._processes(processes or []),
        }

    def _processes(self, infos: list[Any]) -> tuple[GpuProcess, ...]:
        processes = []
        for info in infos[:_MAX_PROCESSES]:
            pid = int(info.pid)
            used = getattr(info, "usedGpuMemory", None)
            processes.append(
                GpuProcess(
                    pid=pid,
                    used_memory_bytes=None if used is None else int(used),
                    name=self._process_name(pid),
                )
            )
        return tuple(processes)

    def _process_name(self, pid: int) -> str | None:
        try:
            return (self._proc_root / str(pid) / "comm").read_text(errors="replace").strip() or None
        except OSError:
            return None

    def _telemetry(
        self, gpu: _Gpu, fields: dict[str, Any], findings: list[Finding]
    ) -> GpuTelemetry:
        """Build the wire value; a field the protocol rejects is dropped with a reason."""
        findings = list(findings)
        values = {
            "index": gpu.index,
            "uuid": gpu.uuid,
            "pci_bus_id": gpu.pci_bus_id,
            "name": gpu.name,
            **fields,
        }
        for _ in range(len(values)):
            health = worst_health(findings)
            reasons = tuple(dict.fromkeys(finding.reason for finding in findings))[:_MAX_REASONS]
            try:
                return GpuTelemetry(**values, health=health, health_reasons=reasons)
            except ValidationError as error:
                bad = {str(problem["loc"][0]) for problem in error.errors() if problem["loc"]}
                bad.discard("index")
                if not bad:
                    break
                for key in sorted(bad):
                    findings.append(
                        Finding(Health.UNHEALTHY, f"{key}: out of range ({values.get(key)!r})")
                    )
                    values[key] = () if key == "processes" else None
        return GpuTelemetry(
            index=gpu.index, health=Health.UNHEALTHY, health_reasons=("readings rejected",)
        )

    # ------------------------------------------------------------------ Xid events

    def _watch_xids(self) -> Any:
        """An event set with every GPU that supports Xid critical-error events, or None."""
        nvml = self._nvml
        try:
            event_set = nvml.nvmlEventSetCreate()
        except nvml.NVMLError:
            return None
        watched = 0
        for gpu in self._gpus:
            if gpu.handle is None:
                continue
            try:
                supported = int(nvml.nvmlDeviceGetSupportedEventTypes(gpu.handle))
                if supported & _EVENT_TYPE_XID_CRITICAL:
                    nvml.nvmlDeviceRegisterEvents(gpu.handle, _EVENT_TYPE_XID_CRITICAL, event_set)
                    watched += 1
            except nvml.NVMLError:
                continue
        if watched == 0:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlEventSetFree(event_set)
            return None
        return event_set

    def _drain_xid_events(self) -> dict[int, list[int]]:
        """Xids that arrived since the last sample, by GPU index; never blocks."""
        if self._event_set is None:
            return {}
        nvml = self._nvml
        fresh: dict[int, list[int]] = {}
        for _ in range(_MAX_EVENTS_PER_SAMPLE):
            try:
                event = nvml.nvmlEventSetWait(self._event_set, 0)
            except nvml.NVMLError:
                break  # timeout: nothing pending; any other error: the GPU reads will say
            if not int(event.eventType) & _EVENT_TYPE_XID_CRITICAL:
                continue
            try:
                index = int(nvml.nvmlDeviceGetIndex(event.device))
            except nvml.NVMLError:
                continue
            xid = int(event.eventData)
            fresh.setdefault(index, []).append(xid)
            gpu = self._gpus[index] if 0 <= index < len(self._gpus) else None
            critical = xid_finding(xid).health is Health.UNHEALTHY
            if gpu is not None and critical and xid not in gpu.critical_xids:
                gpu.critical_xids.append(xid)
        return fresh
