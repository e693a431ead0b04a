"""The real NVML collector, driven through a fake `pynvml` at the hardware boundary.

What it proves: NVML values arrive in the protocol's units; NotSupported is None and never
an error; a lost GPU and a GPU with a failing query are marked while the others are sampled;
ECC, page retirement, row remapping and Xid events become health; per-sample cost stays
small (handles cached, unsupported queries not repeated, events never waited for); and
`open()` without a driver fails with a typed error that tells the operator what to do.
"""

from __future__ import annotations

from pathlib import Path

import pynvml
import pytest

from orchestrator.agents.gpu import GpuBackend, NvmlBackend, NvmlUnavailableError
from orchestrator.domain import Health
from orchestrator.errors import PermanentError
from orchestrator.protocol import GpuProcess, GpuTelemetry
from tests.agents.gpu.fake_pynvml import (
    NO_PERMISSION,
    UNKNOWN,
    Device,
    FakeNvml,
)

GEFORCE = Device(
    uuid="GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    name="NVIDIA GeForce RTX 4090",
    bus_id=b"00000000:84:00.0",
    memory_total_bytes=24564 * 1024 * 1024,
    memory_used_bytes=2 * 1024 * 1024,
    utilization_gpu=0,
    utilization_memory=0,
    temperature_c=40,
    power_mw=26_840,
    power_limit_mw=450_000,
    sm_clock_mhz=210,
    memory_clock_mhz=405,
    fan_pct=30,
    ecc_corrected=None,
    ecc_uncorrected=None,
    retired_pages_pending=None,
    remapped_rows=None,
)


def h100(bus: int) -> Device:
    return Device(
        uuid=f"GPU-00000000-0000-0000-0000-0000000000{bus:02x}", bus_id=b"00000000:%02X:00.0" % bus
    )


def opened(nvml: FakeNvml, tmp_path: Path) -> NvmlBackend:
    backend = NvmlBackend(nvml=nvml, proc_root=tmp_path)
    backend.open()
    return backend


def test_readings_arrive_in_protocol_units(tmp_path: Path) -> None:
    """mW become W, busId bytes become NVML's text form, processes are named from /proc."""
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "comm").write_text("python3\n")
    device = h100(0x18)
    device.processes = [(4242, 19_000 * 1024 * 1024), (999_999, None)]
    nvml = FakeNvml([device, GEFORCE])
    backend = opened(nvml, tmp_path)

    first, second = backend.sample()

    assert backend.name == "nvml"
    assert backend.driver_version() == "570.124.06"
    assert first == GpuTelemetry(
        index=0,
        uuid="GPU-00000000-0000-0000-0000-000000000018",
        pci_bus_id="00000000:18:00.0",
        name="NVIDIA H100 80GB HBM3",
        memory_total_bytes=81559 * 1024 * 1024,
        memory_used_bytes=19818 * 1024 * 1024,
        utilization_gpu_pct=100,
        utilization_memory_pct=11,
        temperature_c=59,
        power_draw_w=631.95,
        power_limit_w=700.0,
        total_energy_mj=13_233_623,
        sm_clock_mhz=1980,
        memory_clock_mhz=2619,
        fan_speed_pct=None,
        ecc_errors_corrected_volatile=0,
        ecc_errors_uncorrected_volatile=0,
        retired_pages_pending=None,
        processes=(
            GpuProcess(pid=4242, used_memory_bytes=19_000 * 1024 * 1024, name="python3"),
            GpuProcess(pid=999_999, used_memory_bytes=None, name=None),
        ),
        health=Health.OK,
    )
    assert second.name == "NVIDIA GeForce RTX 4090"
    assert second.pci_bus_id == "00000000:84:00.0"
    assert second.power_draw_w == pytest.approx(26.84)
    assert second.power_limit_w == 450.0
    assert second.fan_speed_pct == 30
    assert second.ecc_errors_corrected_volatile is None
    assert second.health is Health.OK
    assert second.health_reasons == ()


