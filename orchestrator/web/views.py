"""JSON views of the newest plan: the plan summary, one GPU's explanation, the contracts.

Pure functions from a `PlanRecord` (or the policy) to plain dicts, shared by the HTTP API
and tests.
An explanation lists every candidate the planner priced for the GPU with its net $/h,
the choice, whether it changes anything, and the reason in words. Power is shown twice:
`board_w` (what NVML reads) and `wall_w` (what the site pays and the cap counts: over the
node's PSU efficiency, times the PUE), with the board figure's provenance (`power_source`:
measured, benchmark, config, default; `power_samples`: readings behind a measurement).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.central.reader import PlanRecord, ServeReader
from orchestrator.central.store import CommandRecord
from orchestrator.markets import Quote
from orchestrator.policy.model import CandidateValue, Contracts
from orchestrator.policy.power import PowerTable


def _quote(quote: Quote) -> dict[str, Any]:
    view: dict[str, Any] = {
        "value": quote.value,
        "source": quote.provenance.source,
        "fetched_at_s": quote.provenance.fetched_at_s,
        "expires_at_s": quote.expires_at_s,
    }
    if quote.provenance.usd_per_btc is not None:
        view["btc_price"] = {
            "usd_per_btc": quote.provenance.usd_per_btc,
            "static": quote.provenance.btc_price_static,
            "valid_until_s": quote.provenance.valid_until_s,
        }
    return view


def market_warnings(quotes: Mapping[str, Quote]) -> list[str]:
    """What an operator should know about the prices a plan used, in words."""
    return [
        f"{key} ({quote.source}) is converted with a static BTC price "
        f"({quote.provenance.usd_per_btc:g} US$/BTC) that never goes stale: it drifts as BTC "
        "moves"
        for key, quote in sorted(quotes.items())
        if quote.provenance.btc_price_static
    ]


def market_json(record: PlanRecord) -> dict[str, Any]:
    snapshot = record.snapshot
    return {
        "power_usd_per_kwh": record.market.power_price_usd_per_kwh,
        "hashprice_usd_per_hs_day": dict(sorted(record.market.hashprice_usd_per_hs_day.items())),
        "quotes": {key: _quote(q) for key, q in sorted(snapshot.quotes.items())},
        "stale": sorted(snapshot.stale_keys),
        "warnings": market_warnings(snapshot.quotes),
    }


def plan_json(
    record: PlanRecord, commands: list[CommandRecord], wave: dict[str, object] | None = None
) -> dict[str, Any]:
    plan = record.plan
    return {
        "generation": record.generation,
        "trigger": record.trigger,
        "planned_at_s": record.planned_at_s,
        "duration_s": round(record.duration_s, 6),
        "net_usd_per_hour": round(plan.net_usd_per_hour, 4),
        "objective_usd_per_hour": round(plan.objective_usd_per_hour, 4),
        "total_power_w": round(plan.total_power_w, 1),
        "board_power_w": round(plan.board_power_w, 1),
        "host_power_w": round(plan.host_power_w, 1),
        "power_cap_w": plan.power_cap_w,
        "power_cap_reason": plan.power_cap_reason,
        "curtailment": _curtailment(record),
        "shed_by_strike": plan.shed_by_strike,
        "switches": plan.switches,
        "sla": [
            {
                "contract": s.contract_id,
                "active": s.active,
                "committed_gpus": s.committed_gpus,
                "required_gpus": s.required_gpus,
                "assigned_gpus": s.assigned_gpus,
                "shortfall_gpus": s.shortfall_gpus,
                "penalty_usd_per_hour": s.penalty_usd_per_hour,
            }
            for s in plan.sla
        ],
        "problems": list(record.problems),
        "market": market_json(record),
        "power_model": power_model_json(record.power),
        "recent_commands": [c.to_json() for c in commands],
        "wave": wave,
    }


def _curtailment(record: PlanRecord) -> dict[str, Any] | None:
    """The curtailment window whose cap the plan held, if any."""
    w = record.curtailment
    if w is None:
        return None
    return {
        "id": w.id,
        "cap_kw": w.cap_kw,
        "start_s": w.start_s,
        "end_s": w.end_s,
        "reason": w.reason,
        "source": w.source,
    }


def power_model_json(table: PowerTable) -> list[dict[str, Any]]:
    """What the fleet has learnt of board power, per GPU model and workload."""
    rows = []
    for (model, workload), learnt in sorted(table.learnt.items()):
        slope = learnt.slope_w_per_pct
        rows.append(
            {
                "model": model,
                "workload": workload,
                "board_w": round(learnt.mean_w, 1),
                "samples": learnt.samples,
                "mean_utilisation_pct": (
                    None if learnt.mean_u_pct is None else round(learnt.mean_u_pct, 1)
                ),
                "w_per_utilisation_pct": None if slope is None else round(slope, 3),
            }
        )
    return rows


def _candidate_json(c: CandidateValue, chosen: bool) -> dict[str, Any]:
    board_w = c.power_w if c.board_w is None else c.board_w
    return {
        "workload": c.workload,
        "net_usd_per_hour": round(c.net_usd_per_hour, 4),
        "power_w": round(c.power_w, 1),
        "board_w": round(board_w, 1),
        "wall_w": round(c.power_w, 1),
        "power_source": c.power_source,
        "power_samples": c.power_samples,
        "note": c.note,
        "chosen": chosen,
    }


def explain_json(record: PlanRecord, key: str) -> dict[str, Any] | None:
    assignment = record.plan.assignments.get(key)
    if assignment is None:
        return None
    gpu = record.gpus.get(key)
    return {
        "gpu": key,
        "uuid": gpu.uuid if gpu else None,
        "model": gpu.model if gpu else None,
        "generation": record.generation,
        "planned_at_s": record.planned_at_s,
        "current": assignment.previous,
        "choice": assignment.workload,
        "changed": assignment.changed,
        "lock": assignment.lock,
        "reason": assignment.reason,
        "curtailment": _curtailment(record),
        "shed_by_strike": record.plan.shed_by_strike,
        "candidates": [
            _candidate_json(c, c.workload == assignment.workload) for c in assignment.candidates
        ],
        "power": _gpu_power_json(record, key),
        "market": market_json(record),
    }


def _gpu_power_json(record: PlanRecord, key: str) -> dict[str, Any]:
    """The GPU's latest reading and limit, and what its planned workload draws."""
    gpu = record.gpus.get(key)
    assignment = record.plan.assignments[key]
    chosen = next((c for c in assignment.candidates if c.workload == assignment.workload), None)
    planned: dict[str, Any] | None = None
    if chosen is not None:
        row = _candidate_json(chosen, chosen=True)
        planned = {k: row[k] for k in ("board_w", "wall_w", "power_source", "power_samples")}
    return {
        "reading_w": gpu.power_draw_w if gpu else None,
        "limit_w": gpu.power_limit_w if gpu else None,
        "planned": planned,
    }


