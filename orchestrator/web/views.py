"""JSON views of the newest plan: the plan summary, one GPU's explanation, the contracts.

Pure functions from a `PlanRecord` (or the policy) to plain dicts, shared by the HTTP API
and tests.
An explanation lists every candidate the planner priced for the GPU with its net $/h,
the choice, whether it changes anything, and the reason in words.
"""

from __future__ import annotations

from typing import Any

from orchestrator.central.reader import PlanRecord, ServeReader
from orchestrator.central.store import CommandRecord
from orchestrator.markets import Quote
from orchestrator.policy.model import Contracts


def _quote(quote: Quote) -> dict[str, Any]:
    return {
        "value": quote.value,
        "source": quote.provenance.source,
        "fetched_at_s": quote.provenance.fetched_at_s,
    }


def market_json(record: PlanRecord) -> dict[str, Any]:
    snapshot = record.snapshot
    return {
        "power_usd_per_kwh": record.market.power_price_usd_per_kwh,
        "hashprice_usd_per_hs_day": dict(sorted(record.market.hashprice_usd_per_hs_day.items())),
        "quotes": {key: _quote(q) for key, q in sorted(snapshot.quotes.items())},
        "stale": sorted(snapshot.stale_keys),
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
        "power_cap_w": plan.power_cap_w,
        "switches": plan.switches,
        "sla": [
            {
                "contract": s.contract_id,
                "active": s.active,
                "committed_gpus": s.committed_gpus,
                "assigned_gpus": s.assigned_gpus,
                "shortfall_gpus": s.shortfall_gpus,
                "penalty_usd_per_hour": s.penalty_usd_per_hour,
            }
            for s in plan.sla
        ],
        "problems": list(record.problems),
        "market": market_json(record),
        "recent_commands": [c.to_json() for c in commands],
        "wave": wave,
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
        "candidates": [
            {
                "workload": c.workload,
                "net_usd_per_hour": round(c.net_usd_per_hour, 4),
                "power_w": round(c.power_w, 1),
                "note": c.note,
                "chosen": c.workload == assignment.workload,
            }
            for c in assignment.candidates
        ],
        "market": market_json(record),
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
        ended = next(
            (c for c in reader.recent_commands(1000) if c.command_id == fact.command_id), None
        )
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