def test_not_supported_fields_are_none_not_errors(tmp_path: Path) -> None:
    """A datacenter board without a fan, a GeForce without ECC and a board without an
    energy counter are all healthy."""
    old = h100(2)
    old.energy_mj = None
    backend = opened(FakeNvml([h100(1), GEFORCE, old]), tmp_path)
    datacenter, geforce, no_counter = backend.sample()
    assert no_counter.total_energy_mj is None
    assert no_counter.power_draw_w == pytest.approx(631.95)
    assert no_counter.health is Health.OK
    assert datacenter.fan_speed_pct is None
    assert geforce.ecc_errors_uncorrected_volatile is None
    assert geforce.retired_pages_pending is None
    assert [datacenter.health, geforce.health] == [Health.OK, Health.OK]
    assert datacenter.total_energy_mj == 13_233_623


def test_lost_gpu_and_failing_gpu_are_marked_and_the_others_sampled(tmp_path: Path) -> None:
    """GpuIsLost makes one GPU `lost`, an unknown error another `unhealthy`; GPU 0 is fine."""
    nvml = FakeNvml([h100(1), h100(2), h100(3)])
    backend = opened(nvml, tmp_path)
    nvml.lost.add(1)
    nvml.faults[(2, "nvmlDeviceGetPowerUsage")] = UNKNOWN

    healthy, lost, failing = backend.sample()

    assert healthy.health is Health.OK
    assert healthy.power_draw_w == pytest.approx(631.95)

    assert lost.health is Health.LOST
    assert lost.health_reasons == ("GPU is lost (nvmlDeviceGetMemoryInfo)",)
    assert lost.uuid == "GPU-00000000-0000-0000-0000-000000000002"  # identity cached at open
    assert lost.power_draw_w is None
    assert lost.memory_used_bytes is None

    assert failing.health is Health.UNHEALTHY
    assert failing.health_reasons == ("nvmlDeviceGetPowerUsage: Unknown Error",)
    assert failing.power_draw_w is None
    assert failing.temperature_c == 59  # the rest of that GPU is still read
    assert failing.memory_used_bytes == 19818 * 1024 * 1024


def test_gpu_lost_before_open_is_reported_lost_every_sample(tmp_path: Path) -> None:
    nvml = FakeNvml([h100(1), h100(2)])
    nvml.lost.add(0)
    backend = opened(nvml, tmp_path)
    for _ in range(2):
        lost, fine = backend.sample()
        assert lost.health is Health.LOST
        assert lost.uuid is None
        assert fine.health is Health.OK


def test_handle_that_cannot_be_had_marks_only_that_gpu(tmp_path: Path) -> None:
    nvml = FakeNvml([h100(1), h100(2)])
    nvml.faults[(1, "nvmlDeviceGetHandleByIndex")] = NO_PERMISSION
    backend = opened(nvml, tmp_path)
    fine, refused = backend.sample()
    assert fine.health is Health.OK
    assert refused.health is Health.UNHEALTHY
    assert refused.health_reasons == ("nvmlDeviceGetHandleByIndex: Insufficient Permissions",)
    del nvml.faults[(1, "nvmlDeviceGetHandleByIndex")]
    assert backend.sample()[1].health is Health.OK  # retried, and it recovers


def test_per_sample_cost_handles_cached_and_unsupported_queries_not_repeated(
    tmp_path: Path,
) -> None:
    nvml = FakeNvml([h100(1), h100(2)])
    backend = opened(nvml, tmp_path)
    for _ in range(5):
        backend.sample()
    assert nvml.calls["nvmlDeviceGetHandleByIndex"] == 2
    assert nvml.calls["nvmlDeviceGetUUID"] == 2
    assert nvml.calls["nvmlDeviceGetFanSpeed"] == 2  # NotSupported once per GPU, then skipped
    assert nvml.calls["nvmlDeviceGetRetiredPagesPendingStatus"] == 2
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == 10
    assert nvml.calls["nvmlDeviceGetTotalEnergyConsumption"] == 10
    assert nvml.calls["nvmlEventSetWait"] == 5  # one non-blocking poll per sample


