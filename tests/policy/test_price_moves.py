"""When a price has moved enough to re-plan early, around zero and below it too."""

from __future__ import annotations

import math

import pytest

from orchestrator.policy.economics import significant_price_move
from orchestrator.policy.model import Market


def power(usd_per_kwh: float) -> Market:
    return Market({"kawpow": 1e-8}, usd_per_kwh)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (-0.05, -0.5),  # ten times the pay for using power: both below zero
        (-0.5, -0.05),
        (0.02, -0.05),
        (-0.05, 0.02),
        (0.0, 0.001),  # 0.1 cent over zero is 10 % of the floor
        (0.045, 0.048),
    ],
)
def test_power_moves_that_replan(before: float, after: float) -> None:
    assert significant_price_move(power(before), power(after), 0.05)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (0.0, 0.0001),  # "infinitely" more than zero, but a hundredth of a cent
        (-0.0001, 0.0001),
        (-0.5, -0.51),  # 2 % of a large negative price
        (0.045, 0.046),
    ],
)
def test_power_wobbles_that_do_not(before: float, after: float) -> None:
    assert not significant_price_move(power(before), power(after), 0.05)


def test_a_power_price_that_stops_being_a_number_is_a_move() -> None:
    assert significant_price_move(power(-0.05), power(math.nan), 0.05)
    assert significant_price_move(power(math.inf), power(-0.05), 0.05)


def test_the_floor_is_a_parameter() -> None:
    assert significant_price_move(power(0.0), power(0.0001), 0.05, power_floor_usd_per_kwh=0.001)
    assert not significant_price_move(power(0.0), power(0.001), 0.05, power_floor_usd_per_kwh=1.0)
