"""A stand-in for the `pynvml` module, for testing the NVML collector without a GPU.

It offers the functions the collector calls, with the real signatures, and raises pynvml's
own exception classes (importing pynvml needs no GPU), so the collector meets exactly what
the real binding would give it. Values are set per device; faults are NVML error codes per
(device index, function name); `lost` devices fail every per-device call with GpuIsLost.
"""

# ruff: noqa: N802 - the methods carry pynvml's own function names, which the collector calls

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
GPU_IS_LOST = pynvml.NVML_ERROR_GPU_IS_LOST
UNKNOWN = pynvml.NVML_ERROR_UNKNOWN
NO_PERMISSION = pynvml.NVML_ERROR_NO_PERMISSION
TIMEOUT = pynvml.NVML_ERROR_TIMEOUT
XID_CRITICAL = pynvml.nvmlEventTypeXidCriticalError


@dataclass
class Device:
    """One simulated board; defaults look like an H100 SXM running a job."""

    uuid: str = "GPU-11111111-2222-3333-4444-555555555555"
    name: str = "NVIDIA H100 80GB HBM3"
    bus_id: bytes = b"00000000:18:00.0"
    memory_total_bytes: int = 81559 * 1024 * 1024
    memory_used_bytes: int = 19818 * 1024 * 1024
    utilization_gpu: int = 100
    utilization_memory: int = 11
    temperature_c: int = 59
    power_mw: int = 631_950
    power_limit_mw: int = 700_000
    energy_mj: int | None = 13_233_623  # None: NotSupported (boards before Volta)
    sm_clock_mhz: int = 1980
    memory_clock_mhz: int = 2619
    fan_pct: int | None = None  # None: NotSupported, as on datacenter boards
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    ecc_corrected: int | None = 0
    ecc_uncorrected: int | None = 0
    retired_pages_pending: int | None = None  # None: NotSupported (row remapping instead)
    remapped_rows: tuple[int, int, int, int] | None = (0, 0, 0, 0)
    supported_events: int = XID_CRITICAL


@dataclass(frozen=True)
class Handle:
    index: int


