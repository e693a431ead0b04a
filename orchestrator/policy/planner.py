"""`plan()`: the whole fleet's next assignment, optimal for DESIGN.md's objective.

Pure: fleet snapshot, market, contracts, profiles, overrides, settings and `now_s` in, a
`Plan` out; no I/O, no clock, no globals. The caller times it.

What is decided, in order of precedence (each tier is optimal given the ones above it):

1. Fixed GPUs stay as they are: offline (never counted for an SLA, never reassigned),
   unhealthy, and overridden by an operator (the override's workload).
2. The site power cap (kW) holds, at the wall: every GPU's board power over its node's
   PSU efficiency, each node's host overhead, all times the site's PUE
   (`orchestrator.policy.power.SitePower`). A fixed GPU whose workload is unknown (or whose
   node is silent) counts at its last reading or its power limit, never 0 W. If even the
   lowest-power choice for every movable GPU exceeds the cap, the plan uses that minimum
   instead and says so. A curtailment window lowers this cap (`policy.curtailment`); since
   the SLA tier sits below, mining and on-demand AI are shed before a reserved contract
   loses a GPU, and a shortfall the lowered cap forces is reported like any other. At or
   above the power-price strike (`curtail_price_strike_usd_per_kwh`), movable GPUs are
   offered only idle and the active reserved contracts: mining and on-demand AI are shed
   outright.
3. Reserved contracts get the GPUs their availability target requires (commitment x
   target, rounded up; hard), unless `allow_sla_shortfall`, in which case a shortfall is
   just its penalty in the objective: penalty x GPUs below commitment x target. The
   customer pays for up to the whole commitment. When it cannot be met the plan serves as
   many as possible and reports each contract's shortfall and penalty.
4. Soft locks hold where possible: a GPU inside its minimum dwell, or on an algorithm with
   no valid price, stays. Only tiers 2 and 3 may move it, as few such GPUs as possible.
5. Maximise sum over GPUs of (revenue - power - switching cost over the horizon) - the
   hysteresis margin - SLA penalties, where contract revenue is paid for at most the
   committed / ceiling number of GPUs.

Damping (`hysteresis_scope`). The margin exists to stop the fleet answering price noise:
more GPUs mining at one price, fewer at the next. Charged on every GPU that moves
(`"gpu"`, the old rule), it also taxes changes that no price noise drives: swapping which
GPU does what (the efficient GPU takes the on-demand work, the hungry one goes idle) gains
the fleet real money, but each leg pays the margin, so a swap worth less than two margins
is never made, however long its gain lasts. With `"fleet"` the $/GPU-hour
margin is charged on the net change of the fleet's mix: per workload, the GPUs that join
it beyond those that leave it (`mix_change`). A plain move pays exactly what it paid
before; a swap or rotation that leaves every workload's count unchanged pays only its real
switching costs (downtime and the fixed cost, over the horizon). It stays exact: one
continuous column u_w per workload with a row `GPUs on w - u_w <= GPUs on w now` and cost
-margin, and the brute-force reference (tests/policy) prices plans the same way. Why this
and not a two-stage solve or a minimum gain per plan: both judge a plan as a whole, so a
plan with one large, certain change would carry along every small flap riding with it,
and a per-plan threshold that stops those flaps is again too high for the small swaps; the
mix rule damps exactly the moves that change what the fleet does, whatever else the plan
contains. The fraction margin (`hysteresis_margin_fraction`) stays per GPU. The default
is still `"gpu"`: on the year-long ERCOT backtest (docs/backtest.md) the fleet scope makes
the swaps and earns more at the same margin, but it switches more, and at equal switching
it earns about what a lower per-GPU margin does.

How long a change lasts (`hysteresis_until_next_window`, `damped_settings`). A $/h margin
weighs a gain per hour against a threshold per hour, as if every change lasted the
horizon. The reserved windows say when the fleet must change next: from a Friday close
nothing is owed until Monday's lead time, so unloading the reserved GPUs then pays for
59 hours, overnight for 11. With the option on, the margin is spread over the time to the
next window edge when that is longer than the horizon (margin x horizon / time): the same
total, over the time the change will hold. It is a change of settings before the solve,
so the plan stays exact for its (rescaled) objective. On the ERCOT backtest this is what
recovers the stranded money at the fewest extra switches.

Solving. GPUs are grouped into classes: same model and memory, same current workload, same
soft lock and the same bucketed rates from their measurements (as `mining_rate` prices
them: blended with the benchmark, on accepted shares). Every member of a class has the
same option list, the same score and power for each option and the same contract
eligibility, so any per-GPU assignment maps to per-class counts with the same objective
and constraint values, and any integer counts map back to a per-GPU assignment: the
aggregation is exact. The MILP has one integer count per (class, option) and up to three
served-count pieces per contract (`_ContractTerms.served_pieces`), which
is a transportation problem plus at most three side rows, and HiGHS solves it in
milliseconds (`orchestrator.policy.milp`: the LP relaxation first, exact). The common case
is one solve (tiers 3 and 4 already satisfied). When that is infeasible, a second solve
minimises (shortfall, broken locks) with integer weights and a third maximises profit at
that level.

Disaggregation is deterministic: members in key order, except that within a dwell class
the GPUs that switched most recently are the ones kept in place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from orchestrator.domain import IDLE, MINE_PREFIX, Workload, WorkloadKind, ai_contract_of
from orchestrator.policy.curtailment import strike_applies, strike_text
from orchestrator.policy.economics import (
    Option,
    gpu_options,
    measured_stay,
    mining_rate,
    power_cost_usd_per_hour,
)
from orchestrator.policy.explain import (
    ContractFacts,
    ReasonContext,
    candidate_table,
    fixed_reason,
    gpu_reason,
)
from orchestrator.policy.milp import INF, Milp, SolverError
from orchestrator.policy.model import (
    Assignment,
    CandidateValue,
    Contracts,
    GpuState,
    Market,
    MiningProfile,
    Override,
    Plan,
    PlannerSettings,
    SlaStatus,
)
from orchestrator.policy.power import NO_LEARNING, PowerTable, node_of

_FEASIBILITY_W = 1e-6
_INTEGER_SLACK = 0.5  # a `>=` row on an integer total admits exactly the integers >= bound


class PlanningError(Exception):
    """The solver gave no usable answer (not expected for a well-formed problem)."""


@dataclass(slots=True)
class _Class:
    """Interchangeable GPUs. Classes of one group differ only in their stay option."""

    options: tuple[Option, ...]
    lock: str  # "free", "dwell", "no-price"
    group: int
    members: list[GpuState] = field(default_factory=list)

    @property
    def stay_index(self) -> int | None:
        return next((i for i, o in enumerate(self.options) if o.is_stay), None)


@dataclass(frozen=True, slots=True)
class _ContractTerms:
    paid_usd_per_gpu_hour: float
    paid_cap: float  # GPUs paid for at most
    committed: int  # GPUs an active reserved contract requires (its target, rounded up), else 0
    penalty_usd_per_gpu_hour: float
    target: float = 0.0  # the penalty applies below this many GPUs (commitment x target)

    def served_pieces(self) -> list[tuple[float, float, bool]]:
        """The contract's value of its x-th served GPU, as LP pieces filled in order.

        (GPUs in the piece, $/h per GPU, counts toward the SLA). Paid x min(x, cap) less
        penalty x max(0, target - x) is concave in x: a GPU up to the target earns the rate
        and saves the penalty, the one that crosses a fractional target saves only the
        fraction, and the rest up to the cap earn the rate alone. The pieces that count
        toward the SLA add up to `committed`, so the SLA tiers count whole GPUs.
        """
        pieces: list[tuple[float, float, bool]] = []
        paid, penalty = self.paid_usd_per_gpu_hour, self.penalty_usd_per_gpu_hour
        whole = math.floor(self.target)
        fraction = self.target - whole
        if whole > 0:
            pieces.append((float(whole), paid + penalty, True))
        if fraction > 0:
            pieces.append((1.0, paid + penalty * fraction, True))
        rest = self.paid_cap - self.committed
        if rest > 0:
            pieces.append((rest, paid, False))
        return pieces


@dataclass(slots=True)
class _Fixed:
    gpu: GpuState
    lock: str
    workload: str | None
    option: Option | None
    override: Override | None
    board_w: float = 0.0  # what it counts at against the cap (`_fixed_board_w`)
    power_w: float = 0.0  # the same at the wall


def _board(option: Option) -> float:
    return option.power_w if option.board_w is None else option.board_w


def _fixed_board_w(gpu: GpuState, option: Option | None, options: tuple[Option, ...]) -> float:
    """The board power a fixed GPU counts at: never 0 W for want of knowledge.

    A reporting GPU on a known workload: that workload's estimate. A silent node's GPU:
    the larger of that estimate and its last reading (it may run anything by now, but was
    last seen there). A GPU whose workload is unknown: its last reading, else its power
    limit, else its most power-hungry option.
    """
    if option is not None and gpu.online:
        return _board(option)
    known = [
        w for w in (None if option is None else _board(option), gpu.power_draw_w) if w is not None
    ]
    if known:
        return max(known)
    if gpu.power_limit_w:
        return gpu.power_limit_w
    return max((_board(o) for o in options), default=0.0)


def _contract_terms(contracts: Contracts, active: frozenset[str]) -> dict[str, _ContractTerms]:
    terms = {}
    for r in contracts.reserved:
        on = r.id in active
        terms[r.id] = _ContractTerms(
            r.rate_usd_per_gpu_hour,
            r.committed_gpus if on else 0,
            r.required_gpus if on else 0,
            r.penalty_usd_per_gpu_hour,
            r.target_gpus if on else 0.0,
        )
    for d in contracts.on_demand:
        cap = math.inf if d.max_gpus is None else d.max_gpus
        paid = d.rate_usd_per_gpu_hour * d.expected_utilisation_fraction
        terms[d.id] = _ContractTerms(paid, cap, 0, 0.0)
    return terms


def _dwell_left_s(gpu: GpuState, settings: PlannerSettings, now_s: float) -> float:
    if gpu.current_workload is None or gpu.since_s is None:
        return 0.0
    return max(0.0, gpu.since_s + settings.min_dwell_s - now_s)


# $/h credited to each GPU that stays, in the solver's objective only (plans report the
# exact objective): among plans worth the same, the one that moves fewest GPUs wins. Without
# it two GPUs of one model could swap workloads for nothing when switching costs nothing
# (a contract that pays 0, no hysteresis margin), and each swap is a model load.
_STAY_TIE_BREAK = 1e-6


def _mix_now(classes: Sequence[_Class]) -> dict[str, int]:
    """Movable GPUs per workload they run now (classes with a stay option only)."""
    now: dict[str, int] = {}
    for cls in classes:
        if cls.stay_index is not None:
            workload = cls.options[cls.stay_index].workload
            now[workload] = now.get(workload, 0) + len(cls.members)
    return now


def mix_change(classes: Sequence[_Class], counts: Sequence[Sequence[int]]) -> int:
    """GPUs that join a workload beyond those that leave it, summed over workloads.

    Only GPUs that run something now count (a GPU with nothing to stay on has no margin
    to clear). A swap of which GPUs do what changes nothing here; every GPU of a plain
    move counts once, as it does under a per-GPU margin.
    """
    now = _mix_now(classes)
    planned: dict[str, int] = {}
    for cls, row in zip(classes, counts, strict=True):
        if cls.stay_index is None:
            continue
        for option, n in zip(cls.options, row, strict=True):
            planned[option.workload] = planned.get(option.workload, 0) + n
    return sum(max(0, n - now.get(w, 0)) for w, n in planned.items())


class _Problem:
    """The aggregated MILP of one plan, solvable under different tiers."""

    def __init__(
        self,
        classes: list[_Class],
        terms: dict[str, _ContractTerms],
        fixed_counts: dict[str, int],
        power_budget_w: float | None,
        mix_margin_usd_per_gpu_hour: float = 0.0,
    ) -> None:
        self.classes = classes
        self.mix_margin_usd_per_gpu_hour = mix_margin_usd_per_gpu_hour
        self.terms = terms
        self.fixed_counts = fixed_counts
        self.power_budget_w = power_budget_w
        paid_by = {o.paid_by for k in classes for o in k.options}
        self.contract_ids = [c for c in terms if c in paid_by or fixed_counts.get(c)]
        self.time_limit_s: float | None = None
        self.unproven_gap: float | None = None  # set when a solve hit the time limit

    def solve(
        self,
        *,
        pin_soft: bool,
        pin_sla: bool,
        hard_sla: bool,
        lexicographic_weight: float | None = None,
        min_served: float | None = None,
        min_stays: float | None = None,
    ) -> list[list[int]] | None:
        """Counts per class and option, or None when infeasible.

        `pin_soft` keeps soft-locked classes in place; `pin_sla` demands every active
        contract's required GPUs. `lexicographic_weight` replaces the money objective with
        weight x required GPUs served (when `hard_sla`) + soft-locked GPUs kept in place,
        all integers; `min_served` and `min_stays` then hold the levels it found.
        """
        milp = Milp()
        group_size: dict[int, int] = {}
        for cls in self.classes:
            group_size[cls.group] = group_size.get(cls.group, 0) + len(cls.members)
        group_rows = {group: milp.add_row(n, n) for group, n in group_size.items()}
        contract_row = {
            c: milp.add_row(-INF, self.fixed_counts.get(c, 0)) for c in self.contract_ids
        }
        power_row = milp.add_optional_row(self.power_budget_w, upper=True, slack=_FEASIBILITY_W)
        sla_row = milp.add_optional_row(min_served, upper=False, slack=_INTEGER_SLACK)
        stay_row = milp.add_optional_row(min_stays, upper=False, slack=_INTEGER_SLACK)
        mix_row = self._mix_rows(milp) if lexicographic_weight is None else {}

        def entries(
            row: int, option: Option, *, kept: bool, counted: bool
        ) -> list[tuple[int, float]]:
            """`counted`: the GPUs run something now, so they count in the mix rows."""
            return [
                (row, 1.0),
                (contract_row.get(option.paid_by or "", -1), -1.0),
                (power_row, option.power_w),
                (stay_row if kept else -1, 1.0),
                (mix_row.get(option.workload, -1) if counted else -1, 1.0),
            ]

        def cost(option: Option, *, kept: bool, stay: bool = False) -> float:
            if lexicographic_weight is None:
                return option.own_score_usd_per_hour + (_STAY_TIE_BREAK if stay else 0.0)
            return 1.0 if kept else 0.0

        stay_columns: list[int] = []  # class index of each stay column
        move_columns: list[tuple[int, int]] = []  # (first class of the group, option index)
        first_of_group: dict[int, int] = {}
        for k, cls in enumerate(self.classes):
            first_of_group.setdefault(cls.group, k)
            stay = cls.stay_index
            if stay is None:
                continue
            kept = cls.lock != "free"
            size = float(len(cls.members))
            lower = size if pin_soft and kept else 0.0
            row = group_rows[cls.group]
            option = cls.options[stay]
            milp.add_column(
                cost(option, kept=kept, stay=True),
                lower,
                size,
                entries(row, option, kept=kept, counted=True),
                integer=True,
            )
            stay_columns.append(k)
        for group, k in first_of_group.items():
            cls = self.classes[k]
            for j, option in enumerate(cls.options):
                if j == cls.stay_index:
                    continue
                milp.add_column(
                    cost(option, kept=False),
                    0.0,
                    float(group_size[group]),
                    entries(
                        group_rows[group], option, kept=False, counted=cls.stay_index is not None
                    ),
                    integer=True,
                )
                move_columns.append((k, j))
        for contract_id in self.contract_ids:
            for size, paid, counts in self.terms[contract_id].served_pieces():
                value = paid
                if lexicographic_weight is not None:
                    value = lexicographic_weight if hard_sla and counts else 0.0
                column = [(contract_row[contract_id], 1.0), (sla_row if counts else -1, 1.0)]
                lower = size if pin_sla and counts else 0.0
                upper = size if math.isfinite(size) else INF
                milp.add_column(value, lower, upper, column, integer=False)
        self._mix_columns(milp, mix_row)  # after the others: `values` below relies on it
        try:
            solution = milp.solve(time_limit_s=self.time_limit_s)
        except SolverError as exc:
            raise PlanningError(str(exc)) from exc
        if not milp.proven_optimal:
            self.unproven_gap = max(self.unproven_gap or 0.0, milp.gap)
        if solution is None:
            return None
        values = [round(v) for v in solution]
        return self._per_class(
            values[: len(stay_columns)], stay_columns, values[len(stay_columns) :], move_columns
        )

    def _mix_rows(self, milp: Milp) -> dict[str, int]:
        """Rows holding the mix's net change: GPUs on w - u_w <= GPUs on w now.

        Only GPUs that run something now are counted in them (see `mix_change`); a column
        u_w per row, costing the margin, then counts the GPUs that join w beyond those
        that leave it. No rows without a fleet-scope margin.
        """
        rows: dict[str, int] = {}
        if self.mix_margin_usd_per_gpu_hour <= 0:
            return rows
        for workload, now in _mix_now(self.classes).items():
            rows[workload] = milp.add_row(-INF, float(now))
        for cls in self.classes:
            if cls.stay_index is not None:
                for option in cls.options:
                    if option.workload not in rows:
                        rows[option.workload] = milp.add_row(-INF, 0.0)
        return rows

    def _mix_columns(self, milp: Milp, rows: Mapping[str, int]) -> None:
        """u_w per mix row: GPUs joining w beyond those that leave it, at the margin each."""
        for row in rows.values():
            milp.add_column(
                -self.mix_margin_usd_per_gpu_hour, 0.0, INF, [(row, -1.0)], integer=False
            )

    def _per_class(
        self,
        stays: list[int],
        stay_columns: list[int],
        moves: list[int],
        move_columns: list[tuple[int, int]],
    ) -> list[list[int]]:
        """Spread each group's moves over its classes: leavers in class order, options in order."""
        counts = [[0] * len(k.options) for k in self.classes]
        leavers: dict[
            int, list[int]
        ] = {}  # group -> classes, one entry per leaving GPU... as counts
        for k, n in zip(stay_columns, stays, strict=True):
            counts[k][self.classes[k].stay_index or 0] = n
        for k, cls in enumerate(self.classes):
            stay = cls.stay_index
            left = len(cls.members) - (counts[k][stay] if stay is not None else 0)
            leavers.setdefault(cls.group, []).extend([k] * left)
        position: dict[int, int] = {}
        for (first, j), n in zip(move_columns, moves, strict=False):
            group = self.classes[first].group
            start = position.get(group, 0)
            for k in leavers[group][start : start + n]:
                counts[k][j] += 1
            position[group] = start + n
        return counts


