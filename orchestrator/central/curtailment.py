"""Curtailment windows in `serve`: declared, persisted, forecast, and handed to the planner.

A window ("site cap X kW from T1 to T2", a reason, a source) comes from an operator through
the HTTP API (`create`, `cancel`) or from a utility's feed (`curtailment_feed`, through
`apply_feed`). Every change is written to the store with an audit record before the planner
sees it (`rebuild` hands the windows not ended to the policy loop, which re-plans at once and
again at each window's edges). Ended and cancelled windows stay in the store for the record.

Ahead of time: when a window is created, and again `lead_time_s` before it starts, a trial
plan runs on the newest plan's fleet and prices at the cap the site will have at the
window's start, with the contracts as they will be active then (`forecast`). A contract it
would leave short is logged as a warning, counted in
`orchestrator_curtailment_forecast_shortfall_gpus`, stored with the window and shown by the
API and the status page, before the window starts.

`effective_cap_w(now_s)` is the site cap in force at `now_s` (configured cap, lowered by any
window in force from `shed_ahead_s` before its start), in watts, or None without a cap: the
dispatcher's wave scheduler reads it at each release decision.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Gauge
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.central.policy_loop import PolicyLoop
from orchestrator.central.store import CurtailmentRow, Store
from orchestrator.config.curtailment import CurtailmentSection
from orchestrator.errors import PermanentError
from orchestrator.policy.curtailment import (
    CurtailmentWindow,
    curtailed_settings,
    effective_cap_kw,
)
from orchestrator.policy.planner import plan

log = structlog.get_logger(__name__)

OPERATOR_SOURCE = "operator"
MAX_CAP_KW = 1e7  # 10 GW: a larger "cap" is a unit slip, not a site
MAX_AHEAD_S = 366 * 86_400.0
HISTORY_LIMIT = 1000


class CurtailmentRequest(BaseModel):
    """The body of `POST /api/v1/curtailments`: cap the site at `cap_kw` from `start_s`
    (default: now) to `end_s`, or for `duration_s`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cap_kw: float = Field(ge=0, le=MAX_CAP_KW, allow_inf_nan=False)
    start_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    end_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    duration_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    reason: str = Field(min_length=1, max_length=500)


