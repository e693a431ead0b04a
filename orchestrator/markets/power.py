"""Power-price sources: a flat price, a time-of-use tariff, or any HTTP JSON endpoint.

All give US$/kWh for the whole site. The time-of-use tariff is evaluated at the fetch time in
the tariff's own time zone (`zoneinfo`, so daylight-saving changes are right): the first
period whose weekday and `[start_hour, end_hour)` match wins, else the default price. Poll it
often enough (the default interval is 60 s) that a new period is picked up promptly.
An HTTP JSON price in US$/MWh (as ISOs publish) is divided by 1000.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import aiohttp

from orchestrator.config.market import ALL_WEEKDAYS, TouPeriod
from orchestrator.markets._http import extract, request_json
from orchestrator.markets.quote import POWER_KEY, FetchResult, SourceBase, parse_number
from orchestrator.markets.units import to_usd_per_kwh


@dataclass(kw_only=True)
class PowerStaticSource(SourceBase):
    usd_per_kwh: float

    async def fetch(self, now_s: float) -> FetchResult:
        quote = self.power(
            self.usd_per_kwh,
            now_s=now_s,
            url="static:",
            raw_value=self.usd_per_kwh,
            raw_unit="usd_per_kwh",
        )
        return FetchResult((quote,), ())


def tou_price_usd_per_kwh(
    now_s: float, *, timezone: str, periods: Sequence[TouPeriod], default_usd_per_kwh: float
) -> tuple[float, str]:
    """The tariff's price at `now_s` and which period gave it."""
    local = datetime.fromtimestamp(now_s, tz=UTC).astimezone(ZoneInfo(timezone))
    weekday = ALL_WEEKDAYS[local.weekday()]
    for index, period in enumerate(periods):
        if weekday in period.days and period.start_hour <= local.hour < period.end_hour:
            hours = f"{period.start_hour:02d}-{period.end_hour:02d}"
            return period.usd_per_kwh, f"period {index} ({weekday} {hours} {timezone})"
    return default_usd_per_kwh, f"default ({weekday} {local.hour:02d}h {timezone})"


@dataclass(kw_only=True)
class PowerTouSource(SourceBase):
    timezone: str
    periods: Sequence[TouPeriod]
    default_usd_per_kwh: float

    async def fetch(self, now_s: float) -> FetchResult:
        price, which = tou_price_usd_per_kwh(
            now_s,
            timezone=self.timezone,
            periods=self.periods,
            default_usd_per_kwh=self.default_usd_per_kwh,
        )
        quote = self.power(
            price, now_s=now_s, url="tou:", raw_value=price, raw_unit="usd_per_kwh", note=which
        )
        return FetchResult((quote,), ())


@dataclass(kw_only=True)
class PowerHttpJsonSource(SourceBase):
    session: aiohttp.ClientSession
    url: str
    json_path: str
    unit: str

    async def fetch(self, now_s: float) -> FetchResult:
        document = await request_json(
            self.session, feed=self.name, url=self.url, timeout_s=self.timeout_s
        )
        raw = extract(document, self.json_path, feed=self.name, url=self.url)
        try:
            value = parse_number(raw)
        except ValueError as error:
            return FetchResult((), (self.reject(POWER_KEY, "bad_payload", str(error)),))
        quote = self.power(
            to_usd_per_kwh(value, self.unit),
            now_s=now_s,
            url=self.url,
            raw_value=value,
            raw_unit=self.unit,
        )
        return FetchResult((quote,), ())
