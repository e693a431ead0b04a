"""Parameter sweeps: how margin, dwell and horizon trade revenue against switching.

A sweep replays the live policy once per point of a grid (the product of the values
given for each parameter; a parameter not swept keeps its configured value) over the
same scenario, so the only thing that changes between rows is the planner's settings.
Each row gives net revenue, switches and SLA availability: the evidence an operator
needs to pick how eager the planner should be.

Parameters: `margin` (hysteresis_margin_usd_per_gpu_hour, US$/GPU-hour), `dwell`
(min_dwell_s, seconds) and `horizon` (horizon_s, seconds). On the command line a spec
reads `margin=0,0.02,0.1`; durations take the same suffixes as `--step` (`dwell=0,1h`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from orchestrator.backtest.engine import Scenario, run_strategy
from orchestrator.backtest.strategies import LivePolicy

PARAMETERS = {
    "margin": "hysteresis_margin_usd_per_gpu_hour",
    "dwell": "min_dwell_s",
    "horizon": "horizon_s",
}
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def parse_duration_s(text: str) -> float:
    """`90`, `90s`, `15m`, `1h`, `1d` -> seconds (a bare number is seconds)."""
    text = text.strip().lower()
    unit = _SECONDS.get(text[-1:]) if text else None
    number = text[:-1] if unit is not None else text
    try:
        value = float(number) * (unit or 1.0)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (e.g. 3600, 15m, 1h, 1d)") from None
    if value < 0:
        raise ValueError(f"duration {text!r} is negative")
    return value


def parse_sweep(specs: Sequence[str]) -> dict[str, list[float]]:
    """`["margin=0,0.05", "dwell=0,1h"]` -> {"margin": [0.0, 0.05], "dwell": [0.0, 3600.0]}."""
    grid: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or name not in PARAMETERS:
            raise ValueError(
                f"sweep {spec!r}: expected NAME=V1,V2,... with NAME one of {', '.join(PARAMETERS)}"
            )
        parsed = []
        for text in values.split(","):
            if name == "margin":
                try:
                    value = float(text)
                except ValueError:
                    raise ValueError(f"sweep {spec!r}: {text!r} is not a number") from None
                if value < 0:
                    raise ValueError(f"sweep {spec!r}: {text!r} is negative")
            else:
                value = parse_duration_s(text)
                if name == "horizon" and value <= 0:
                    raise ValueError(f"sweep {spec!r}: the horizon must be positive")
            parsed.append(value)
        grid[name] = parsed
    return grid


def run_sweep(scenario: Scenario, grid: Mapping[str, Sequence[float]]) -> list[dict[str, Any]]:
    """One live-policy replay per grid point, in grid order."""
    base = scenario.policy.settings
    names = list(grid)
    rows = []
    for point in itertools.product(*(grid[n] for n in names)):
        values = dict(zip(names, point, strict=True))
        settings = replace(
            base,
            hysteresis_margin_usd_per_gpu_hour=values.get(
                "margin", base.hysteresis_margin_usd_per_gpu_hour
            ),
            min_dwell_s=values.get("dwell", base.min_dwell_s),
            horizon_s=values.get("horizon", base.horizon_s),
        )
        result = run_strategy(scenario, LivePolicy(settings, name="live policy"))
        rows.append(
            {
                "margin_usd_per_gpu_hour": settings.hysteresis_margin_usd_per_gpu_hour,
                "min_dwell_s": settings.min_dwell_s,
                "horizon_s": settings.horizon_s,
                "net_revenue_usd": round(result.net_revenue_usd, 2),
                "switches": result.switches,
                "switches_per_gpu_day": round(result.switches_per_gpu_day, 4),
                "sla_availability_fraction": result.sla_availability(),
            }
        )
    return rows


def format_sweep(rows: Sequence[Mapping[str, Any]]) -> str:
    header = ("margin $/GPU-h", "dwell s", "horizon s", "net US$", "switches", "sw/GPU/day", "SLA")
    table = [header] + [
        (
            f"{r['margin_usd_per_gpu_hour']:g}",
            f"{r['min_dwell_s']:g}",
            f"{r['horizon_s']:g}",
            f"{r['net_revenue_usd']:,.0f}",
            str(r["switches"]),
            f"{r['switches_per_gpu_day']:.3f}",
            "n/a"
            if r["sla_availability_fraction"] is None
            else f"{r['sla_availability_fraction']:.2%}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"
