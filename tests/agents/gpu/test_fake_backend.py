"""The fake NVML backend: realistic, consistent, deterministic, and breakable on purpose.

What it proves: readings stay physically consistent for every catalogue model and workload
(power within the limit, memory used within total, utilisation a percentage); power, memory
and processes depend on the workload the way real boards do; temperature follows power with
a lag; identities are stable and unique; the same seed and clock give the same samples; a
fault injected into one GPU leaves the others healthy; and a whole node fits the protocol.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.agents.gpu import FAULT_KINDS, FakeGpuBackend, GpuBackend, WorkloadSettable
from orchestrator.config.gpu import FAKE_GPU_MODELS
from orchestrator.domain import Health
from orchestrator.protocol import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    NodeTelemetry,
    decode_telemetry,
    encode,
)
from tests.fakes import START_S, Clock

GIB = 1024**3


def backend(
    *,
    models: list[str],
    gpus: int = 1,
    workloads: list[str] | None = None,
    seed: int = 0,
    node: str = "rig-01",
    clock: Clock | None = None,
    noise_fraction: float = 0.02,
) -> FakeGpuBackend:
    fake = FakeGpuBackend(
        node=node,
        gpus=gpus,
        models=models,
        seed=seed,
        initial_workloads=workloads or ["idle"],
        noise_fraction=noise_fraction,
        clock=clock or Clock(),
    )
    fake.open()
    return fake


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(sorted(FAKE_GPU_MODELS)),
    workload=st.sampled_from(
        ["idle", "mine:kawpow", "mine:etchash-trex", "ai:acme", "ai:triton-x"]
    ),
    seed=st.integers(min_value=0, max_value=2**32),
    running_s=st.floats(min_value=0.0, max_value=600.0),
    noise=st.floats(min_value=0.0, max_value=0.5),
)
def test_readings_are_physically_consistent(
    model: str, workload: str, seed: int, running_s: float, noise: float
) -> None:
    clock = Clock()
    fake = backend(models=[model], seed=seed, clock=clock, noise_fraction=noise)
    fake.set_workload(0, workload, since_s=clock.now_s)
    clock.advance(running_s)
    for _ in range(3):
        (gpu,) = fake.sample()
        spec = FAKE_GPU_MODELS[model]
        assert gpu.name == spec.nvml_name
        assert gpu.power_limit_w == spec.power_limit_w
        assert gpu.power_draw_w is not None
        assert 0 <= gpu.power_draw_w <= spec.power_limit_w
        assert gpu.memory_total_bytes == spec.memory_total_mib * 1024 * 1024
        assert gpu.memory_used_bytes is not None
        assert 0 <= gpu.memory_used_bytes <= gpu.memory_total_bytes
        assert sum(p.used_memory_bytes or 0 for p in gpu.processes) <= gpu.memory_used_bytes
        assert gpu.utilization_gpu_pct is not None
        assert 0 <= gpu.utilization_gpu_pct <= 100
        assert gpu.temperature_c is not None
        assert spec.idle_temperature_c - 1 <= gpu.temperature_c <= spec.full_load_temperature_c + 1
        assert (gpu.fan_speed_pct is None) is not spec.has_fan
        assert gpu.health is Health.OK
        clock.advance(1.0)


def steady(fake: FakeGpuBackend, clock: Clock, workload: str) -> list[float]:
    """Power draws over 20 samples, a few minutes after switching to `workload`."""
    fake.set_workload(0, workload, since_s=clock.now_s)
    clock.advance(300)
    powers = []
    for _ in range(20):
        (gpu,) = fake.sample()
        assert gpu.power_draw_w is not None
        powers.append(gpu.power_draw_w)
        clock.advance(1)
    return powers


@pytest.mark.parametrize("model", sorted(FAKE_GPU_MODELS))
def test_power_depends_on_the_workload(model: str) -> None:
    """Idle ≈ idle power; mining at the model's share of the limit (60-85 %, the H200's
    measured 99 %); AI between the two and below the limit."""
    spec = FAKE_GPU_MODELS[model]
    clock = Clock()
    fake = backend(models=[model], clock=clock)
    idle = steady(fake, clock, "idle")
    mining = steady(fake, clock, "mine:kawpow")
    ai = steady(fake, clock, "ai:acme")
    assert all(abs(p - spec.idle_power_w) <= 0.1 * spec.idle_power_w for p in idle)
    mining_w = spec.mining_power_fraction * spec.power_limit_w
    assert all(abs(p - mining_w) <= 0.06 * mining_w and p <= spec.power_limit_w for p in mining)
    assert 0.6 <= spec.mining_power_fraction <= 0.85 or model == "h200"
    assert all(spec.idle_power_w < p <= spec.power_limit_w for p in ai)
    assert max(idle) < min(mining)


def test_workloads_look_like_what_runs() -> None:
    clock = Clock()
    fake = backend(
        models=["rtx-3090"], gpus=3, workloads=["idle", "mine:kawpow-trex", "ai:acme"], clock=clock
    )
    idle, mining, ai = fake.sample()
    total = 24 * GIB

    assert idle.processes == ()
    assert idle.utilization_gpu_pct == 0
    assert idle.sm_clock_mhz == 210
    assert idle.memory_clock_mhz == 405
    assert idle.memory_used_bytes is not None
    assert idle.memory_used_bytes < 1 * GIB

    assert mining.utilization_gpu_pct is not None
    assert mining.utilization_gpu_pct >= 95
    assert mining.memory_used_bytes is not None
    assert 2 * GIB < mining.memory_used_bytes < 0.5 * total
    assert [p.name for p in mining.processes] == ["t-rex"]
    assert mining.memory_clock_mhz == 9751

    assert ai.memory_used_bytes is not None
    assert ai.memory_used_bytes > 0.85 * total
    assert [p.name for p in ai.processes] == ["python3"]
    assert ai.sm_clock_mhz is not None
    assert ai.sm_clock_mhz > 1000


def test_ai_utilisation_varies_and_model_load_comes_first() -> None:
    clock = Clock()
    fake = backend(models=["h100-sxm5-80gb"], clock=clock)
    fake.set_workload(0, "ai:acme", since_s=clock.now_s)
    clock.advance(25)
    (loading,) = fake.sample()
    assert loading.memory_used_bytes is not None
    assert loading.memory_used_bytes > 0.85 * 81559 * 1024 * 1024  # memory is taken at load
    assert loading.utilization_gpu_pct is not None
    assert loading.utilization_gpu_pct < 15
    clock.advance(60)
    utilisations = set()
    for _ in range(30):
        (gpu,) = fake.sample()
        utilisations.add(gpu.utilization_gpu_pct)
        clock.advance(1)
    assert len(utilisations) > 5
    assert min(u for u in utilisations if u is not None) >= 15


def test_mining_ramps_up_during_dag_build() -> None:
    clock = Clock()
    fake = backend(models=["rtx-4090"], clock=clock, noise_fraction=0.0)
    fake.set_workload(0, "mine:kawpow", since_s=clock.now_s)
    clock.advance(2)
    (early,) = fake.sample()
    clock.advance(60)
    (settled,) = fake.sample()
    assert early.power_draw_w is not None
    assert settled.power_draw_w is not None
    assert early.power_draw_w < 0.3 * 450 < 0.6 * 450 <= settled.power_draw_w


def test_temperature_follows_power_with_a_lag_and_the_fan_follows_temperature() -> None:
    clock = Clock()
    fake = backend(models=["rtx-3090", "a100-sxm4-80gb"], gpus=2, clock=clock, noise_fraction=0.0)
    cold_3090, cold_a100 = fake.sample()
    fake.set_workload(0, "mine:kawpow", since_s=clock.now_s)
    fake.set_workload(1, "mine:kawpow", since_s=clock.now_s)
    clock.advance(25)
    warming, _ = fake.sample()
    clock.advance(600)
    hot_3090, hot_a100 = fake.sample()
    assert cold_3090.temperature_c is not None
    assert warming.temperature_c is not None
    assert hot_3090.temperature_c is not None
    assert cold_3090.temperature_c < warming.temperature_c < hot_3090.temperature_c
    assert cold_3090.fan_speed_pct == 0  # zero-RPM mode while cool
    assert hot_3090.fan_speed_pct is not None
    assert hot_3090.fan_speed_pct > 30
    assert cold_a100.fan_speed_pct is None
    assert hot_a100.fan_speed_pct is None
    assert hot_a100.temperature_c is not None
    assert cold_a100.temperature_c is not None
    assert hot_a100.temperature_c > cold_a100.temperature_c


def run_script(seed: int) -> list[list[object]]:
    clock = Clock()
    fake = backend(
        models=["rtx-3060", "l40s"], gpus=4, workloads=["ai:a", "mine:b"], seed=seed, clock=clock
    )
    samples: list[list[object]] = []
    for step in range(10):
        if step == 4:
            fake.set_workload(2, "idle", since_s=clock.now_s)
        samples.append([gpu.model_dump() for gpu in fake.sample()])
        clock.advance(1)
    return samples


def test_same_seed_same_samples_other_seed_other_noise() -> None:
    assert run_script(7) == run_script(7)
    assert run_script(7) != run_script(8)


def test_identities_stable_unique_and_nvml_shaped() -> None:
    a = backend(models=["h100-sxm5-80gb"], gpus=8, seed=1).sample()
    b = backend(models=["h100-sxm5-80gb"], gpus=8, seed=2).sample()
    other_node = backend(models=["h100-sxm5-80gb"], gpus=8, node="rig-02").sample()
    uuids = [gpu.uuid for gpu in a]
    buses = [gpu.pci_bus_id or "" for gpu in a]
    assert uuids == [gpu.uuid for gpu in b]  # the seed changes noise, not identity
    assert buses == [gpu.pci_bus_id or "" for gpu in b]
    assert len(set(uuids)) == 8
    assert len(set(buses)) == 8
    assert buses == sorted(buses)  # NVML enumerates in PCI order
    assert not set(uuids) & {gpu.uuid for gpu in other_node}
    for uuid, bus in zip(uuids, buses, strict=True):
        assert uuid is not None
        assert re.fullmatch(r"GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", uuid)
        assert re.fullmatch(r"00000000:[0-9A-F]{2}:00\.0", bus)


def test_models_and_workloads_are_cycled_over_indexes() -> None:
    fake = backend(models=["rtx-3090", "rtx-4090"], gpus=5, workloads=["idle", "mine:x", "ai:y"])
    names = [gpu.name for gpu in fake.sample()]
    assert names == ["NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090"] * 2 + [
        "NVIDIA GeForce RTX 3090"
    ]
    assert [fake.workload_of(i) for i in range(5)] == ["idle", "mine:x", "ai:y", "idle", "mine:x"]


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_fault_on_one_gpu_leaves_the_others_healthy(kind: str) -> None:
    fake = backend(models=["a100-sxm4-80gb"], gpus=4, workloads=["mine:x"])
    fake.inject_fault(2, kind)  # type: ignore[arg-type]
    sampled = fake.sample()
    assert [gpu.health for i, gpu in enumerate(sampled) if i != 2] == [Health.OK] * 3
    broken = sampled[2]
    expected = {
        "nvml_error": Health.UNHEALTHY,
        "lost": Health.LOST,
        "ecc_uncorrected": Health.UNHEALTHY,
        "ecc_corrected": Health.DEGRADED,
        "xid": Health.UNHEALTHY,
    }[kind]
    assert broken.health is expected
    assert broken.health_reasons
    fake.clear_faults(2)
    assert fake.sample()[2].health is Health.OK


def test_fault_details() -> None:
    fake = backend(models=["rtx-3090"], gpus=4, workloads=["mine:x"])
    fake.inject_fault(0, "lost")
    fake.inject_fault(1, "nvml_error")
    fake.inject_fault(2, "ecc_uncorrected")
    fake.inject_fault(3, "xid", xid=13)
    lost, erroring, ecc, app_xid = fake.sample()
    assert lost.uuid is not None
    assert lost.power_draw_w is None
    assert lost.processes == ()
    assert erroring.power_draw_w is None
    assert erroring.temperature_c is not None
    assert erroring.health_reasons == ("nvmlDeviceGetPowerUsage: Unknown Error",)
    assert ecc.ecc_errors_uncorrected_volatile == 1  # reported even on a board without ECC
    assert app_xid.health is Health.DEGRADED
    with pytest.raises(ValueError, match="unknown fault"):
        fake.inject_fault(0, "melted")  # type: ignore[arg-type]
    with pytest.raises(IndexError):
        fake.inject_fault(4, "lost")


def test_backend_protocols_and_lifecycle() -> None:
    fake = FakeGpuBackend(node="rig-01", gpus=2, models=["l40s"], clock=Clock())
    assert isinstance(fake, GpuBackend)
    assert isinstance(fake, WorkloadSettable)
    assert fake.name == "fake"
    assert fake.driver_version() is None
    with pytest.raises(RuntimeError, match="before open"):
        fake.sample()
    fake.open()
    assert fake.driver_version() is not None
    fake.set_workload(1, "ai:acme", since_s=START_S)
    assert fake.workload_of(1) == "ai:acme"
    fake.close()
    with pytest.raises(RuntimeError):
        fake.sample()


def test_a_full_node_fits_the_wire_protocol() -> None:
    """64 busy GPUs encode, stay under the payload limit and decode back unchanged."""
    fake = backend(models=sorted(FAKE_GPU_MODELS), gpus=64, workloads=["mine:x", "ai:y", "idle"])
    snapshot = NodeTelemetry(
        node="rig-01",
        seq=1,
        sent_at_s=START_S,
        agent_version="0.1.0",
        nvml_backend=fake.name,
        driver_version=fake.driver_version(),
        gpus=tuple(fake.sample()),
    )
    payload = encode(snapshot)
    assert len(payload) < DEFAULT_MAX_PAYLOAD_BYTES
    assert decode_telemetry(payload, topic_node="rig-01") == snapshot


def test_the_fake_h200_reads_what_a_real_h200_read() -> None:
    """Idle 78-126 W (126 right after a load), a server holding its model with no requests
    122 W, a mining-style load 690 W: the readings measured on a real H200 with the agent."""
    clock = Clock()
    fake = backend(models=["h200"], clock=clock, noise_fraction=0.0)
    (idle,) = fake.sample()
    assert idle.name == "NVIDIA H200"
    assert idle.power_draw_w == pytest.approx(78.0)
    fake.set_workload(0, "mine:kawpow", since_s=clock.now_s)
    clock.advance(120)
    (mining,) = fake.sample()
    assert mining.power_draw_w == pytest.approx(690.0)
    fake.set_workload(0, "idle", since_s=clock.now_s)
    (after,) = fake.sample()
    assert after.power_draw_w == pytest.approx(126.0)
    clock.advance(600)
    (settled,) = fake.sample()
    assert settled.power_draw_w == pytest.approx(78.0, abs=0.5)
    fake.set_workload(0, "ai:acme", since_s=clock.now_s)
    clock.advance(30)  # loaded, not warm: a tenth of the utilisation
    (loaded,) = fake.sample()
    assert loaded.utilization_gpu_pct is not None
    floor_w = 122.0 + (0.92 * 700 - 122.0) * loaded.utilization_gpu_pct / 100
    assert loaded.power_draw_w == pytest.approx(floor_w, abs=0.01 * 700)


def test_the_energy_counter_agrees_with_the_power() -> None:
    """Energy delta over time delta is the mean power the noisy readings scatter around."""
    clock = Clock()
    fake = backend(models=["h200"], clock=clock, noise_fraction=0.05)
    fake.set_workload(0, "mine:kawpow", since_s=clock.now_s - 3600)
    (first,) = fake.sample()
    readings = []
    for _ in range(60):
        clock.advance(1.0)
        (gpu,) = fake.sample()
        assert gpu.power_draw_w is not None
        readings.append(gpu.power_draw_w)
    assert first.total_energy_mj is not None
    assert gpu.total_energy_mj is not None
    mean_w = (gpu.total_energy_mj - first.total_energy_mj) / 1000.0 / 60.0
    assert mean_w == pytest.approx(690.0, abs=0.1)
    assert sum(readings) / len(readings) == pytest.approx(mean_w, rel=0.03)
