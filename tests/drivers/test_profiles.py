"""`[[profiles]]`: what an agent may run, validated when the config is loaded."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.config.profiles import (
    InferenceHealthCheck,
    MinerHealthCheck,
    ProfilesSection,
    UnknownProfileError,
)
from orchestrator.errors import PermanentError
from tests.drivers.conftest import make_profile

EXAMPLE = """
[[profiles]]
id = "trex-kawpow"
kind = "mining"
driver = "process"
expected_power_w = 250
algorithm = "kawpow"
expected_hashrate_hs = 2.5e7
api_port_base = 4067
[profiles.process]
argv = ["/opt/t-rex/t-rex", "-a", "kawpow", "--api-bind-http", "127.0.0.1:{port}"]
gpu_selection = "uuid"
[profiles.health]
miner_api = "trex"
url = "http://127.0.0.1:{port}"

[[profiles]]
id = "vllm-llama"
kind = "ai"
driver = "docker"
expected_power_w = 320
api_port_base = 8000
[profiles.docker]
image = "vllm/vllm-openai:v0.6.3"
cmd = ["--model", "/models/llama", "--port", "8000"]
ports = { "8000/tcp" = "127.0.0.1:{port}" }
[profiles.health]
server = "vllm"
url = "http://127.0.0.1:{port}/health"
"""


def _load(text: str) -> ProfilesSection:
    return ProfilesSection.model_validate(tomllib.loads(text))


def _error(**fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        make_profile(**fields)
    return str(caught.value)


def test_example_file_loads_with_kind_defaults() -> None:
    """A realistic file loads; timeouts default by kind (AI loads for minutes, miners don't)."""
    section = _load(EXAMPLE)
    miner, server = section.profiles
    assert isinstance(miner.health, MinerHealthCheck)
    assert miner.health.miner_api == "trex"
    assert (miner.start_timeout_s, miner.stop_timeout_s, miner.drain_timeout_s) == (120, 15, 0)
    assert isinstance(server.health, InferenceHealthCheck)
    assert server.start_timeout_s == 900
    assert server.drain_timeout_s == 60
    assert server.docker is not None
    assert server.docker.network_mode == "bridge"
    assert server.docker.gpu_request is True
    assert str(server.docker.socket_path) == "/var/run/docker.sock"
    assert miner.port_for(3) == 4070


def test_lookup_refuses_an_unknown_profile() -> None:
    """A command naming an undeclared profile is refused with a permanent, typed error."""
    section = _load(EXAMPLE)
    assert section.get("vllm-llama").kind == "ai"
    with pytest.raises(UnknownProfileError) as caught:
        section.get("rm-rf")
    assert isinstance(caught.value, PermanentError)
    assert caught.value.known == ["trex-kawpow", "vllm-llama"]


def test_duplicate_ids_are_rejected() -> None:
    doubled = EXAMPLE.replace('id = "vllm-llama"', 'id = "trex-kawpow"')
    with pytest.raises(ValidationError, match="duplicate profile id 'trex-kawpow'"):
        _load(doubled)


def test_unknown_keys_are_rejected_at_every_level() -> None:
    assert "colour" in _error(colour="red")
    assert "argvv" in _error(driver="process", sim=None, process={"argvv": ["x"]})


def test_the_driver_section_must_match_the_driver() -> None:
    assert "needs a [profiles.docker] section" in _error(driver="docker", sim=None)
    assert "[profiles.sim] given but driver = 'process'" in _error(
        driver="process", process={"argv": ["x"]}
    )


def test_real_drivers_need_a_health_check_of_their_kind() -> None:
    process = {"driver": "process", "sim": None, "process": {"argv": ["x"]}}
    assert "needs a [profiles.health] check" in _error(**process)
    mixed = {"server": "vllm", "url": "http://127.0.0.1:8000/health"}
    assert "names miner_api, not server" in _error(**process, health=mixed)
    assert "miner_api" in _error(**process, health={"miner_api": "nosuchminer", "url": "x"})


def test_mining_fields_belong_to_mining_profiles() -> None:
    assert "needs algorithm" in _error(algorithm=None)
    assert "are for mining profiles" in _error(kind="ai")
    assert "needs expected_hashrate_hs" in _error(expected_hashrate_hs=None)


def test_templates_are_checked_when_loaded() -> None:
    """A typo in a placeholder, or {port} without a port base, fails at config check."""
    process = {"driver": "process", "sim": None, "health": {"miner_api": "trex", "url": "x"}}
    bad = _error(**process, process={"argv": ["miner", "--device", "{gpu}"]})
    assert "unknown placeholder {gpu}" in bad
    assert "api_port_base is not set" in _error(
        **process, process={"argv": ["miner", "--api", "{port}"]}
    )
    assert "needs {gpu_index}, {gpu_uuid} or {pci_bus_id}" in _error(
        **process, process={"argv": ["miner"], "gpu_selection": "argv"}
    )
    ok = make_profile(
        **process, process={"argv": ["m", "-d", "{gpu_index}"], "gpu_selection": "argv"}
    )
    assert ok.process is not None


def test_sim_delays_default_by_kind() -> None:
    assert make_profile().sim_delays_s() == (5.0, 2.0)
    ai = make_profile(kind="ai", algorithm=None, expected_hashrate_hs=None)
    assert ai.sim_delays_s() == (60.0, 5.0)
    assert make_profile(sim={"start_delay_s": 1, "hashrate_hs": 7.0}).sim_hashrate_hs == 7.0
