"""The `[gpu]` config section and the backend factory.

What it proves: the real backend is the default; a fake section from TOML builds the fake
backend it describes; bad values (unknown model, GPU count out of range, unknown key, a
workload that is not `idle`/`mine:`/`ai:`) fail validation naming the key and the fix.
"""

from __future__ import annotations

import tomllib

import pytest
from pydantic import ValidationError

from orchestrator.agents.gpu import FakeGpuBackend, NvmlBackend, build_backend
from orchestrator.config.gpu import FAKE_GPU_MODELS, GpuSection


def section(text: str) -> GpuSection:
    return GpuSection.model_validate(tomllib.loads(text)["gpu"])


def test_real_nvml_is_the_default() -> None:
    gpu = GpuSection()
    assert gpu.backend == "nvml"
    assert isinstance(build_backend(gpu, node="rig-01"), NvmlBackend)


def test_fake_section_builds_the_described_fake() -> None:
    gpu = section(
        """
        [gpu]
        backend = "fake"
        [gpu.fake]
        gpus = 3
        models = ["RTX-4090", "h100-sxm5-80gb"]
        seed = 42
        initial_workloads = ["mine:kawpow", "ai:acme"]
        noise_fraction = 0.0
        """
    )
    assert gpu.fake.models == ["rtx-4090", "h100-sxm5-80gb"]  # names are case-insensitive
    backend = build_backend(gpu, node="rig-01", clock=lambda: 1_700_000_000.0)
    assert isinstance(backend, FakeGpuBackend)
    backend.open()
    sampled = backend.sample()
    assert [g.name for g in sampled] == [
        "NVIDIA GeForce RTX 4090",
        "NVIDIA H100 80GB HBM3",
        "NVIDIA GeForce RTX 4090",
    ]
    assert [backend.workload_of(i) for i in range(3)] == ["mine:kawpow", "ai:acme", "mine:kawpow"]


def test_unknown_model_names_the_valid_ones() -> None:
    with pytest.raises(ValidationError) as raised:
        section('[gpu]\nbackend = "fake"\n[gpu.fake]\nmodels = ["rtx-5090"]\n')
    (problem,) = raised.value.errors()
    assert problem["loc"] == ("fake", "models")
    assert "'rtx-5090'" in problem["msg"]
    for name in FAKE_GPU_MODELS:
        assert name in problem["msg"]


@pytest.mark.parametrize(
    ("text", "loc"),
    [
        ('[gpu]\nbackend = "cuda"\n', ("backend",)),
        ("[gpu.fake]\ngpus = 0\n", ("fake", "gpus")),
        ("[gpu.fake]\ngpus = 65\n", ("fake", "gpus")),
        ("[gpu.fake]\nmodels = []\n", ("fake", "models")),
        ('[gpu.fake]\ninitial_workloads = ["crunch"]\n', ("fake", "initial_workloads")),
        ("[gpu.fake]\nnoise_fraction = -0.1\n", ("fake", "noise_fraction")),
        ("[gpu.fake]\ngpu = 4\n", ("fake", "gpu")),
        ('[gpu]\nbackends = "fake"\n', ("backends",)),
    ],
)
def test_bad_values_fail_at_the_exact_key(text: str, loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as raised:
        section(text)
    assert [error["loc"] for error in raised.value.errors()] == [loc]