# ---------------------------------------------------------------- the plan as a whole


def _classify(
    fleet: Sequence[GpuState],
    *,
    market: Market,
    contracts: Contracts,
    profiles: Sequence[MiningProfile],
    overrides: Mapping[str, Override],
    settings: PlannerSettings,
    now_s: float,
    active: frozenset[str],
    shedding: bool = False,
    power: PowerTable,
) -> tuple[list[_Class], list[_Fixed]]:
    by_key: dict[tuple[object, ...], _Class] = {}
    groups: dict[tuple[object, ...], tuple[int, tuple[Option, ...]]] = {}
    fixed: list[_Fixed] = []
    profiles_by_id = {p.id: p for p in profiles}
    per_class_margin = settings.hysteresis_margin_fraction > 0

    def options_of(gpu: GpuState, *, only_current: bool, shed: bool = False) -> tuple[Option, ...]:
        options = gpu_options(
            gpu,
            market=market,
            contracts=contracts,
            profiles=profiles,
            settings=settings,
            active_reserved=active,
            only_current=only_current,
            power=power,
        )
        if shed:  # the strike: idle and the active reserved contracts only
            options = tuple(o for o in options if _kept_when_shedding(o.workload, active))
        return options

    site = settings.site_power
    for gpu in fleet:
        override = overrides.get(gpu.key)
        if override is not None and override.until_s is not None and override.until_s <= now_s:
            override = None
        lock = ""
        if not gpu.online:
            lock = "offline"
        elif not gpu.healthy:
            lock = "unhealthy"
        elif override is not None:
            lock = "override"
        if lock:
            workload = (
                override.workload if lock == "override" and override else gpu.current_workload
            )
            options = options_of(gpu, only_current=False)
            option = next((o for o in options if o.workload == workload), None)
            board_w = _fixed_board_w(gpu, option, options)
            wall_w = site.gpu_wall_w(board_w, node_of(gpu.key))
            fixed.append(
                _Fixed(
                    gpu,
                    lock,
                    workload,
                    option,
                    override if lock == "override" else None,
                    board_w,
                    wall_w,
                )
            )
            continue
        dwell = _dwell_left_s(gpu, settings, now_s) > 0
        current = gpu.current_workload
        own, other = _measured_keys(gpu, current, profiles_by_id)
        wall = site.wall_factor(node_of(gpu.key)) if site.nodes else 1.0
        group_key: tuple[object, ...] = (
            gpu.model,
            gpu.memory_total_bytes,
            current,
            dwell,
            other,
            wall,
            gpu.power_limit_w,
        )
        if per_class_margin:  # the margin depends on the stay value: no sharing
            group_key += (own,)
        key = (*group_key, own)
        cls = by_key.get(key)
        if cls is None:
            group = groups.get(group_key)
            if group is None:
                group = groups[group_key] = (
                    len(groups),
                    options_of(gpu, only_current=False, shed=shedding),
                )
            cls = by_key[key] = _new_class(
                gpu, group, market, profiles_by_id, dwell=dwell, settings=settings, power=power
            )
        cls.members.append(gpu)
    return list(by_key.values()), fixed


