"""`Milp`: a small maximisation MILP in column form, solved exactly and quietly with HiGHS.

Pure: rows, columns and costs in, optimal column values out; no I/O, no clock, no globals
(HiGHS writes nothing: see "Quiet" below). Both the planner (`orchestrator.policy.planner`)
and the backtest's stateless strategies (`orchestrator.backtest.strategies`) build their
per-step problem with it, so there is one solving path to trust and to test.

What it solves. maximise c.x subject to row_lower <= A x <= row_upper and
col_lower <= x <= col_upper, some columns integer. The model is built one row and one
column at a time: `add_row` returns the row's index, and `add_column` takes the column's
(row, coefficient) entries, skipping any row index below zero, so that a caller can name
"the power row" as -1 when a solve has none and keep one code path for both cases.
`add_optional_row` is that pattern for bounds that may be absent.

Why the LP relaxation first, and why that is exact. Both callers' problems are a
transportation problem (GPUs of a class to options) plus a few side rows (power cap,
contract ceilings, tier levels), so the optimal vertex of the LP relaxation is usually
integral. The relaxation's feasible set contains the MILP's, so its optimum bounds the
MILP optimum from above; an optimum that is itself integral (every integer column within
1e-7 of an integer) is a feasible MILP point reaching that bound, hence a MILP optimum.
Only a fractional vertex (typically from a binding power cap) pays for branch and bound,
which then runs on the same model with integrality and presolve on. An infeasible LP
means an infeasible MILP, so `None` is exact too. The LP runs without presolve, the
branch and bound with it (as both callers did before they shared this module).

Time limit. Proving optimality can take far longer than finding the optimum: under a
binding site power cap a 1,000-GPU plan found its best point within a second and was still
unproven after 30 s. With `time_limit_s`, a search cut short returns its best feasible
point, marked `proven_optimal = False` with HiGHS's relative `gap`, so that the caller can
use it and say so rather than stall a control loop.

HiGHS options, and why each.
- `output_flag = False`: no log on stdout (the daemon's stdout is its log stream).
- `mip_rel_gap = 0`, `mip_abs_gap = 1e-9`: stop at the proven optimum, not within the
  default 0.01 % of it; the planner's brute-force tests check exact optimality.
- `threads = 1`, `random_seed = 0`: the same answer for the same model on every run and
  every machine, which the plan's determinism and the backtest's caching rely on.

Quiet. HiGHS writes its copyright banner ("Running HiGHS 1.16.0 ... Copyright") on the
first log line of a process, before any other log line, whenever `output_flag` is still
on at that moment; its maintainers' answer is to set `output_flag` off before calling any
other method (ERGO-Code/HiGHS#1702, #1932). The `highspy.Highs` Python wrapper cannot do
that: its constructor registers its callback hook (`setCallback`) before the caller gets
the object, and that call already logs the banner. So the solver here is the wrapper's
base, the pybind11 binding of the C++ class (`highspy._core._Highs`, listed in
highspy's `__all__`): `output_flag` is its first call, nothing is ever written, and the
solve is the same C++ code (the wrapper adds only callbacks and a modelling API, neither
used here). tests/backtest/test_quiet_solver.py holds this to stdout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import highspy
from highspy._core import _Highs

__all__ = ["INF", "Milp", "SolverError"]

INF = highspy.kHighsInf
_INTEGRALITY = 1e-7
_INTEGER = highspy.HighsVarType.kInteger
_CONTINUOUS = highspy.HighsVarType.kContinuous
# Set in this order (dicts keep it): quiet first, before any call that could log (see
# "Quiet"), then an exact optimum, one thread and a fixed seed (module docstring).
_HIGHS_OPTIONS: dict[str, bool | float | int] = {
    "output_flag": False,
    "mip_rel_gap": 0.0,
    "mip_abs_gap": 1e-9,
    "threads": 1,
    "random_seed": 0,
}


class SolverError(RuntimeError):
    """HiGHS stopped without an optimum or a proof of infeasibility (a bug, not an input)."""


@dataclass(slots=True)
class Milp:
    """A maximisation MILP in column form, built one row and one column at a time."""

    costs: list[float] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    integer: list[highspy.HighsVarType] = field(default_factory=list)
    starts: list[int] = field(default_factory=lambda: [0])
    rows: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    row_lower: list[float] = field(default_factory=list)
    row_upper: list[float] = field(default_factory=list)
    # after `solve`: False when a time limit ended the search at a feasible, unproven point
    proven_optimal: bool = True
    gap: float = 0.0  # HiGHS's relative MIP gap at that point

    def add_row(self, lower: float, upper: float) -> int:
        """A row `lower <= a.x <= upper` (either may be +-INF); returns its index."""
        self.row_lower.append(float(lower))
        self.row_upper.append(float(upper))
        return len(self.row_lower) - 1

    def add_optional_row(self, bound: float | None, *, upper: bool, slack: float) -> int:
        """A row `<= bound + slack` (`upper`) or `>= bound - slack`; -1 without a bound.

        The slack is the caller's: a feasibility tolerance in the row's unit for a
        continuous bound (watts of a power cap), or 0.5 for a bound on an integer total,
        which admits exactly the integers >= bound however the LP rounds.
        """
        if bound is None:
            return -1
        if upper:
            return self.add_row(-INF, bound + slack)
        return self.add_row(bound - slack, INF)

    def add_column(
        self,
        cost: float,
        lower: float,
        upper: float,
        entries: list[tuple[int, float]],
        *,
        integer: bool,
    ) -> None:
        """A column with objective coefficient `cost`; entries on rows < 0 are dropped."""
        self.costs.append(cost)
        self.lower.append(lower)
        self.upper.append(upper)
        self.integer.append(_INTEGER if integer else _CONTINUOUS)
        for row, value in entries:
            if row < 0:  # a row this solve does not have
                continue
            self.rows.append(row)
            self.values.append(value)
        self.starts.append(len(self.rows))

    def solve(self, *, time_limit_s: float | None = None) -> list[float] | None:
        """The optimal column values, or None when infeasible (LP first: module docstring).

        With `time_limit_s`, a branch and bound still running at the limit returns the best
        feasible point found and sets `proven_optimal` to False (`gap` says how far from the
        bound it may be); without a feasible point by then it raises `SolverError`, as it
        does when HiGHS ends in any other state than optimal or infeasible.
        """
        self.proven_optimal = True
        self.gap = 0.0
        if not self.costs:  # nothing to decide
            return []
        lp = highspy.HighsLp()
        lp.num_col_ = len(self.costs)
        lp.num_row_ = len(self.row_lower)
        lp.sense_ = highspy.ObjSense.kMaximize
        lp.col_cost_ = self.costs
        lp.col_lower_ = self.lower
        lp.col_upper_ = self.upper
        lp.row_lower_ = self.row_lower
        lp.row_upper_ = self.row_upper
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = self.starts
        lp.a_matrix_.index_ = self.rows
        lp.a_matrix_.value_ = self.values
        solver = _Highs()  # not `highspy.Highs`: its constructor logs (see "Quiet")
        for name, value in _HIGHS_OPTIONS.items():
            solver.setOptionValue(name, value)
        solver.setOptionValue("presolve", "off")
        if time_limit_s is not None:
            solver.setOptionValue("time_limit", float(time_limit_s))
        relaxed, _ = _optimal_values(solver, lp)
        if relaxed is None or all(
            abs(value - round(value)) <= _INTEGRALITY
            for value, kind in zip(relaxed, self.integer, strict=True)
            if kind == _INTEGER
        ):
            return relaxed
        lp.integrality_ = self.integer
        solver.setOptionValue("presolve", "on")
        values, proven = _optimal_values(solver, lp)
        if not proven:
            self.proven_optimal = False
            self.gap = float(solver.getInfo().mip_gap)
        return values


_FEASIBLE_POINT = 2  # HiGHS's SolutionStatus: a feasible primal solution exists


def _optimal_values(solver: _Highs, lp: highspy.HighsLp) -> tuple[list[float] | None, bool]:
    """(values, proven optimal); values None when infeasible."""
    solver.passModel(lp)
    solver.run()
    status = solver.getModelStatus()
    if status in (
        highspy.HighsModelStatus.kInfeasible,
        highspy.HighsModelStatus.kUnboundedOrInfeasible,
    ):
        return None, True
    if status == highspy.HighsModelStatus.kOptimal:
        return list(solver.getSolution().col_value), True
    if (
        status == highspy.HighsModelStatus.kTimeLimit
        and solver.getInfo().primal_solution_status == _FEASIBLE_POINT
    ):
        return list(solver.getSolution().col_value), False
    raise SolverError(f"HiGHS stopped with {solver.modelStatusToString(status)}")