class FakeNvml:
    """The module-shaped fake; pass it as `NvmlBackend(nvml=...)`."""

    NVMLError = pynvml.NVMLError
    NVMLLibraryMismatchError = pynvml.NVMLLibraryMismatchError

    def __init__(
        self,
        devices: list[Device],
        *,
        init_error: int | None = None,
        driver_version: str = "570.124.06",
    ) -> None:
        self.devices = devices
        self.init_error = init_error
        self.driver = driver_version
        self.faults: dict[tuple[int, str], int] = {}
        self.lost: set[int] = set()
        self.pending_events: list[tuple[int, int]] = []  # (index, xid)
        self.calls: Counter[str] = Counter()
        self.initialised = 0

    # -- helpers
    def _enter(self, name: str, handle: Handle | None = None) -> None:
        self.calls[name] += 1
        if handle is None:
            return
        if handle.index in self.lost:
            raise pynvml.NVMLError(GPU_IS_LOST)
        code = self.faults.get((handle.index, name))
        if code is not None:
            raise pynvml.NVMLError(code)

    def _device(self, handle: Handle) -> Device:
        return self.devices[handle.index]

    # -- library
    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle:
        self._enter("nvmlDeviceGetHandleByIndex", Handle(index))
        return Handle(index)

    def nvmlDeviceGetIndex(self, handle: Handle) -> int:
        self._enter("nvmlDeviceGetIndex", handle)
        return handle.index

    # -- identity
    def nvmlDeviceGetUUID(self, handle: Handle) -> str:
        self._enter("nvmlDeviceGetUUID", handle)
        return self._device(handle).uuid

    def nvmlDeviceGetName(self, handle: Handle) -> str:
        self._enter("nvmlDeviceGetName", handle)
        return self._device(handle).name

    def nvmlDeviceGetPciInfo(self, handle: Handle) -> Any:
        self._enter("nvmlDeviceGetPciInfo", handle)
        bus_id = self._device(handle).bus_id
        return SimpleNamespace(busId=bus_id, busIdLegacy=bus_id[4:])

    # -- readings
    def nvmlDeviceGetMemoryInfo(self, handle: Handle) -> Any:
        self._enter("nvmlDeviceGetMemoryInfo", handle)
        device = self._device(handle)
        free = device.memory_total_bytes - device.memory_used_bytes
        return SimpleNamespace(
            total=device.memory_total_bytes, used=device.memory_used_bytes, free=free
        )

    def nvmlDeviceGetUtilizationRates(self, handle: Handle) -> Any:
        self._enter("nvmlDeviceGetUtilizationRates", handle)
        device = self._device(handle)
        return SimpleNamespace(gpu=device.utilization_gpu, memory=device.utilization_memory)

    def nvmlDeviceGetTemperature(self, handle: Handle, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature", handle)
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._device(handle).temperature_c

    def nvmlDeviceGetPowerUsage(self, handle: Handle) -> int:
        self._enter("nvmlDeviceGetPowerUsage", handle)
        return self._device(handle).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Handle) -> int:
        self._enter("nvmlDeviceGetTotalEnergyConsumption", handle)
        energy = self._device(handle).energy_mj
        if energy is None:
            raise pynvml.NVMLError(NOT_SUPPORTED)
        return energy

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Handle) -> int:
        self._enter("nvmlDeviceGetEnforcedPowerLimit", handle)
        return self._device(handle).power_limit_mw

    def nvmlDeviceGetClockInfo(self, handle: Handle, clock_type: int) -> int:
        self._enter("nvmlDeviceGetClockInfo", handle)
        device = self._device(handle)
        if clock_type == pynvml.NVML_CLOCK_SM:
            return device.sm_clock_mhz
        assert clock_type == pynvml.NVML_CLOCK_MEM
        return device.memory_clock_mhz

    def nvmlDeviceGetFanSpeed(self, handle: Handle) -> int:
        self._enter("nvmlDeviceGetFanSpeed", handle)
        fan = self._device(handle).fan_pct
        if fan is None:
            raise pynvml.NVMLError(NOT_SUPPORTED)
        return fan

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Handle) -> list[Any]:
        self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        return [
            SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF)
            for pid, used in self._device(handle).processes
        ]

    def nvmlDeviceGetTotalEccErrors(self, handle: Handle, error_type: int, counter: int) -> int:
        self._enter("nvmlDeviceGetTotalEccErrors", handle)
        assert counter == pynvml.NVML_VOLATILE_ECC
        device = self._device(handle)
        value = (
            device.ecc_corrected
            if error_type == pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED
            else device.ecc_uncorrected
        )
        if value is None:
            raise pynvml.NVMLError(NOT_SUPPORTED)
        return value

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: Handle) -> int:
        self._enter("nvmlDeviceGetRetiredPagesPendingStatus", handle)
        pending = self._device(handle).retired_pages_pending
        if pending is None:
            raise pynvml.NVMLError(NOT_SUPPORTED)
        return pending

    def nvmlDeviceGetRemappedRows(self, handle: Handle) -> tuple[int, int, int, int]:
        self._enter("nvmlDeviceGetRemappedRows", handle)
        rows = self._device(handle).remapped_rows
        if rows is None:
            raise pynvml.NVMLError(NOT_SUPPORTED)
        return rows

    # -- events
    def nvmlEventSetCreate(self) -> str:
        self._enter("nvmlEventSetCreate")
        return "event-set"

    def nvmlEventSetFree(self, _event_set: str) -> None:
        self._enter("nvmlEventSetFree")

    def nvmlDeviceGetSupportedEventTypes(self, handle: Handle) -> int:
        self._enter("nvmlDeviceGetSupportedEventTypes", handle)
        return self._device(handle).supported_events

    def nvmlDeviceRegisterEvents(self, handle: Handle, event_types: int, _event_set: str) -> None:
        self._enter("nvmlDeviceRegisterEvents", handle)
        assert event_types == XID_CRITICAL

    def nvmlEventSetWait(self, _event_set: str, timeout_ms: int) -> Any:
        self._enter("nvmlEventSetWait")
        assert timeout_ms == 0, "the collector must never block on events"
        if not self.pending_events:
            raise pynvml.NVMLError(TIMEOUT)
        index, xid = self.pending_events.pop(0)
        return SimpleNamespace(device=Handle(index), eventType=XID_CRITICAL, eventData=xid)
