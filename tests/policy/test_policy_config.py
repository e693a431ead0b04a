"""Policy config: strict sections, conversion to planner values, impossible contracts reported."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.config.policy import ContractsSection, PolicySection, contract_problems
from orchestrator.policy.model import policy_from_config

MODEL = "NVIDIA GeForce RTX 3090"


def policy(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "mining_profiles": [
            {
                "id": "kawpow",
                "algorithm": "kawpow",
                "pool_fee_fraction": 0.01,
                "benchmarks": {MODEL: {"hashrate_hs": 30e6, "power_w": 300}},
            },
        ],
        "contracts": {
            "reserved": [
                {
                    "id": "acme",
                    "rate_usd_per_gpu_hour": 0.5,
                    "committed_gpus": 2,
                    "eligible_models": [MODEL],
                    "penalty_usd_per_gpu_hour": 2.0,
                    "schedule": [
                        {
                            "days": ["mon", "fri"],
                            "start": "22:00",
                            "end": "06:00",
                            "timezone": "Europe/Berlin",
                        }
                    ],
                },
            ],
            "on_demand": [
                {"id": "spot", "rate_usd_per_gpu_hour": 0.4, "max_gpus": 8, "min_memory_gib": 16}
            ],
        },
        "planner": {"site_power_cap_kw": 120},
    }
    raw.update(changes)
    return raw


def test_a_full_policy_converts_to_planner_values() -> None:
    """Days, overnight windows, GiB and kW arrive in the planner's units."""
    inputs = policy_from_config(PolicySection.model_validate(policy()))
    (acme,) = inputs.contracts.reserved
    assert acme.windows is not None
    (window,) = acme.windows
    assert window.days == frozenset({0, 4})
    assert (window.start_minute, window.end_minute) == (22 * 60, 6 * 60)
    assert window.duration_s == 8 * 3600
    assert inputs.contracts.on_demand[0].eligibility.min_memory_bytes == 16 * 1024**3
    assert inputs.profiles[0].benchmarks[MODEL].hashrate_hs == 30e6
    assert inputs.settings.site_power_cap_kw == 120


@pytest.mark.parametrize(
    ("raw", "bad_key"),
    [
        (policy(planer={}), "planer"),
        (policy(planner={"interval": 5}), "interval"),
        (policy(mining_profiles=[{"id": "x", "algorithm": "a", "hashrate": 1}]), "hashrate"),
        (
            policy(
                contracts={
                    "reserved": [
                        {"id": "a", "rate_usd_per_gpu_hour": 1, "committed_gpus": 1, "penalty": 1}
                    ]
                }
            ),
            "penalty",
        ),
    ],
)
def test_unknown_keys_are_rejected_by_name(raw: dict[str, Any], bad_key: str) -> None:
    with pytest.raises(ValidationError, match=bad_key):
        PolicySection.model_validate(raw)


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"days": ["mon"], "start": "25:00", "end": "06:00"}, "not a time of day"),
        ({"days": ["mon"], "start": "8:00", "end": "06:00"}, "not HH:MM"),
        (
            {"days": ["mon"], "start": "08:00", "end": "09:00", "timezone": "Mars/Olympus"},
            "time zone",
        ),
        ({"days": ["someday"], "start": "08:00", "end": "09:00"}, "days"),
    ],
)
def test_bad_windows_fail_validation(window: dict[str, Any], message: str) -> None:
    raw = {
        "reserved": [
            {"id": "a", "rate_usd_per_gpu_hour": 1, "committed_gpus": 1, "schedule": [window]}
        ]
    }
    with pytest.raises(ValidationError, match=message):
        ContractsSection.model_validate(raw)


def test_contract_problems_finds_contracts_that_can_never_be_met() -> None:
    """More committed than eligible, duplicate ids and empty windows are each reported."""
    contracts = ContractsSection.model_validate(
        {
            "reserved": [
                {
                    "id": "acme",
                    "rate_usd_per_gpu_hour": 1,
                    "committed_gpus": 5,
                    "eligible_models": [MODEL],
                },
                {"id": "acme", "rate_usd_per_gpu_hour": 1, "committed_gpus": 1, "schedule": []},
                {
                    "id": "night",
                    "rate_usd_per_gpu_hour": 1,
                    "committed_gpus": 1,
                    "schedule": [{"days": [], "start": "08:00", "end": "08:00"}],
                },
            ],
        }
    )
    problems = contract_problems(contracts, {MODEL: 3, "NVIDIA A100": 10})
    assert "reserved contract 'acme' commits 5 GPUs but the fleet has only 3 eligible" in problems
    assert "contract id 'acme' appears more than once" in problems
    assert any("schedule has no windows" in p for p in problems)
    assert any("'night': window 1 has no days" in p for p in problems)
    assert any("'night': window 1 starts and ends at 08:00" in p for p in problems)


def test_a_sound_policy_has_no_problems() -> None:
    section = PolicySection.model_validate(policy())
    assert contract_problems(section.contracts, {MODEL: 4}) == []
    assert contract_problems(section.contracts, None) == []


def test_power_at_the_wall_and_priors_come_from_config() -> None:
    """`[power]` becomes the board->wall conversion (per-node overrides over the site's);
    an unset `idle_power_w` is a share of the power limit, and its source says "default"."""
    raw = policy(
        power={
            "pue": 1.3,
            "psu_efficiency": 0.9,
            "host_overhead_w": 250,
            "nodes": {"big": {"host_overhead_w": 1200}},
        }
    )
    inputs = policy_from_config(PolicySection.model_validate(raw))
    site = inputs.settings.site_power
    assert site.wall_w(900.0, "n0") == pytest.approx((900 / 0.9 + 250) * 1.3)
    assert site.wall_w(900.0, "big") == pytest.approx((900 / 0.9 + 1200) * 1.3)
    assert inputs.settings.idle_prior(700.0).board_w == pytest.approx(84.0)
    assert inputs.settings.idle_prior(700.0).source == "default"
    (acme,) = inputs.contracts.reserved
    assert acme.power.prior("other model").source == "default"
    set_idle = policy_from_config(
        PolicySection.model_validate(policy(planner={"idle_power_w": 30}))
    )
    assert set_idle.settings.idle_prior(700.0).board_w == 30.0
    assert set_idle.settings.idle_prior(700.0).source == "config"


def test_the_default_power_section_is_realistic_not_neutral() -> None:
    """An empty `[power]` still plans lossy supplies, a host and cooling."""
    site = policy_from_config(PolicySection.model_validate(policy())).settings.site_power
    assert site.wall_w(1000.0) > 1000.0 / 0.95 * 1.1


@pytest.mark.parametrize(
    ("power", "bad_key"),
    [({"pue": 0.9}, "pue"), ({"psu_efficiency": 1.2}, "psu_efficiency"), ({"cop": 1}, "cop")],
)
def test_bad_power_values_are_named(power: dict[str, Any], bad_key: str) -> None:
    with pytest.raises(ValidationError, match=bad_key):
        PolicySection.model_validate(policy(power=power))