def _kept_when_shedding(workload: str, active: frozenset[str]) -> bool:
    return workload == IDLE or ai_contract_of(workload) in active


def _measured_keys(
    gpu: GpuState, current: str | None, profiles_by_id: Mapping[str, MiningProfile]
) -> tuple[tuple[tuple[str, float, float], ...], tuple[tuple[str, float, float], ...]]:
    """Bucketed measurements: (on the current profile, on the others)."""
    if not gpu.measured:
        return (), ()
    # per GPU: a prefix test on the plain string, no `Workload` object (50k-GPU plans)
    current_profile = (
        current[len(MINE_PREFIX) :] if current and current.startswith(MINE_PREFIX) else None
    )
    own: list[tuple[str, float, float]] = []
    other: list[tuple[str, float, float]] = []
    for profile_id in sorted(gpu.measured):
        profile = profiles_by_id.get(profile_id)
        if profile is None:
            continue
        # what the economics makes of the measurement (blended, accepted share, bucketed)
        rate = mining_rate(gpu, profile)
        if rate is None:  # not reached: a measured profile always has a rate
            continue
        entry = (profile_id, rate.hashrate_hs, rate.power_w)
        (own if profile_id == current_profile else other).append(entry)
    return tuple(own), tuple(other)


def _new_class(
    gpu: GpuState,
    group: tuple[int, tuple[Option, ...]],
    market: Market,
    profiles_by_id: Mapping[str, MiningProfile],
    *,
    dwell: bool,
    settings: PlannerSettings,
    power: PowerTable,
) -> _Class:
    """The first GPU of a class: the group's options with this GPU's own stay option."""
    options = group[1]
    stay_at = next((i for i, o in enumerate(options) if o.is_stay), None)
    if stay_at is None:
        return _Class(options, "free", group[0])
    stay = options[stay_at]
    workload = Workload.parse(stay.workload)  # once per class, not per GPU
    profile = profiles_by_id.get(workload.name) if workload.kind is WorkloadKind.MINING else None
    if profile is not None:
        stay = measured_stay(stay, gpu, profile, market, settings=settings, power=power)
        options = (*options[:stay_at], stay, *options[stay_at + 1 :])
    lock = "free"
    if dwell:
        lock = "dwell"
    elif not stay.price_known:
        lock = "no-price"
    return _Class(options, lock, group[0])


