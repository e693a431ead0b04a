"""The `[curtailment]` section: demand response windows, where they come from, how early.

A curtailment window says "hold the site at or under X kW from T1 to T2". Operators declare
one through the HTTP API (`POST /api/v1/curtailments`); a utility or an aggregator can
publish them on an HTTP JSON feed, listed here as `[[curtailment.feeds]]` and polled like
the market feeds (bad entries are counted and dropped, a dead feed changes nothing). The
price strike that sheds at high power prices is a planner setting
(`planner.curtail_price_strike_usd_per_kwh`), since the backtest replays it too.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from orchestrator.config._base import Section
from orchestrator.config.market import HttpUrl


class CurtailmentFeedSection(Section):
    """An HTTP endpoint answering JSON: `{"windows": [{"id", "cap_kw", "start", "end",
    "reason"}]}` (or the bare list); times are unix seconds or ISO 8601 with a zone.

    The feed is the truth for its own windows: one it no longer lists, before its end, is
    cancelled (by the feed, recorded); a failed fetch changes nothing."""

    # the feed's name: the `source` of its windows, and its label in metrics and logs
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    url: HttpUrl
    # polled this often after a success; after failures it backs off (2 s doubling to 300 s)
    interval_s: float = Field(default=60.0, gt=0, le=86_400)
    # one fetch, bounded
    timeout_s: float = Field(default=10.0, gt=0, le=600)


class CurtailmentSection(Section):
    """How `serve` takes curtailment windows: lead time, shedding ahead, feeds."""

    # a window's SLA forecast (a trial plan at its cap with the contracts as they will be
    # at its start) runs when it is created and again this long before it starts
    lead_time_s: float = Field(default=900.0, ge=0, le=7 * 86_400)
    # a window's cap applies this long before its start, so that its stops are done by then
    shed_ahead_s: float = Field(default=60.0, ge=0, le=3600)
    # a window longer than this is refused (a typo in a time is more likely than a week-long
    # curtailment); feeds' windows too
    max_window_s: float = Field(default=7 * 86_400.0, gt=0, le=366 * 86_400)
    feeds: list[CurtailmentFeedSection] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_feed_names(self) -> CurtailmentSection:
        names = [f.name for f in self.feeds]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"curtailment feed name {name!r} appears twice")
        return self