def test_memory_error_counters_become_health(tmp_path: Path) -> None:
    corrected, uncorrected, pending, remap_pending, remap_failed = (
        h100(bus) for bus in range(1, 6)
    )
    corrected.ecc_corrected = 3
    uncorrected.ecc_uncorrected = 1
    pending.retired_pages_pending = pynvml.NVML_FEATURE_ENABLED
    remap_pending.remapped_rows = (2, 0, 1, 0)
    remap_failed.remapped_rows = (0, 8, 0, 1)
    backend = opened(
        FakeNvml([corrected, uncorrected, pending, remap_pending, remap_failed]), tmp_path
    )

    sampled = backend.sample()

    assert [gpu.health for gpu in sampled] == [
        Health.DEGRADED,
        Health.UNHEALTHY,
        Health.DEGRADED,
        Health.DEGRADED,
        Health.UNHEALTHY,
    ]
    assert sampled[0].health_reasons == ("corrected ECC errors since driver load: 3",)
    assert sampled[1].ecc_errors_uncorrected_volatile == 1
    assert sampled[1].health_reasons == ("uncorrected ECC errors since driver load: 1",)
    assert sampled[2].retired_pages_pending is True
    assert sampled[3].health_reasons == ("row remapping pending: a GPU reset is required",)
    assert sampled[4].health_reasons == ("row remapping failed",)


def test_xid_events_critical_ones_stick_application_ones_pass(tmp_path: Path) -> None:
    nvml = FakeNvml([h100(1), h100(2), h100(3)])
    backend = opened(nvml, tmp_path)
    assert nvml.calls["nvmlDeviceRegisterEvents"] == 3
    nvml.pending_events = [(0, 13), (1, 79)]

    first = backend.sample()
    assert [gpu.health for gpu in first] == [Health.DEGRADED, Health.UNHEALTHY, Health.OK]
    assert first[0].health_reasons == ("Xid 13 (application error)",)
    assert first[1].health_reasons == ("Xid 79 (critical error since the agent started)",)

    second = backend.sample()
    assert [gpu.health for gpu in second] == [Health.OK, Health.UNHEALTHY, Health.OK]


def test_xid_watching_is_skipped_where_unsupported(tmp_path: Path) -> None:
    device = h100(1)
    device.supported_events = 0
    nvml = FakeNvml([device])
    backend = opened(nvml, tmp_path)
    backend.sample()
    assert nvml.calls["nvmlDeviceRegisterEvents"] == 0
    assert nvml.calls["nvmlEventSetWait"] == 0
    assert nvml.calls["nvmlEventSetFree"] == 1


def test_out_of_range_reading_is_dropped_not_the_snapshot(tmp_path: Path) -> None:
    device = h100(1)
    device.temperature_c = 4_294_967_295  # a driver glitch
    backend = opened(FakeNvml([device]), tmp_path)
    (gpu,) = backend.sample()
    assert gpu.temperature_c is None
    assert gpu.power_draw_w == pytest.approx(631.95)
    assert gpu.health is Health.UNHEALTHY
    assert gpu.health_reasons == ("temperature_c: out of range (4294967295)",)


def test_lifecycle_open_is_idempotent_close_shuts_down(tmp_path: Path) -> None:
    nvml = FakeNvml([h100(1)])
    backend = NvmlBackend(nvml=nvml, proc_root=tmp_path)
    assert isinstance(backend, GpuBackend)
    with pytest.raises(RuntimeError, match="before open"):
        backend.sample()
    backend.open()
    backend.open()
    assert nvml.initialised == 1
    backend.close()
    backend.close()
    assert nvml.initialised == 0
    assert nvml.calls["nvmlEventSetFree"] == 1
    with pytest.raises(RuntimeError):
        backend.sample()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "NVML Shared Library Not Found"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "Driver Not Loaded"),
    ],
)
def test_open_without_driver_is_a_typed_error_with_the_way_out(
    tmp_path: Path, code: int, message: str
) -> None:
    backend = NvmlBackend(nvml=FakeNvml([], init_error=code), proc_root=tmp_path)
    with pytest.raises(NvmlUnavailableError) as raised:
        backend.open()
    assert isinstance(raised.value, PermanentError)
    assert raised.value.nvml_error_code == code
    text = str(raised.value)
    assert message in text
    assert "Install the NVIDIA driver" in text
    assert 'gpu.backend = "fake"' in text


def _real_nvml_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_real_nvml_works(), reason="this machine has a working NVIDIA driver")
def test_real_pynvml_on_a_machine_without_gpu_gives_the_typed_error() -> None:
    backend = NvmlBackend()
    with pytest.raises(NvmlUnavailableError, match="NVMLError_LibraryNotFound") as raised:
        backend.open()
    assert raised.value.nvml_error_code == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    backend.close()  # harmless after a failed open