class CurtailmentRejected(PermanentError):  # noqa: N818  (a refusal, told to the client)
    """A refused request: `not_found` (no live window by that id) or a bad request."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.not_found = not_found


@dataclass(frozen=True, slots=True)
class FeedWindow:
    """One window as a feed lists it, already checked."""

    external_id: str
    cap_kw: float
    start_s: float
    end_s: float
    reason: str


def window_problem(
    cap_kw: float, start_s: float, end_s: float, *, now_s: float, max_window_s: float
) -> str | None:
    """Why a window cannot be taken, or None."""
    if not (math.isfinite(cap_kw) and 0 <= cap_kw <= MAX_CAP_KW):
        return f"cap_kw {cap_kw!r} is not between 0 and {MAX_CAP_KW:g}"
    if not (math.isfinite(start_s) and math.isfinite(end_s)):
        return "start and end must be finite times"
    if end_s <= start_s:
        return "the window ends before it starts"
    if end_s <= now_s:
        return "the window has already ended"
    if end_s - start_s > max_window_s:
        return f"the window lasts {end_s - start_s:.0f} s, over the {max_window_s:.0f} s limit"
    if start_s - now_s > MAX_AHEAD_S:
        return "the window starts more than a year ahead"
    return None


def _window(row: CurtailmentRow) -> CurtailmentWindow:
    return CurtailmentWindow(row.id, row.cap_kw, row.start_s, row.end_s, row.reason, row.source)


class CurtailmentService:
    def __init__(
        self,
        *,
        loop: PolicyLoop,
        store: Store,
        settings: CurtailmentSection,
        registry: CollectorRegistry,
    ) -> None:
        self.loop = loop
        self.store = store
        self.settings = settings
        self._lock = asyncio.Lock()
        self._lead_checked: set[str] = set()  # windows forecast again at their lead time
        self._pending_first: set[str] = set()  # created before any plan: forecast when one is
        self._shortfalls: dict[str, int] = {}  # by window: GPUs short in its newest forecast
        self.forecast_shortfall = Gauge(
            "orchestrator_curtailment_forecast_shortfall_gpus",
            "Reserved-contract GPUs that upcoming curtailment windows would leave short",
            registry=registry,
        )
        self.in_force = Gauge(
            "orchestrator_curtailment_in_force",
            "1 while a curtailment window lowers the site power cap",
            registry=registry,
        )
        self.cap_watts = Gauge(
            "orchestrator_curtailment_cap_watts",
            "The site power cap in force (configured or lowered by a window); NaN: no cap",
            registry=registry,
        )

    # ------------------------------------------------------------------ the cap

    def effective_cap_w(self, now_s: float) -> float | None:
        """The site cap at `now_s` in watts (None: no cap), windows included."""
        cap_kw = effective_cap_kw(
            self.loop.policy.settings.site_power_cap_kw,
            self.loop.curtailments,
            now_s,
            ahead_s=self.settings.shed_ahead_s,
        )
        return None if cap_kw is None else cap_kw * 1000.0

    def rebuild(self, rows: list[CurtailmentRow] | None = None) -> None:
        """Hand the windows not ended to the policy loop (a change makes a plan due).

        `rows`: the windows not ended, when the caller has just read them (else read here).
        """
        if rows is None:
            rows = self.store.live_curtailments(self.loop.clock())
        self.loop.replace_curtailments(tuple(_window(r) for r in rows))
        live = {r.id for r in rows}
        for gone in set(self._shortfalls) - live:
            del self._shortfalls[gone]
        self.forecast_shortfall.set(sum(self._shortfalls.values()))

    # ------------------------------------------------------------------ operators

    async def create(self, request: CurtailmentRequest, *, actor: str) -> CurtailmentRow:
        now_s = self.loop.clock()
        start_s = request.start_s if request.start_s is not None else now_s
        if request.end_s is not None and request.duration_s is not None:
            raise CurtailmentRejected("give at most one of 'end_s' or 'duration_s'")
        if request.end_s is None and request.duration_s is None:
            raise CurtailmentRejected("give 'end_s' or 'duration_s'")
        end_s = request.end_s if request.end_s is not None else start_s + (request.duration_s or 0)
        problem = window_problem(
            request.cap_kw, start_s, end_s, now_s=now_s, max_window_s=self.settings.max_window_s
        )
        if problem is not None:
            raise CurtailmentRejected(problem)
        row = CurtailmentRow(
            id=uuid.uuid4().hex[:12],
            cap_kw=request.cap_kw,
            start_s=start_s,
            end_s=end_s,
            reason=request.reason,
            source=OPERATOR_SOURCE,
            external_id=None,
            actor=actor,
            created_at_s=now_s,
        )
        async with self._lock:
            self.store.add_curtailment(row, audit_detail=row.to_json())
            self.rebuild()
        log.info(
            "curtailment created",
            window=row.id,
            cap_kw=row.cap_kw,
            start_s=row.start_s,
            end_s=row.end_s,
            by=actor,
            reason=row.reason,
        )
        forecast = await self.forecast(row)
        return _with_forecast(row, forecast)

    async def cancel(self, window_id: str, *, actor: str) -> CurtailmentRow:
        async with self._lock:
            row = self.store.cancel_curtailment(window_id, actor=actor, at_s=self.loop.clock())
            if row is None:
                raise CurtailmentRejected(f"no window {window_id!r} to cancel", not_found=True)
            self.rebuild()
        log.info("curtailment cancelled", window=window_id, by=actor)
        return row

    def history(self, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
        """Every window, newest end first, with its state and its newest forecast."""
        now_s = self.loop.clock()
        return [window_json(row, now_s) for row in self.store.curtailments(limit)]

    # ------------------------------------------------------------------ feeds

    async def apply_feed(
        self, source: str, windows: Iterable[FeedWindow], *, listed: set[str]
    ) -> list[CurtailmentRow]:
        """Make the store say what the feed `source` says now; `listed` holds every id it
        listed, rejected ones included (a window listed but unreadable is not cancelled)."""
        now_s = self.loop.clock()
        created: list[CurtailmentRow] = []
        async with self._lock:
            for w in windows:
                found = self.store.feed_curtailment(source, w.external_id)
                if found is None:
                    row = CurtailmentRow(
                        id=uuid.uuid4().hex[:12],
                        cap_kw=w.cap_kw,
                        start_s=w.start_s,
                        end_s=w.end_s,
                        reason=w.reason,
                        source=source,
                        external_id=w.external_id,
                        actor=source,
                        created_at_s=now_s,
                    )
                    self.store.add_curtailment(row, audit_detail=row.to_json())
                    created.append(row)
                elif found.cancelled_at_s is None and (
                    (found.cap_kw, found.start_s, found.end_s, found.reason)
                    != (w.cap_kw, w.start_s, w.end_s, w.reason)
                ):
                    changed = replace(
                        found, cap_kw=w.cap_kw, start_s=w.start_s, end_s=w.end_s, reason=w.reason
                    )
                    self.store.change_curtailment(
                        changed, at_s=now_s, audit_detail=changed.to_json()
                    )
                    self._lead_checked.discard(found.id)
                    created.append(changed)
            for row in self.store.live_curtailments(now_s):
                if row.source == source and row.external_id not in listed:
                    self.store.cancel_curtailment(
                        row.id, actor=source, at_s=now_s, why="no longer listed by its feed"
                    )
                    log.info("curtailment withdrawn by its feed", window=row.id, feed=source)
            self.rebuild()
        for row in created:
            log.info(
                "curtailment from feed",
                window=row.id,
                feed=source,
                cap_kw=row.cap_kw,
                start_s=row.start_s,
                end_s=row.end_s,
            )
            await self.forecast(row)
        return created

    # ------------------------------------------------------------------ forecasts

    async def forecast(self, row: CurtailmentRow) -> dict[str, Any]:
        """A trial plan at the cap the site will have at the window's start; stored."""
        now_s = self.loop.clock()
        at_s = max(row.start_s, now_s)
        last = self.loop.last
        if last is None:
            self._pending_first.add(row.id)
            result: dict[str, Any] = {"checked_at_s": None, "note": "not checked: no plan yet"}
            self.store.save_curtailment_forecast(row.id, result)
            return result
        self._pending_first.discard(row.id)
        windows = [w for w in self.loop.curtailments if w.id != row.id]
        windows.append(_window(row))
        settings, binding = curtailed_settings(
            self.loop.policy.settings, windows, at_s, ahead_s=self.settings.shed_ahead_s
        )
        overrides = {
            k: o for k, o in self.loop.overrides.items() if o.until_s is None or o.until_s > at_s
        }
        policy = self.loop.policy
        trial = await asyncio.to_thread(
            plan,
            list(last.gpus.values()),
            last.market,
            contracts=policy.contracts,
            profiles=policy.profiles,
            overrides=overrides,
            settings=settings,
            now_s=at_s,
            power=last.power,  # priced with the board power the last plan had learnt
        )
        short = [s for s in trial.sla if s.shortfall_gpus > 0]
        result = {
            "checked_at_s": now_s,
            "at_s": at_s,
            "cap_kw": settings.site_power_cap_kw,
            "binding_window": binding.id if binding else None,
            "planned_power_w": round(trial.total_power_w, 1),
            "ok": not short,
            "shortfalls": [
                {
                    "contract": s.contract_id,
                    "committed_gpus": s.committed_gpus,
                    "assigned_gpus": s.assigned_gpus,
                    "shortfall_gpus": s.shortfall_gpus,
                    "penalty_usd_per_hour": round(s.penalty_usd_per_hour, 4),
                }
                for s in short
            ],
        }
        self.store.save_curtailment_forecast(row.id, result)
        self._shortfalls[row.id] = sum(s.shortfall_gpus for s in short)
        self.forecast_shortfall.set(sum(self._shortfalls.values()))
        if short:
            log.warning(
                "curtailment would break an SLA",
                window=row.id,
                cap_kw=settings.site_power_cap_kw,
                starts_in_s=round(row.start_s - now_s, 1),
                shortfalls={s.contract_id: s.shortfall_gpus for s in short},
            )
        return result

    async def step(self) -> None:
        """One pass: forecasts due (lead time reached, or the first plan came), gauges."""
        now_s = self.loop.clock()
        rows = self.store.live_curtailments(now_s)
        awaited = False
        for row in rows:
            lead_due = (
                row.start_s > now_s >= row.start_s - self.settings.lead_time_s
                and row.id not in self._lead_checked
            )
            first_due = row.id in self._pending_first and self.loop.last is not None
            if lead_due or first_due:
                if lead_due:
                    self._lead_checked.add(row.id)
                await self.forecast(row)
                awaited = True
        # windows that ended leave the loop and the gauges; after a forecast (an await, during
        # which an operator may have changed the windows) they are read again
        self.rebuild(None if awaited else rows)
        cap_w = self.effective_cap_w(now_s)
        self.cap_watts.set(math.nan if cap_w is None else cap_w)
        in_force = any(
            w.in_force(now_s, self.settings.shed_ahead_s) for w in self.loop.curtailments
        )
        self.in_force.set(1.0 if in_force else 0.0)

    def restore(self) -> int:
        """After a restart: the windows not ended go back to the loop, and those created
        before any plan or not yet at their lead time are forecast again when due."""
        now_s = self.loop.clock()
        rows = self.store.live_curtailments(now_s)
        for row in rows:
            if row.forecast is None or row.forecast.get("checked_at_s") is None:
                self._pending_first.add(row.id)
        self.rebuild(rows)
        return len(rows)


def _with_forecast(row: CurtailmentRow, forecast: dict[str, Any]) -> CurtailmentRow:
    return replace(row, forecast=forecast)


def window_state(row: CurtailmentRow, now_s: float) -> str:
    if row.cancelled_at_s is not None:
        return "cancelled"
    if now_s >= row.end_s:
        return "ended"
    if now_s >= row.start_s:
        return "in_force"
    return "upcoming"


def window_json(row: CurtailmentRow, now_s: float) -> dict[str, Any]:
    return {**row.to_json(), "state": window_state(row, now_s), "forecast": row.forecast}
