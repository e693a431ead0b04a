"""The `[gpu]` section of an agent config, and the catalogue of GPU models the fake knows.

`backend = "nvml"` (the default) reads the node's real GPUs through NVML; `backend = "fake"`
simulates `[gpu.fake]`: `gpus` GPUs whose models are `models` cycled over the indexes, running
`initial_workloads` (also cycled) until a simulated driver changes them.

Why the catalogue lives here and not beside the fake backend: the config must reject an
unknown model name when the file is checked (`orchestrator config check`), and the import
contract forbids `orchestrator.config` from importing `orchestrator.agents`. The catalogue is
pure data (public spec-sheet facts and the values `nvidia-smi` shows for these boards), so it
sits at the lower layer and the fake backend reads it from here.

Units are in the field names: `memory_total_mib` is what NVML reports as total memory (a little
less than the marketing size on some boards), clocks are MHz as NVML's `nvmlDeviceGetClockInfo`
gives them (GDDR memory clocks are the "effective" values nvidia-smi prints), powers are W.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pydantic import Field, field_validator

from orchestrator.config._base import Section
from orchestrator.domain import IDLE, WorkloadKind, workload_kind


@dataclass(frozen=True, slots=True)
class FakeGpuModel:
    """One GPU model as the fake backend simulates it."""

    nvml_name: str
    memory_total_mib: int
    power_limit_w: float
    idle_power_w: float
    mining_power_fraction: float  # share of the power limit a tuned miner draws
    sm_clock_idle_mhz: float
    sm_clock_boost_mhz: float
    memory_clock_idle_mhz: float
    memory_clock_max_mhz: float
    idle_memory_used_mib: int  # driver contexts and reserved memory with nothing running
    idle_temperature_c: float
    full_load_temperature_c: float
    has_fan: bool
    has_ecc: bool
    # an inference server holding its model with no requests (None: the idle power)
    ai_loaded_idle_power_w: float | None = None
    # idle right after a workload stopped, settling to `idle_power_w` (None: no such step)
    idle_after_load_power_w: float | None = None


FAKE_GPU_MODELS: Mapping[str, FakeGpuModel] = MappingProxyType(
    {
        "rtx-3060": FakeGpuModel(
            nvml_name="NVIDIA GeForce RTX 3060",
            memory_total_mib=12288,
            power_limit_w=170.0,
            idle_power_w=13.0,
            mining_power_fraction=0.70,
            sm_clock_idle_mhz=210.0,
            sm_clock_boost_mhz=1882.0,
            memory_clock_idle_mhz=405.0,
            memory_clock_max_mhz=7501.0,
            idle_memory_used_mib=250,
            idle_temperature_c=38.0,
            full_load_temperature_c=72.0,
            has_fan=True,
            has_ecc=False,
        ),
        "rtx-3090": FakeGpuModel(
            nvml_name="NVIDIA GeForce RTX 3090",
            memory_total_mib=24576,
            power_limit_w=350.0,
            idle_power_w=22.0,
            mining_power_fraction=0.80,
            sm_clock_idle_mhz=210.0,
            sm_clock_boost_mhz=1860.0,
            memory_clock_idle_mhz=405.0,
            memory_clock_max_mhz=9751.0,
            idle_memory_used_mib=320,
            idle_temperature_c=40.0,
            full_load_temperature_c=76.0,
            has_fan=True,
            has_ecc=False,
        ),
        "rtx-4080-super": FakeGpuModel(
            nvml_name="NVIDIA GeForce RTX 4080 SUPER",
            memory_total_mib=16376,
            power_limit_w=320.0,
            idle_power_w=20.0,
            mining_power_fraction=0.65,
            sm_clock_idle_mhz=210.0,
            sm_clock_boost_mhz=2805.0,
            memory_clock_idle_mhz=405.0,
            memory_clock_max_mhz=11501.0,
            idle_memory_used_mib=400,
            idle_temperature_c=40.0,
            full_load_temperature_c=70.0,
            has_fan=True,
            has_ecc=False,
        ),
        "rtx-4090": FakeGpuModel(
            nvml_name="NVIDIA GeForce RTX 4090",
            memory_total_mib=24564,
            power_limit_w=450.0,
            idle_power_w=25.0,
            mining_power_fraction=0.65,
            sm_clock_idle_mhz=210.0,
            sm_clock_boost_mhz=2730.0,
            memory_clock_idle_mhz=405.0,
            memory_clock_max_mhz=10501.0,
            idle_memory_used_mib=400,
            idle_temperature_c=40.0,
            full_load_temperature_c=72.0,
            has_fan=True,
            has_ecc=False,
        ),
        "l40s": FakeGpuModel(
            nvml_name="NVIDIA L40S",
            memory_total_mib=46068,
            power_limit_w=350.0,
            idle_power_w=35.0,
            mining_power_fraction=0.75,
            sm_clock_idle_mhz=210.0,
            sm_clock_boost_mhz=2520.0,
            memory_clock_idle_mhz=405.0,
            memory_clock_max_mhz=9001.0,
            idle_memory_used_mib=0,
            idle_temperature_c=36.0,
            full_load_temperature_c=68.0,
            has_fan=False,
            has_ecc=True,
        ),
        "a100-sxm4-80gb": FakeGpuModel(
            nvml_name="NVIDIA A100-SXM4-80GB",
            memory_total_mib=81920,
            power_limit_w=400.0,
            idle_power_w=60.0,
            mining_power_fraction=0.70,
            sm_clock_idle_mhz=210.0,
            sm_clock_boost_mhz=1410.0,
            memory_clock_idle_mhz=1593.0,
            memory_clock_max_mhz=1593.0,
            idle_memory_used_mib=0,
            idle_temperature_c=34.0,
            full_load_temperature_c=62.0,
            has_fan=False,
            has_ecc=True,
        ),
        "h100-sxm5-80gb": FakeGpuModel(
            nvml_name="NVIDIA H100 80GB HBM3",
            memory_total_mib=81559,
            power_limit_w=700.0,
            idle_power_w=70.0,
            mining_power_fraction=0.65,
            sm_clock_idle_mhz=345.0,
            sm_clock_boost_mhz=1980.0,
            memory_clock_idle_mhz=2619.0,
            memory_clock_max_mhz=2619.0,
            idle_memory_used_mib=0,
            idle_temperature_c=38.0,
            full_load_temperature_c=62.0,
            has_fan=False,
            has_ecc=True,
        ),
        # measured on a real H200 with the agent (driver 580.159.04): idle 78 W settled and
        # 126 W right after a load, 615 MiB used; an inference server holding 20 GiB with no
        # requests 122 W; a mining-style load (fp16 matmul loop) 690 W at the 700 W limit
        "h200": FakeGpuModel(
            nvml_name="NVIDIA H200",
            memory_total_mib=143771,
            power_limit_w=700.0,
            idle_power_w=78.0,
            mining_power_fraction=690.0 / 700.0,
            sm_clock_idle_mhz=345.0,
            sm_clock_boost_mhz=1980.0,
            memory_clock_idle_mhz=3201.0,
            memory_clock_max_mhz=3201.0,
            idle_memory_used_mib=615,
            idle_temperature_c=38.0,
            full_load_temperature_c=62.0,
            has_fan=False,
            has_ecc=True,
            ai_loaded_idle_power_w=122.0,
            idle_after_load_power_w=126.0,
        ),
    }
)


class FakeGpuSection(Section):
    """`[gpu.fake]`: the simulated GPUs of one node."""

    gpus: int = Field(default=8, ge=1, le=64)
    models: list[str] = Field(default=["rtx-3090"], min_length=1)
    seed: int = 0
    initial_workloads: list[str] = Field(default=[IDLE], min_length=1)
    noise_fraction: float = Field(default=0.02, ge=0.0, le=0.5)
    # a fault to inject from outside: a GPU whose index names a file `gpu-<index>` in this
    # folder shows a process holding 2 GiB (a CUDA context that outlived its workload), so
    # a switch's "verify free" step fails while the file exists
    stuck_memory_dir: Path | None = None

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: list[str]) -> list[str]:
        normalised = [model.strip().lower() for model in models]
        unknown = [model for model in normalised if model not in FAKE_GPU_MODELS]
        if unknown:
            valid = ", ".join(sorted(FAKE_GPU_MODELS))
            raise ValueError(f"unknown GPU model {unknown[0]!r}; valid models: {valid}")
        return normalised

    @field_validator("initial_workloads")
    @classmethod
    def _known_workloads(cls, workloads: list[str]) -> list[str]:
        for workload in workloads:
            if workload_kind(workload) is WorkloadKind.UNKNOWN:
                expected = "'idle', 'mine:<profile>' or 'ai:<contract>'"
                raise ValueError(f"unknown workload {workload!r}; use {expected}")
        return workloads


class GpuSection(Section):
    """`[gpu]`: where the agent's GPU readings come from."""

    backend: Literal["nvml", "fake"] = "nvml"
    fake: FakeGpuSection = FakeGpuSection()
