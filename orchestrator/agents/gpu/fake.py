"""A simulated NVML: realistic, consistent GPU readings for machines without a GPU.

The demo and the tests use it; it never touches a GPU or the NVML library. Each GPU gets a
catalogue model (`orchestrator.config.gpu.FAKE_GPU_MODELS`) and a workload (`idle`,
`mine:<profile>`, `ai:<contract>`) that a simulated driver sets through `set_workload`. The
readings follow the workload the way real boards do:

- idle: idle power, base clocks (HBM stays at its one clock), no processes, only the driver's
  reserved memory used, utilisation 0.
- idle after a workload: the board settles from `idle_after_load_power_w` to idle power
  (time constant 30 s) where the model has such a step (a real H200: 126 W, then 78 W).
- mining: power settles at the model's `mining_power_fraction` of the limit (60-85 %; the
  H200's 99 % is a measured mining-style load) after a ~20 s DAG build, GPU and
  memory-controller utilisation near 100 %, a few GiB of DAG in memory, the core clock
  tuned down, one process named like a miner (`t-rex`, `lolMiner`, `miner` ...).
- AI inference: the server grabs ~90 % of memory while the model loads (vLLM's default), then
  utilisation wanders (a mean-reverting random walk around 70 %) and power follows it from
  `ai_loaded_idle_power_w` (a server holding its model with no requests) upward; one
  `python3` process (or `tritonserver` / `ollama` when the contract name says so).

Temperature relaxes toward a level set by power (time constant 30 s, so it lags a switch) and
the fan follows temperature with a zero-RPM mode below 50 C; datacenter boards have no fan
(None, as NVML's NotSupported). Boards without ECC report None for the ECC counters.

Noise is a Gaussian clipped at 2.5 `noise_fraction`s, so ranges such as "mining draws
60-85 % of the limit" hold at the default 2 %. Determinism: all randomness comes from one
`random.Random` per GPU seeded from (`seed`, node, index), and time only from the injected
`clock`, so the same seed, clock readings and calls give the same samples. UUIDs and PCI
bus ids derive from node and index alone: stable across restarts and seeds, unique within a
node, bus ids ascending with the index as NVML enumerates them.

Energy: each GPU keeps NVML's total energy counter (`total_energy_mj`, millijoules since
the driver loaded, as Volta and newer report it), integrating the noise-free power between
samples (trapezoids), so an energy delta over a time delta is the mean power the noisy
instantaneous readings scatter around.

Faults for tests, per GPU, sticky until `clear_faults`: `nvml_error` (the power query fails:
unhealthy, power None), `lost` (GPU fell off the bus: identity only), `ecc_uncorrected` /
`ecc_corrected` (one more error on the volatile counter), `xid` (an Xid error, 79 by default).
Health is judged by the same rules as the real collector (`base.py`).
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from orchestrator.agents.gpu.base import Finding, memory_error_findings, worst_health, xid_finding
from orchestrator.config.gpu import FAKE_GPU_MODELS, FakeGpuModel, FakeGpuSection
from orchestrator.domain import IDLE, Health, WorkloadKind, workload_kind
from orchestrator.protocol import GpuProcess, GpuTelemetry

FaultKind = Literal["nvml_error", "lost", "ecc_uncorrected", "ecc_corrected", "xid"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

FAKE_DRIVER_VERSION = "550.127.05"

_MIB = 1024 * 1024
_STUCK_MIB = 2048  # what a stuck process holds (`stuck_memory_dir`)
_DAG_BUILD_S = 20.0
_MODEL_LOAD_S = 20.0
_WARMUP_S = 60.0
_THERMAL_TIME_CONSTANT_S = 30.0
_AI_MEMORY_FRACTION = 0.90
_AI_POWER_FRACTION = 0.92
_AI_UTILIZATION_MEAN_PCT = 70.0
_MINING_CORE_CLOCK_FRACTION = 0.8
_ZERO_RPM_BELOW_C = 50.0
_NOISE_CLIP = 2.5  # noise is a bounded Gaussian (in units of noise_fraction), never a spike
_MINERS = ("t-rex", "lolMiner", "miner", "rigel", "nbminer")
_MINER_KEYWORDS = {"trex": "t-rex", "t-rex": "t-rex", "lolminer": "lolMiner", "gminer": "miner"}
_MINER_KEYWORDS |= {"rigel": "rigel", "nbminer": "nbminer", "xmrig": "xmrig"}
_AI_SERVERS = {"triton": "tritonserver", "ollama": "ollama"}


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("/".join(str(part) for part in parts).encode()).digest()


def fake_uuid(node: str, index: int) -> str:
    """The NVML-style UUID of fake GPU `index` on `node`."""
    return f"GPU-{uuid.UUID(bytes=_digest('uuid', node, index)[:16])}"


def fake_pci_bus_ids(node: str, count: int) -> list[str]:
    """NVML-form PCI bus ids for `count` GPUs of `node`: distinct, ascending with the index."""
    rng = random.Random(_digest("pci", node))  # noqa: S311 - simulation, not security
    buses = sorted(rng.sample(range(0x01, 0xFF), count))
    return [f"00000000:{bus:02X}:00.0" for bus in buses]


@dataclass
class _FakeGpu:
    index: int
    model: FakeGpuModel
    uuid: str
    pci_bus_id: str
    rng: random.Random
    workload: str
    since_s: float
    temperature_c: float | None = None
    last_sample_s: float | None = None
    ai_utilization_pct: float = _AI_UTILIZATION_MEAN_PCT
    loaded_before: bool = False  # the workload before idle was a load (settling power)
    energy_mj: float = 0.0
    energy_at_s: float | None = None
    true_power_w: float = 0.0  # noise-free power at `energy_at_s`
    faults: set[str] = field(default_factory=set)
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    xids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Load:
    """What a workload asks of a GPU at one moment, before noise."""

    power_w: float
    utilization_gpu_pct: float
    utilization_memory_pct: float
    memory_used_mib: float
    sm_clock_mhz: float
    memory_clock_mhz: float
    process_name: str | None


class FakeGpuBackend:
    """Simulated GPUs of one node; see the module notes for the model."""

    name = "fake"

    def __init__(
        self,
        *,
        node: str,
        gpus: int,
        models: Sequence[str],
        seed: int = 0,
        initial_workloads: Sequence[str] = (IDLE,),
        noise_fraction: float = 0.02,
        clock: Callable[[], float] = time.time,
        stuck_memory_dir: Path | None = None,
    ) -> None:
        if not models or not initial_workloads:
            raise ValueError("models and initial_workloads need at least one entry each")
        unknown = [model for model in models if model not in FAKE_GPU_MODELS]
        if unknown:
            raise ValueError(f"unknown GPU model {unknown[0]!r}; valid: {sorted(FAKE_GPU_MODELS)}")
        self._node = node
        self._stuck_memory_dir = stuck_memory_dir
        self._noise_fraction = noise_fraction
        self._clock = clock
        self._lock = threading.Lock()
        self._opened = False
        started_s = clock() - 3600.0  # initial workloads have been running for a while
        pci_bus_ids = fake_pci_bus_ids(node, gpus)
        self._gpus = [
            _FakeGpu(
                index=index,
                model=FAKE_GPU_MODELS[models[index % len(models)]],
                uuid=fake_uuid(node, index),
                pci_bus_id=pci_bus_ids[index],
                rng=random.Random(_digest("noise", seed, node, index)),  # noqa: S311 - simulation
                workload=initial_workloads[index % len(initial_workloads)],
                since_s=started_s,
                # a counter since driver load: some hours' worth of energy, per GPU
                energy_mj=float(int.from_bytes(_digest("energy", node, index)[:3], "big") * 1000),
            )
            for index in range(gpus)
        ]

    @classmethod
    def from_section(
        cls, section: FakeGpuSection, *, node: str, clock: Callable[[], float] = time.time
    ) -> FakeGpuBackend:
        return cls(
            node=node,
            gpus=section.gpus,
            models=section.models,
            seed=section.seed,
            initial_workloads=section.initial_workloads,
            noise_fraction=section.noise_fraction,
            clock=clock,
            stuck_memory_dir=section.stuck_memory_dir,
        )

    # ------------------------------------------------------------------ GpuBackend

    def open(self) -> None:
        self._opened = True

    def close(self) -> None:
        self._opened = False

    def driver_version(self) -> str | None:
        return FAKE_DRIVER_VERSION if self._opened else None

    def sample(self) -> list[GpuTelemetry]:
        with self._lock:
            if not self._opened:
                raise RuntimeError("FakeGpuBackend.sample() called before open()")
            now_s = self._clock()
            return [self._sample_gpu(gpu, now_s) for gpu in self._gpus]

    # ------------------------------------------------------------------ WorkloadSettable

    def set_workload(self, index: int, workload: str, *, since_s: float) -> None:
        with self._lock:
            gpu = self._gpu(index)
            if workload != gpu.workload:
                gpu.loaded_before = workload_kind(gpu.workload) is not WorkloadKind.IDLE
                gpu.workload = workload
                gpu.since_s = since_s
                gpu.ai_utilization_pct = _AI_UTILIZATION_MEAN_PCT

    def workload_of(self, index: int) -> str:
        with self._lock:
            return self._gpu(index).workload

    # ------------------------------------------------------------------ faults

    def inject_fault(self, index: int, kind: FaultKind, *, xid: int = 79) -> None:
        """Make GPU `index` misbehave from the next sample on (see the module notes)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; valid: {', '.join(FAULT_KINDS)}")
        with self._lock:
            gpu = self._gpu(index)
            if kind == "ecc_uncorrected":
                gpu.ecc_uncorrected += 1
            elif kind == "ecc_corrected":
                gpu.ecc_corrected += 1
            elif kind == "xid":
                gpu.xids.append(xid)
            else:
                gpu.faults.add(kind)

    def clear_faults(self, index: int) -> None:
        """Heal GPU `index` (a reset): faults, ECC counters and Xids cleared."""
        with self._lock:
            gpu = self._gpu(index)
            gpu.faults.clear()
            gpu.xids.clear()
            gpu.ecc_corrected = gpu.ecc_uncorrected = 0

    # ------------------------------------------------------------------ the model

    def _gpu(self, index: int) -> _FakeGpu:
        if not 0 <= index < len(self._gpus):
            raise IndexError(f"no fake GPU {index} on {self._node} (has {len(self._gpus)})")
        return self._gpus[index]

    def _sample_gpu(self, gpu: _FakeGpu, now_s: float) -> GpuTelemetry:
        model = gpu.model
        if "lost" in gpu.faults:
            return GpuTelemetry(
                index=gpu.index,
                uuid=gpu.uuid,
                pci_bus_id=gpu.pci_bus_id,
                name=model.nvml_name,
                health=Health.LOST,
                health_reasons=("GPU is lost (nvmlDeviceGetMemoryInfo)",),
            )
        load = self._load(gpu, now_s)
        self._integrate_energy(gpu, load.power_w, now_s)
        power_w = self._noisy(gpu, load.power_w, low=0.0, high=model.power_limit_w)
        temperature_c = self._temperature(gpu, power_w, now_s)
        memory_total_mib = model.memory_total_mib
        memory_used_mib = self._noisy(gpu, load.memory_used_mib, low=0, high=memory_total_mib)
        ecc = model.has_ecc or gpu.ecc_corrected > 0 or gpu.ecc_uncorrected > 0
        findings: list[Finding] = memory_error_findings(
            ecc_corrected_volatile=gpu.ecc_corrected,
            ecc_uncorrected_volatile=gpu.ecc_uncorrected,
            retired_pages_pending=None,
        )
        findings.extend(xid_finding(xid) for xid in gpu.xids)
        if "nvml_error" in gpu.faults:
            findings.append(Finding(Health.UNHEALTHY, "nvmlDeviceGetPowerUsage: Unknown Error"))
        processes: tuple[GpuProcess, ...] = ()
        if load.process_name is not None:
            process_mib = max(0.0, memory_used_mib - model.idle_memory_used_mib)
            processes = (
                GpuProcess(
                    pid=self._pid(gpu),
                    used_memory_bytes=int(process_mib * _MIB),
                    name=load.process_name,
                ),
            )
        if (
            self._stuck_memory_dir is not None
            and (self._stuck_memory_dir / f"gpu-{gpu.index}").exists()
        ):
            memory_used_mib = min(memory_total_mib, memory_used_mib + _STUCK_MIB)
            stuck = GpuProcess(pid=999_999, used_memory_bytes=_STUCK_MIB * _MIB, name="stuck")
            processes = (*processes, stuck)
        return GpuTelemetry(
            index=gpu.index,
            uuid=gpu.uuid,
            pci_bus_id=gpu.pci_bus_id,
            name=model.nvml_name,
            memory_total_bytes=memory_total_mib * _MIB,
            memory_used_bytes=int(memory_used_mib * _MIB),
            utilization_gpu_pct=round(self._noisy_pct(gpu, load.utilization_gpu_pct)),
            utilization_memory_pct=round(self._noisy_pct(gpu, load.utilization_memory_pct)),
            temperature_c=round(temperature_c),
            power_draw_w=None if "nvml_error" in gpu.faults else round(power_w, 2),
            power_limit_w=model.power_limit_w,
            total_energy_mj=None if "nvml_error" in gpu.faults else int(gpu.energy_mj),
            sm_clock_mhz=round(load.sm_clock_mhz),
            memory_clock_mhz=load.memory_clock_mhz,
            fan_speed_pct=self._fan(temperature_c) if model.has_fan else None,
            ecc_errors_corrected_volatile=gpu.ecc_corrected if ecc else None,
            ecc_errors_uncorrected_volatile=gpu.ecc_uncorrected if ecc else None,
            processes=processes,
            health=worst_health(findings),
            health_reasons=tuple(finding.reason for finding in findings),
        )

    def _load(self, gpu: _FakeGpu, now_s: float) -> _Load:
        model = gpu.model
        running_s = max(0.0, now_s - gpu.since_s)
        kind = workload_kind(gpu.workload)
        if kind is WorkloadKind.MINING:
            ramp = min(1.0, running_s / _DAG_BUILD_S)
            mining_w = model.mining_power_fraction * model.power_limit_w
            dag_mib = min(self._dag_mib(gpu.workload), 0.5 * model.memory_total_mib)
            return _Load(
                power_w=model.idle_power_w + (mining_w - model.idle_power_w) * ramp,
                utilization_gpu_pct=100.0 * ramp,
                utilization_memory_pct=88.0 * ramp,
                memory_used_mib=model.idle_memory_used_mib + dag_mib * ramp,
                sm_clock_mhz=model.sm_clock_boost_mhz * _MINING_CORE_CLOCK_FRACTION,
                memory_clock_mhz=model.memory_clock_max_mhz,
                process_name=self._miner_name(gpu.workload),
            )
        if kind is WorkloadKind.AI:
            loaded = min(1.0, running_s / _MODEL_LOAD_S)
            warm = 1.0 if running_s >= _WARMUP_S else 0.1
            walk = gpu.ai_utilization_pct
            walk += gpu.rng.gauss(0.0, 6.0) + 0.1 * (_AI_UTILIZATION_MEAN_PCT - walk)
            gpu.ai_utilization_pct = min(100.0, max(15.0, walk))
            utilization = gpu.ai_utilization_pct * warm
            ai_memory_mib = _AI_MEMORY_FRACTION * model.memory_total_mib
            busy_w = _AI_POWER_FRACTION * model.power_limit_w
            floor_w = model.ai_loaded_idle_power_w or model.idle_power_w
            sm_span = model.sm_clock_boost_mhz - model.sm_clock_idle_mhz
            return _Load(
                power_w=floor_w + (busy_w - floor_w) * utilization / 100.0,
                utilization_gpu_pct=utilization,
                utilization_memory_pct=0.55 * utilization,
                memory_used_mib=model.idle_memory_used_mib
                + (ai_memory_mib - model.idle_memory_used_mib) * loaded,
                sm_clock_mhz=model.sm_clock_idle_mhz + sm_span * min(1.0, utilization / 30.0),
                memory_clock_mhz=model.memory_clock_max_mhz,
                process_name=self._ai_server_name(gpu.workload),
            )
        idle_w = model.idle_power_w
        if gpu.loaded_before and model.idle_after_load_power_w is not None:
            settle = math.exp(-running_s / _THERMAL_TIME_CONSTANT_S)
            idle_w += (model.idle_after_load_power_w - idle_w) * settle
        return _Load(
            power_w=idle_w,
            utilization_gpu_pct=0.0,
            utilization_memory_pct=0.0,
            memory_used_mib=model.idle_memory_used_mib,
            sm_clock_mhz=model.sm_clock_idle_mhz,
            memory_clock_mhz=model.memory_clock_idle_mhz,
            process_name=None,
        )

    @staticmethod
    def _integrate_energy(gpu: _FakeGpu, power_w: float, now_s: float) -> None:
        """Advance the energy counter to `now_s` (trapezoid between noise-free powers)."""
        if gpu.energy_at_s is not None and now_s > gpu.energy_at_s:
            mean_w = (gpu.true_power_w + power_w) / 2.0
            gpu.energy_mj += mean_w * (now_s - gpu.energy_at_s) * 1000.0
        gpu.energy_at_s = max(now_s, gpu.energy_at_s or now_s)
        gpu.true_power_w = power_w

    def _noisy(self, gpu: _FakeGpu, value: float, *, low: float, high: float) -> float:
        deviation = max(-_NOISE_CLIP, min(_NOISE_CLIP, gpu.rng.gauss(0.0, 1.0)))
        jittered = value * (1.0 + deviation * self._noise_fraction)
        return min(high, max(low, jittered))

    def _noisy_pct(self, gpu: _FakeGpu, value: float) -> float:
        if value <= 0.0:
            return 0.0
        return self._noisy(gpu, value, low=0.0, high=100.0)

    def _temperature(self, gpu: _FakeGpu, power_w: float, now_s: float) -> float:
        model = gpu.model
        span_w = max(1.0, model.power_limit_w - model.idle_power_w)
        heat = max(0.0, (power_w - model.idle_power_w) / span_w)
        target_c = (
            model.idle_temperature_c
            + (model.full_load_temperature_c - model.idle_temperature_c) * heat
        )
        if gpu.temperature_c is None or gpu.last_sample_s is None:
            gpu.temperature_c = target_c
        else:
            elapsed_s = max(0.0, now_s - gpu.last_sample_s)
            settle = 1.0 - math.exp(-elapsed_s / _THERMAL_TIME_CONSTANT_S)
            gpu.temperature_c += (target_c - gpu.temperature_c) * settle
        gpu.last_sample_s = now_s
        return gpu.temperature_c

    @staticmethod
    def _fan(temperature_c: float) -> float:
        if temperature_c < _ZERO_RPM_BELOW_C:
            return 0.0
        return float(min(100, round(30.0 + (temperature_c - _ZERO_RPM_BELOW_C) * 2.5)))

    def _pid(self, gpu: _FakeGpu) -> int:
        seed = _digest("pid", self._node, gpu.index, gpu.workload, gpu.since_s)
        return 1000 + int.from_bytes(seed[:4], "big") % 4_000_000

    @staticmethod
    def _dag_mib(workload: str) -> float:
        return 3000.0 + int.from_bytes(_digest("dag", workload)[:2], "big") % 2048

    @staticmethod
    def _miner_name(workload: str) -> str:
        profile = workload.lower()
        for keyword, name in _MINER_KEYWORDS.items():
            if keyword in profile:
                return name
        return _MINERS[_digest("miner", workload)[0] % len(_MINERS)]

    @staticmethod
    def _ai_server_name(workload: str) -> str:
        contract = workload.lower()
        for keyword, name in _AI_SERVERS.items():
            if keyword in contract:
                return name
        return "python3"
