"""`Milp`, the solver the planner and the backtest share: exact answers on small models."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.policy.milp import INF, Milp


def test_an_integral_lp_vertex_is_returned_as_the_optimum() -> None:
    """A transportation-like model: 3 GPUs over two options, the better one capped at 2."""
    milp = Milp()
    gpus = milp.add_row(3, 3)
    cap = milp.add_row(-INF, 2)
    milp.add_column(5.0, 0.0, 3.0, [(gpus, 1.0), (cap, 1.0)], integer=True)
    milp.add_column(1.0, 0.0, 3.0, [(gpus, 1.0)], integer=True)
    assert milp.solve() == pytest.approx([2.0, 1.0])


def test_a_fractional_lp_vertex_falls_back_to_branch_and_bound() -> None:
    """max x + y with 2x + 2y <= 3: the LP says 1.5, the integer optimum is 1."""
    milp = Milp()
    row = milp.add_row(-INF, 3.0)
    milp.add_column(1.0, 0.0, 1.0, [(row, 2.0)], integer=True)
    milp.add_column(1.0, 0.0, 1.0, [(row, 2.0)], integer=True)
    values = milp.solve()
    assert values is not None
    assert sum(values) == pytest.approx(1.0)
    assert all(v == pytest.approx(round(v)) for v in values)


def test_infeasible_is_none_and_nothing_to_decide_is_empty() -> None:
    infeasible = Milp()
    row = infeasible.add_row(5.0, 5.0)
    infeasible.add_column(1.0, 0.0, 2.0, [(row, 1.0)], integer=True)
    assert infeasible.solve() is None
    assert Milp().solve() == []


def test_optional_rows_absent_bounds_and_slack() -> None:
    """No bound: index -1 and entries on it are dropped; `>= bound` rows use the slack."""
    milp = Milp()
    assert milp.add_optional_row(None, upper=True, slack=1e-6) == -1
    at_least = milp.add_optional_row(2.0, upper=False, slack=0.5)
    at_most = milp.add_optional_row(10.0, upper=True, slack=1e-6)
    assert milp.row_lower == [1.5, -INF]
    assert milp.row_upper == [INF, 10.0 + 1e-6]
    milp.add_column(-1.0, 0.0, 5.0, [(at_least, 1.0), (-1, 7.0), (at_most, 1.0)], integer=True)
    assert milp.rows == [at_least, at_most]
    assert milp.solve() == pytest.approx([2.0])  # as few as the >= 2 row allows


@settings(max_examples=60, deadline=None)
@given(
    costs=st.lists(st.integers(-5, 9), min_size=1, max_size=4),
    weights=st.lists(st.integers(0, 7), min_size=4, max_size=4),
    capacity=st.integers(0, 15),
    upper=st.integers(0, 3),
)
def test_the_answer_is_the_brute_force_optimum(
    costs: list[int], weights: list[int], capacity: int, upper: int
) -> None:
    """A bounded integer knapsack (fractional LP vertices are common): exact optimum."""
    milp = Milp()
    row = milp.add_row(-INF, capacity)
    for cost, weight in zip(costs, weights, strict=False):
        milp.add_column(float(cost), 0.0, float(upper), [(row, float(weight))], integer=True)
    values = milp.solve()
    assert values is not None  # all-zero always fits
    best = max(
        sum(c * x for c, x in zip(costs, xs, strict=False))
        for xs in itertools.product(range(upper + 1), repeat=len(costs))
        if sum(w * x for w, x in zip(weights, xs, strict=False)) <= capacity
    )
    assert sum(c * v for c, v in zip(costs, values, strict=False)) == pytest.approx(best)
    assert sum(w * v for w, v in zip(weights, values, strict=False)) <= capacity + 1e-6