def contracts_json(contracts: Contracts) -> list[dict[str, Any]]:
    """The contracts as configured: what each pays and, if reserved, what it commits."""
    reserved = [
        {
            "contract": c.id,
            "kind": "reserved",
            "rate_usd_per_gpu_hour": c.rate_usd_per_gpu_hour,
            "committed_gpus": c.committed_gpus,
            "availability_target_fraction": c.availability_target_fraction,
            "penalty_usd_per_gpu_hour": c.penalty_usd_per_gpu_hour,
            "always": c.windows is None,
        }
        for c in contracts.reserved
    ]
    on_demand = [
        {
            "contract": c.id,
            "kind": "on_demand",
            "rate_usd_per_gpu_hour": c.rate_usd_per_gpu_hour,
            "expected_utilisation_fraction": c.expected_utilisation_fraction,
            "max_gpus": c.max_gpus,
        }
        for c in contracts.on_demand
    ]
    return reserved + on_demand


def lifecycle_json(reader: ServeReader, key: str) -> dict[str, Any]:
    """GPU `key`'s lifecycle: what the plan wants, the switch in flight, the last switch's
    end as the agent told it (a rollback shows here as a failure), and any cool-down."""
    line = reader.line(key)
    command = line.command
    fact = line.fact
    last: dict[str, Any] | None = None
    if fact is not None:
        ended = reader.ended_command(fact.command_id)
        last = {
            **fact.to_json(),
            "failed": fact.state.failure,
            "target": ended.workload if ended is not None else None,
            "outcome": ended.outcome if ended is not None else "",
        }
    cooldown = None
    if last is not None and last["failed"] and last["target"] is not None:
        cooldown = reader.cooldown_until(key, last["target"])
    return {
        "desired": line.desired,
        "in_flight": command.to_json() if command is not None else None,
        "held": line.held.to_json() if line.held is not None else None,
        "last_switch": last,
        "cooldown_until_s": cooldown,
    }
