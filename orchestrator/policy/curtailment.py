"""Curtailment and demand response: a lower site power cap for a while. Pure.

A utility or the operator asks the site to hold its draw at or under X kW from T1 to T2 (a
`CurtailmentWindow`, with a reason and where it came from). During a window the planner's
site power cap is the lower of the configured cap and the window's: it plans against it by
its ordinary cap tier (planner.py, tier 2), so the SLA tier below still keeps reserved
contracts whole wherever the lowered cap leaves room, and mining and on-demand AI are what
is shed first: they are only paid by the money tier, below both. The window's id and cap go
into the settings (`power_cap_reason`), and so into every reason the cap writes.

A window takes effect `ahead_s` before its start, so that the stops it needs have run by
T1, and ends at T2. Of several windows in force at once the lowest cap binds.

The other signal, a power-price strike (`planner.curtail_price_strike_usd_per_kwh`), lives
in the planner itself: it needs the market's price, and the backtest replays it too.

`window_edges` lists the instants where the binding cap can change (each start less
`ahead_s`, each end) and where a window's SLA forecast is due again (each start less the
lead time), so the central loop can wake at exactly those instants.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from orchestrator.policy.model import PlannerSettings


@dataclass(frozen=True, slots=True)
class CurtailmentWindow:
    """Hold the site at or under `cap_kw` from `start_s` to `end_s` (unix seconds)."""

    id: str
    cap_kw: float
    start_s: float
    end_s: float
    reason: str = ""
    source: str = "operator"  # "operator", or the feed's name

    def in_force(self, now_s: float, ahead_s: float = 0.0) -> bool:
        """Whether the window's cap applies at `now_s` (from `ahead_s` before its start)."""
        return self.start_s - ahead_s <= now_s < self.end_s

    @property
    def label(self) -> str:
        """How a reason names the window: `curtailment window <id> (cap X kW)`."""
        return f"curtailment window {self.id} (cap {self.cap_kw:.1f} kW)"


def binding_window(
    windows: Iterable[CurtailmentWindow], now_s: float, *, ahead_s: float = 0.0
) -> CurtailmentWindow | None:
    """The window in force at `now_s` with the lowest cap (earliest id on a tie), or None."""
    live = [w for w in windows if w.in_force(now_s, ahead_s)]
    if not live:
        return None
    return min(live, key=lambda w: (w.cap_kw, w.start_s, w.id))


def effective_cap_kw(
    configured_kw: float | None,
    windows: Iterable[CurtailmentWindow],
    now_s: float,
    *,
    ahead_s: float = 0.0,
) -> float | None:
    """The site cap at `now_s`: the lower of the configured cap and any window in force."""
    window = binding_window(windows, now_s, ahead_s=ahead_s)
    if window is None:
        return configured_kw
    if configured_kw is None:
        return window.cap_kw
    return min(configured_kw, window.cap_kw)


def curtailed_settings(
    settings: PlannerSettings,
    windows: Iterable[CurtailmentWindow],
    now_s: float,
    *,
    ahead_s: float = 0.0,
) -> tuple[PlannerSettings, CurtailmentWindow | None]:
    """`settings` with the cap a window lowers at `now_s`, and the window that binds.

    A window whose cap is not below the configured cap changes nothing (and is not named).
    """
    window = binding_window(windows, now_s, ahead_s=ahead_s)
    configured = settings.site_power_cap_kw
    if window is None or (configured is not None and configured <= window.cap_kw):
        return settings, None
    lowered = replace(settings, site_power_cap_kw=window.cap_kw, power_cap_reason=window.label)
    return lowered, window


def window_edges(
    windows: Iterable[CurtailmentWindow],
    *,
    ahead_s: float = 0.0,
    lead_time_s: float | None = None,
) -> list[float]:
    """Every instant where a window starts to bind or stops, sorted; with `lead_time_s`,
    also where its forecast is due again."""
    edges: set[float] = set()
    for w in windows:
        found = [w.start_s - ahead_s, w.end_s]
        if lead_time_s is not None:
            found.append(w.start_s - lead_time_s)
        edges.update(e for e in found if math.isfinite(e))
    return sorted(edges)


def next_edge_s(
    windows: Iterable[CurtailmentWindow],
    after_s: float,
    *,
    ahead_s: float = 0.0,
    lead_time_s: float | None = None,
) -> float | None:
    """The first edge strictly after `after_s`, or None."""
    return next(
        (e for e in window_edges(windows, ahead_s=ahead_s, lead_time_s=lead_time_s) if e > after_s),
        None,
    )


def strike_applies(settings: PlannerSettings, power_price_usd_per_kwh: float) -> bool:
    """Whether the power price is at or above the configured shedding strike."""
    strike = settings.curtail_price_strike_usd_per_kwh
    return strike is not None and power_price_usd_per_kwh >= strike


def strike_text(settings: PlannerSettings, power_price_usd_per_kwh: float) -> str:
    """The reason a strike writes for every GPU it sheds."""
    return (
        f"shed: power price {power_price_usd_per_kwh:.4f} $/kWh at or above the strike "
        f"{settings.curtail_price_strike_usd_per_kwh:.4f} $/kWh "
        "(mining and on-demand AI off, reserved contracts kept)"
    )