_WINDOW_GAP_LIMIT_S = 7 * 86_400.0  # a week: every weekly window has an edge within it


def damped_settings(
    settings: PlannerSettings, contracts: Contracts, now_s: float
) -> PlannerSettings:
    """`settings` with the margin spread until the next reserved-window edge, if asked.

    The margin is a rate judged over `horizon_s`. When every reserved contract's activity
    stays as it is for T > horizon_s (its next window opens, less the lead time, or
    closes only then), a change made now holds at least that long as far as the contracts
    go, so the margin becomes margin x horizon_s / T: the same total over a longer time.
    Without windowed contracts, or with an edge within the horizon, nothing changes.
    """
    if not settings.hysteresis_until_next_window:
        return settings
    edges = [c.next_change_s(now_s, _WINDOW_GAP_LIMIT_S) for c in contracts.reserved]
    found = [e for e in edges if e is not None]
    if not found:
        return settings
    gap_s = min(found) - now_s
    if gap_s <= settings.horizon_s:
        return settings
    margin = settings.hysteresis_margin_usd_per_gpu_hour * settings.horizon_s / gap_s
    return replace(settings, hysteresis_margin_usd_per_gpu_hour=margin)


def plan(
    fleet: Sequence[GpuState],
    market: Market,
    *,
    contracts: Contracts,
    profiles: Sequence[MiningProfile],
    overrides: Mapping[str, Override],
    settings: PlannerSettings,
    now_s: float,
    power: PowerTable = NO_LEARNING,
) -> Plan:
    """The optimal assignment of every GPU in `fleet` at `now_s` (see the module docstring).

    `power` is what the fleet has learnt of each GPU model's board power per workload;
    without it the configured priors price power.
    """
    active = frozenset(c.id for c in contracts.reserved if c.active(now_s))
    terms = _contract_terms(contracts, active)
    settings = damped_settings(settings, contracts, now_s)
    shedding = strike_applies(settings, market.power_price_usd_per_kwh)
    classes, fixed = _classify(
        fleet,
        market=market,
        contracts=contracts,
        profiles=profiles,
        overrides=overrides,
        settings=settings,
        now_s=now_s,
        active=active,
        shedding=shedding,
        power=power,
    )
    problems: list[str] = []

    fixed_counts: dict[str, int] = {}
    # the hosts draw whatever their GPUs do: a constant in the cap and in the cost
    host_power_w = settings.site_power.hosts_wall_w({node_of(g.key) for g in fleet})
    fixed_power_w = host_power_w
    for f in fixed:
        fixed_power_w += f.power_w
        if f.lock == "override" and f.option is not None and f.option.paid_by is not None:
            fixed_counts[f.option.paid_by] = fixed_counts.get(f.option.paid_by, 0) + 1

    power_cap_w: float | None = None
    power_budget_w: float | None = None
    if settings.site_power_cap_kw is not None:
        power_cap_w = settings.site_power_cap_kw * 1000.0
        lowest_w = fixed_power_w + sum(
            len(k.members) * min(o.power_w for o in k.options) for k in classes
        )
        if lowest_w > power_cap_w + _FEASIBILITY_W:
            problems.append(
                f"site power cap {power_cap_w / 1000:.1f} kW is below the lowest possible draw "
                f"{lowest_w / 1000:.1f} kW; planning at {lowest_w / 1000:.1f} kW"
            )
            power_cap_w = lowest_w
        power_budget_w = power_cap_w - fixed_power_w

    mix_margin = 0.0
    if settings.hysteresis_scope == "fleet":
        mix_margin = settings.hysteresis_margin_usd_per_gpu_hour
    problem = _Problem(classes, terms, fixed_counts, power_budget_w, mix_margin)
    problem.time_limit_s = settings.solver_time_limit_s
    hard = not settings.allow_sla_shortfall
    counts = problem.solve(pin_soft=True, pin_sla=hard, hard_sla=hard)
    if counts is None:
        soft_total = sum(len(k.members) for k in classes if k.lock != "free")
        weight = float(soft_total + 1)
        tiers = problem.solve(
            pin_soft=False, pin_sla=False, hard_sla=hard, lexicographic_weight=weight
        )
        if tiers is None:
            raise PlanningError("no assignment satisfies even the relaxed constraints")
        served = _served(problem, tiers)
        kept = sum(
            tiers[i][k.stay_index]
            for i, k in enumerate(classes)
            if k.lock != "free" and k.stay_index is not None
        )
        counts = problem.solve(
            pin_soft=False,
            pin_sla=False,
            hard_sla=hard,
            min_served=float(served) if hard else None,
            min_stays=float(kept),
        )
        if counts is None:
            raise PlanningError("the profit tier lost feasibility")
    if problem.unproven_gap is not None:
        problems.append(
            f"the solver stopped at its {settings.solver_time_limit_s:g} s limit: the plan is "
            "feasible but not proven optimal "
            f"(relative gap to the bound {problem.unproven_gap:.1e})"
        )
    totals = _totals(
        classes,
        fixed=fixed,
        counts=counts,
        terms=terms,
        contracts=contracts,
        active=active,
        settings=settings,
        problems=problems,
    )
    host_cost_usd_per_hour = power_cost_usd_per_hour(host_power_w, market.power_price_usd_per_kwh)
    ctx = ReasonContext(
        contracts={
            c: ContractFacts(t.committed, t.paid_cap, totals.assigned.get(c, 0))
            for c, t in terms.items()
        },
        power_cap_w=power_cap_w,
        total_power_w=fixed_power_w + totals.power_w,
        min_dwell_s=settings.min_dwell_s,
        display_timezone=settings.display_timezone,
        now_s=now_s,
        power_cap_reason=settings.power_cap_reason,
        shed_text=strike_text(settings, market.power_price_usd_per_kwh) if shedding else "",
        mix_margin_usd_per_hour=mix_margin,
    )
    by_key, switches, dwell_breaks = _disaggregate(
        classes, fixed=fixed, counts=counts, ctx=ctx, settings=settings, now_s=now_s
    )
    return Plan(
        assignments={g.key: by_key[g.key] for g in fleet},
        objective_usd_per_hour=totals.objective_usd_per_hour - host_cost_usd_per_hour,
        net_usd_per_hour=totals.net_usd_per_hour - host_cost_usd_per_hour,
        total_power_w=fixed_power_w + totals.power_w,
        power_cap_w=power_cap_w,
        sla=totals.sla,
        switches=switches,
        dwell_breaks=dwell_breaks,
        problems=tuple(problems),
        power_cap_reason=settings.power_cap_reason if power_cap_w is not None else "",
        shed_by_strike=shedding,
        board_power_w=sum(f.board_w for f in fixed) + totals.board_w,
        host_power_w=host_power_w,
    )


