"""What a backtest says: a text table, a JSON document and an SVG chart.

All three are built from the same `StrategyResult`s, so they never disagree. The table is
for a terminal; the JSON (keys below, money in US$) is for notebooks and CI; the SVG is
written by hand (no plotting dependency) and has two panels: cumulative net revenue over
time per strategy, and the live policy's GPUs by workload over time (stacked).

JSON: {"period": {"from", "to", "step_s", "steps", "days"}, "fleet": [{"model", "count",
"memory_gib"}], "strategies": [{"name", "net_revenue_usd", "revenue_usd",
"mining_revenue_usd", "ai_revenue_usd", "power_cost_usd", "penalties_usd",
"switch_cost_usd", "switches", "switches_per_gpu_day", "sla_availability_fraction",
"sla_by_contract"}], "notes": [...]}, plus "sweep" when one was run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from orchestrator.backtest.engine import Scenario, StrategyResult
from orchestrator.backtest.prices import format_time

TABLE_COLUMNS = (
    "strategy",
    "net US$",
    "revenue US$",
    "power US$",
    "penalties US$",
    "switches/GPU/day",
    "SLA availability",
)
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#7f7f7f", "#ff7f0e", "#17becf", "#8c564b")
_WIDTH, _PANEL_HEIGHT, _MARGIN = 960, 300, 70
_MAX_POINTS = 800


def _money(value: float) -> str:
    return f"{value:,.0f}"


def _availability(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def strategy_summary(result: StrategyResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "net_revenue_usd": round(result.net_revenue_usd, 2),
        "revenue_usd": round(result.revenue_usd, 2),
        "mining_revenue_usd": round(result.mining_revenue_usd, 2),
        "ai_revenue_usd": round(result.ai_revenue_usd, 2),
        "power_cost_usd": round(result.power_cost_usd, 2),
        "penalties_usd": round(result.penalties_usd, 2),
        "switch_cost_usd": round(result.switch_cost_usd, 2),
        "switches": result.switches,
        "switches_per_gpu_day": round(result.switches_per_gpu_day, 4),
        "sla_availability_fraction": result.sla_availability(),
        "sla_by_contract": {c: result.sla_availability(c) for c in result.committed_gpu_hours},
    }


def format_table(results: Sequence[StrategyResult]) -> str:
    """An aligned text table, one strategy per row."""
    rows = [TABLE_COLUMNS] + [
        (
            r.name,
            _money(r.net_revenue_usd),
            _money(r.revenue_usd),
            _money(r.power_cost_usd),
            _money(r.penalties_usd),
            f"{r.switches_per_gpu_day:.3f}",
            _availability(r.sla_availability()),
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=False)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def to_json(
    scenario: Scenario,
    results: Sequence[StrategyResult],
    notes: Sequence[str] = (),
    sweep: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "period": {
            "from": format_time(scenario.steps_s[0]),
            "to": format_time(scenario.steps_s[-1] + scenario.step_s),
            "step_s": scenario.step_s,
            "steps": len(scenario.steps_s),
            "days": round(scenario.days, 4),
        },
        "fleet": [
            {"model": g.model, "count": g.count, "memory_gib": g.memory_gib}
            for g in scenario.groups
        ],
        "strategies": [strategy_summary(r) for r in results],
        "notes": list(notes),
    }
    if sweep is not None:
        document["sweep"] = list(sweep)
    return document


# ---------------------------------------------------------------- SVG


def _sample(n: int) -> list[int]:
    """At most `_MAX_POINTS` step indices, evenly spread, always including the last."""
    if n <= _MAX_POINTS:
        return list(range(n))
    stride = n / (_MAX_POINTS - 1)
    picked = sorted({min(n - 1, round(i * stride)) for i in range(_MAX_POINTS)})
    if picked[-1] != n - 1:
        picked.append(n - 1)
    return picked


def _cumulative(values: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for v in values:
        total += v
        out.append(total)
    return out


def _axis_labels(scenario: Scenario, top: float, y_of: Any, lo: float, hi: float) -> list[str]:
    parts = []
    x0, x1 = _MARGIN, _WIDTH - _MARGIN
    bottom = top + _PANEL_HEIGHT
    parts.append(
        f'<line x1="{x0}" y1="{bottom}" x2="{x1}" y2="{bottom}" stroke="#333"/>'
        f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{bottom}" stroke="#333"/>'
    )
    for frac in (0.0, 0.5, 1.0):
        value = lo + (hi - lo) * frac
        y = y_of(value)
        parts.append(
            f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{escape(_money(value))}</text>"
        )
    start, end = scenario.steps_s[0], scenario.steps_s[-1] + scenario.step_s
    for frac in (0.0, 0.5, 1.0):
        x = x0 + (x1 - x0) * frac
        label = format_time(start + (end - start) * frac)[:10]
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11">'
            f"{label}</text>"
        )
    return parts


def render_svg(scenario: Scenario, results: Sequence[StrategyResult], live_name: str) -> str:
    """The two-panel chart as an SVG document (a string of well-formed XML)."""
    n = len(scenario.steps_s)
    picks = _sample(n)
    x0, x1 = _MARGIN, _WIDTH - _MARGIN

    def x_of(step: int) -> float:
        return x0 + (x1 - x0) * (step + 1) / n

    height = 2 * _PANEL_HEIGHT + 3 * _MARGIN + 20
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
            f'viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif">'
        ),
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    # panel 1: cumulative net revenue by strategy
    top = _MARGIN
    series = {r.name: _cumulative(r.net_by_step_usd) for r in results}
    values = [v for s in series.values() for v in s] or [0.0]
    lo, hi = min(0.0, *values), max(0.0, *values)
    hi = hi if hi > lo else lo + 1.0

    def y1(value: float) -> float:
        return top + _PANEL_HEIGHT * (1 - (value - lo) / (hi - lo))

    parts.append(
        f'<text x="{x0}" y="{top - 20}" font-size="14" font-weight="bold">'
        "Cumulative net revenue (US$) by strategy</text>"
    )
    parts.extend(_axis_labels(scenario, top, y1, lo, hi))
    for k, (name, cumulative) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        points = " ".join(f"{x_of(i):.1f},{y1(cumulative[i]):.1f}" for i in picks)
        parts.append(
            f'<polyline class="series" data-series="{escape(name, {chr(34): "&quot;"})}" '
            f'fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>'
        )
        parts.append(
            f'<text x="{x1 + 4}" y="{top + 14 + 14 * k}" font-size="11" fill="{colour}">'
            f"{escape(name)}</text>"
        )
    # panel 2: the live policy's GPUs by workload, stacked
    top = 2 * _MARGIN + _PANEL_HEIGHT + 20
    live = next((r for r in results if r.name == live_name), None)
    parts.append(
        f'<text x="{x0}" y="{top - 20}" font-size="14" font-weight="bold">'
        f"GPUs by workload over time ({escape(live_name)})</text>"
    )
    total = float(scenario.gpu_count or 1)

    def y2(value: float) -> float:
        return top + _PANEL_HEIGHT * (1 - value / total)

    parts.extend(_axis_labels(scenario, top, y2, 0.0, total))
    if live is not None and live.gpus_by_workload:
        workloads = sorted({w for counts in live.gpus_by_workload for w in counts})
        below = [0.0] * n
        for k, workload in enumerate(workloads):
            colour = _COLOURS[(k + 3) % len(_COLOURS)]
            above = [below[i] + live.gpus_by_workload[i].get(workload, 0) for i in range(n)]
            upper = [f"{x_of(i):.1f},{y2(above[i]):.1f}" for i in picks]
            lower = [f"{x_of(i):.1f},{y2(below[i]):.1f}" for i in reversed(picks)]
            parts.append(
                f'<polygon class="workload" data-series="{escape(workload)}" '
                f'fill="{colour}" fill-opacity="0.7" stroke="none" '
                f'points="{" ".join(upper + lower)}"/>'
            )
            parts.append(
                f'<text x="{x1 + 4}" y="{top + 14 + 14 * k}" font-size="11" fill="{colour}">'
                f"{escape(workload)}</text>"
            )
            below = above
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
