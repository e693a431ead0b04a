"""Readable reasons and candidate tables for the planner's decisions.

The planner decides by solving a MILP; a person wants one line per GPU: "held: SLA acme
needs 16, has 16", "switch to mine:kawpow: +$0.41/h over ai:spot after switch cost",
"fixed: node offline". This module writes those lines from what the plan already knows
(each GPU's priced options, the chosen one, its lock, and fleet-wide facts such as a
contract that is full or a power cap that binds). It never changes a decision.

Reasons are worded from the GPU's point of view: if the chosen option is also the GPU's
best on its own, the reason is the money; otherwise it names the fleet-wide constraint
that made the difference (an SLA, a full contract, the power cap).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from orchestrator.domain import ai_contract_of
from orchestrator.policy.economics import Option
from orchestrator.policy.model import CandidateValue, Override

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class ContractFacts:
    committed: int  # active reserved commitment, else 0
    paid_cap: float  # GPUs paid for at most (inf: no ceiling)
    assigned: int


@dataclass(frozen=True, slots=True)
class ReasonContext:
    contracts: dict[str, ContractFacts]
    power_cap_w: float | None
    total_power_w: float
    min_dwell_s: float
    display_timezone: str
    now_s: float
    power_cap_reason: str = ""  # what lowered the cap ("curtailment window <id> (cap X kW)")
    shed_text: str = ""  # the strike's reason while it sheds, else ""
    mix_margin_usd_per_hour: float = 0.0  # the margin on the fleet's mix ("fleet" scope)


def usd(value: float) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):.2f}/h"


def candidate_row(option: Option) -> CandidateValue:
    notes = []
    if option.is_stay:
        notes.append("current")
    if not option.price_known:
        notes.append("no valid price")
    if option.margin_usd_per_hour:
        notes.append(f"switch must beat staying by {usd(option.margin_usd_per_hour)}")
    return CandidateValue(
        option.workload,
        option.net_usd_per_hour,
        option.power_w,
        "; ".join(notes),
        board_w=option.board_w,
        power_source=option.power_source,
        power_samples=option.power_samples,
    )


def candidate_table(
    options: tuple[Option, ...], rows_by_option: dict[int, CandidateValue] | None = None
) -> tuple[CandidateValue, ...]:
    """Each option's net $/h (after switch cost), best first, ties in option order.

    `rows_by_option` caches rows by option identity across GPUs that share option objects.
    """
    cache = {} if rows_by_option is None else rows_by_option
    rows = []
    for option in options:
        row = cache.get(id(option))
        if row is None:
            row = cache[id(option)] = candidate_row(option)
        rows.append(row)
    return tuple(sorted(rows, key=_best_first))


def _best_first(row: CandidateValue) -> float:
    return -row.net_usd_per_hour


def fixed_reason(lock: str, override: Override | None, ctx: ReasonContext) -> str:
    if lock == "offline":
        return "fixed: node offline"
    if lock == "unhealthy":
        return "fixed: GPU unhealthy"
    if override is None:
        return f"fixed: {lock}"
    text = f"fixed: override by {override.by}"
    if override.until_s is not None:
        until = datetime.fromtimestamp(override.until_s, tz=ZoneInfo(ctx.display_timezone))
        shown = "%H:%M" if override.until_s - ctx.now_s < SECONDS_PER_DAY else "%Y-%m-%d %H:%M"
        text += f" until {until.strftime(shown)}"
    if override.note:
        text += f" ({override.note})"
    return text


def _sla_text(contract_id: str | None, ctx: ReasonContext) -> str | None:
    """The SLA that holds a GPU on `contract_id` (None: not a contract, or none binds)."""
    if contract_id is None:
        return None
    facts = ctx.contracts.get(contract_id)
    if facts is None or not facts.committed:
        return None
    return f"SLA {contract_id} needs {facts.committed}, has {facts.assigned}"


def _constraint_text(best: Option, chosen: Option, ctx: ReasonContext) -> str:
    """Why the GPU's own best option was not taken."""
    if best.paid_by is not None:
        facts = ctx.contracts.get(best.paid_by)
        if facts is not None and facts.assigned >= facts.paid_cap:
            return f"{best.workload} is full ({facts.assigned} GPUs paid)"
    if ctx.power_cap_w is not None and best.power_w > chosen.power_w:
        headroom_w = ctx.power_cap_w - ctx.total_power_w
        if headroom_w < best.power_w - chosen.power_w:
            if ctx.power_cap_reason:
                return f"shed for {ctx.power_cap_reason}"
            return f"site power cap {ctx.power_cap_w / 1000:.1f} kW reached"
    gain = best.net_usd_per_hour - chosen.net_usd_per_hour
    if chosen.is_stay and 0 < gain <= ctx.mix_margin_usd_per_hour + 1e-9:
        return (
            f"{best.workload} would add {usd(gain)} after switch cost, below the "
            f"{usd(ctx.mix_margin_usd_per_hour)} margin on the fleet's mix"
        )
    return f"{best.workload} pays more here but less for the site as a whole"


def gpu_reason(
    options: tuple[Option, ...],
    chosen_index: int,
    lock: str,
    dwell_left_s: float,
    ctx: ReasonContext,
) -> str:
    """One line for a GPU the planner was free (or soft-locked) to move."""
    chosen = options[chosen_index]
    stay = next((o for o in options if o.is_stay), None)
    verb = "held" if chosen.is_stay else f"switch to {chosen.workload}"
    if stay is not None and lock in ("dwell", "no-price"):
        lock_text = (
            f"min dwell {ctx.min_dwell_s:.0f} s, {dwell_left_s:.0f} s left"
            if lock == "dwell"
            else f"no valid price for {stay.workload}"
        )
        if chosen.is_stay:
            return f"held: {lock_text}"
        why = _sla_text(ai_contract_of(chosen.workload), ctx)
        if why is None:
            why = _constraint_text(stay, chosen, ctx)
        return f"{verb}: {why} (overrides {lock_text})"
    sla = _sla_text(ai_contract_of(chosen.workload), ctx)
    if sla is not None:
        return f"{verb}: {sla}"
    best = max(options, key=lambda o: o.score_usd_per_hour)
    if best.score_usd_per_hour > chosen.score_usd_per_hour + 1e-9:
        return f"{verb}: {_constraint_text(best, chosen, ctx)}"
    others = [o for o in options if o is not chosen]
    if not others:
        return f"{verb}: the only option"
    runner_up = max(others, key=lambda o: o.net_usd_per_hour)
    if chosen.is_stay:
        gain = runner_up.net_usd_per_hour - chosen.net_usd_per_hour
        if gain > 0:
            return (
                f"held: {runner_up.workload} would add {usd(gain)} after switch cost, "
                f"below the {usd(runner_up.margin_usd_per_hour)} margin"
            )
        return (
            f"held: best at {usd(chosen.net_usd_per_hour)}, "
            f"next {runner_up.workload} {usd(runner_up.net_usd_per_hour)}"
        )
    if stay is not None:
        gain = chosen.net_usd_per_hour - stay.net_usd_per_hour
        return f"{verb}: +{usd(gain)} over {stay.workload} after switch cost"
    return (
        f"start {chosen.workload}: best at {usd(chosen.net_usd_per_hour)}, "
        f"next {runner_up.workload} {usd(runner_up.net_usd_per_hour)}"
    )