def _served(problem: _Problem, counts: list[list[int]]) -> int:
    """GPUs counted toward active reserved commitments (at most the commitment each)."""
    assigned = _assigned(problem.classes, counts, problem.fixed_counts)
    return sum(
        min(assigned.get(c, 0), t.committed) for c, t in problem.terms.items() if t.committed
    )


def _assigned(
    classes: list[_Class], counts: list[list[int]], fixed_counts: dict[str, int]
) -> dict[str, int]:
    assigned = dict(fixed_counts)
    for cls, row in zip(classes, counts, strict=True):
        for option, n in zip(cls.options, row, strict=True):
            if n and option.paid_by is not None:
                assigned[option.paid_by] = assigned.get(option.paid_by, 0) + n
    return assigned


@dataclass(frozen=True, slots=True)
class _Totals:
    objective_usd_per_hour: float
    net_usd_per_hour: float
    power_w: float  # of the GPUs the planner placed (not the fixed ones), at the wall
    board_w: float  # the same on the boards
    assigned: dict[str, int]
    sla: tuple[SlaStatus, ...]


def _totals(
    classes: list[_Class],
    *,
    fixed: list[_Fixed],
    counts: list[list[int]],
    terms: dict[str, _ContractTerms],
    contracts: Contracts,
    active: frozenset[str],
    settings: PlannerSettings,
    problems: list[str],
) -> _Totals:
    """The objective recomputed exactly from integer counts, and each contract's SLA."""
    fixed_counts: dict[str, int] = {}
    objective = net = power_w = board_w = 0.0
    for f in fixed:
        if f.lock != "override" or f.option is None:
            continue  # offline and unhealthy GPUs earn nothing the plan can count on
        own = 0.0 if f.option.paid_by is not None else f.option.revenue_usd_per_hour
        objective += own - f.option.power_cost_usd_per_hour
        net += own - f.option.power_cost_usd_per_hour
        if f.option.paid_by is not None:
            fixed_counts[f.option.paid_by] = fixed_counts.get(f.option.paid_by, 0) + 1
    assigned = _assigned(classes, counts, fixed_counts)
    for cls, row in zip(classes, counts, strict=True):
        for option, n in zip(cls.options, row, strict=True):
            objective += n * option.own_score_usd_per_hour
            own = 0.0 if option.paid_by is not None else option.revenue_usd_per_hour
            net += n * (own - option.power_cost_usd_per_hour)
            power_w += n * option.power_w
            board_w += n * _board(option)
    for contract_id, t in terms.items():
        x = assigned.get(contract_id, 0)
        paid = t.paid_usd_per_gpu_hour * min(x, t.paid_cap)
        penalty = t.penalty_usd_per_gpu_hour * max(0.0, t.target - x)
        objective += paid - penalty
        net += paid - penalty
    if settings.hysteresis_scope == "fleet":
        objective -= settings.hysteresis_margin_usd_per_gpu_hour * mix_change(classes, counts)
    sla: list[SlaStatus] = []
    for reserved in contracts.reserved:
        t = terms[reserved.id]
        x = assigned.get(reserved.id, 0)
        shortfall = max(0, t.committed - x)
        penalty = t.penalty_usd_per_gpu_hour * max(0.0, t.target - x)
        sla.append(
            SlaStatus(
                reserved.id,
                reserved.id in active,
                reserved.committed_gpus,
                x,
                shortfall,
                penalty,
                required_gpus=t.committed,
            )
        )
        if shortfall:
            why = (
                "allowed by config"
                if settings.allow_sla_shortfall
                else "not enough eligible healthy online GPUs"
            )
            problems.append(
                f"SLA {reserved.id}: {x} of {t.committed} required GPUs assigned "
                f"({reserved.committed_gpus} committed at a "
                f"{reserved.availability_target_fraction:.4g} availability target), shortfall "
                f"{shortfall} ({why}), penalty {penalty:.2f} $/h"
            )
    return _Totals(objective, net, power_w, board_w, assigned, tuple(sla))


def _disaggregate(
    classes: list[_Class],
    *,
    fixed: list[_Fixed],
    counts: list[list[int]],
    ctx: ReasonContext,
    settings: PlannerSettings,
    now_s: float,
) -> tuple[dict[str, Assignment], int, int]:
    """Per-GPU assignments from class counts: stable order, stayers first."""
    by_key: dict[str, Assignment] = {}
    for f in fixed:
        table = candidate_table((f.option,)) if f.option is not None else ()
        previous = f.gpu.current_workload
        reason = fixed_reason(f.lock, f.override, ctx)
        by_key[f.gpu.key] = Assignment(
            f.gpu.key, f.workload, previous, f.workload != previous, reason, f.lock, table
        )
    switches = dwell_breaks = 0
    rows_by_option: dict[int, CandidateValue] = {}  # options are shared within a group
    for cls, row in zip(classes, counts, strict=True):
        table = candidate_table(cls.options, rows_by_option)
        stay = cls.stay_index
        members = sorted(cls.members, key=lambda g: g.key)
        if cls.lock == "dwell":  # the most recently switched stay; the nearly free ones move
            members.sort(key=lambda g: -(g.since_s or 0.0))
        order = ([stay] if stay is not None else []) + [j for j in range(len(row)) if j != stay]
        shared: dict[int, str] = {}
        position = 0
        for j in order:
            option = cls.options[j]
            for gpu in members[position : position + row[j]]:
                if ctx.shed_text and ai_contract_of(option.workload) is None:
                    verb = "held" if option.is_stay else f"switch to {option.workload}"
                    reason = f"{verb}: {ctx.shed_text}"
                elif cls.lock == "dwell":
                    left_s = _dwell_left_s(gpu, settings, now_s)
                    reason = gpu_reason(cls.options, j, cls.lock, left_s, ctx)
                elif j in shared:
                    reason = shared[j]
                else:
                    reason = shared[j] = gpu_reason(cls.options, j, cls.lock, 0.0, ctx)
                changed = not option.is_stay
                switches += changed
                dwell_breaks += changed and cls.lock != "free"
                by_key[gpu.key] = Assignment(
                    gpu.key, option.workload, gpu.current_workload, changed, reason, cls.lock, table
                )
            position += row[j]
    return by_key, switches, dwell_breaks
