"""A recorded market replayed offline: the demo's hashprices and power price, no network.

The series lives in `_recorded_data` (48 hourly rows; how it was made is documented there).
Replay maps real time to recorded time: `recorded_s = start_offset_s + (now_s - start_s) *
time_scale`, where `start_s` is the first fetch unless given; the series loops. With the
default `time_scale` of 60, a recorded hour passes every real minute, so a ten-minute demo
sees the evening power peak and the coin rally. Each fetch gives one quote per algorithm and
one power quote, with provenance `recorded:<row>` so the status page can say where a price
came from. `hashprice_scale` multiplies every hashprice (to stage a bull market).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.markets import _recorded_data as data
from orchestrator.markets.quote import FetchResult, Quote, SourceBase

RECORDED_ALGORITHMS = data.ALGORITHMS


def recorded_row(recorded_s: float) -> int:
    """The row in force at `recorded_s` seconds into the (looping) series."""
    return int(recorded_s // data.STEP_S) % len(data.ROWS)


@dataclass(kw_only=True)
class RecordedMarketSource(SourceBase):
    time_scale: float = 60.0
    hashprice_scale: float = 1.0
    start_offset_s: float = 0.0
    start_s: float | None = None

    async def fetch(self, now_s: float) -> FetchResult:
        if self.start_s is None:
            self.start_s = now_s
        recorded_s = self.start_offset_s + max(0.0, now_s - self.start_s) * self.time_scale
        index = recorded_row(recorded_s)
        offset_s, *hashprices, power = data.ROWS[index]
        url = f"recorded:{index}"
        quotes: list[Quote] = [
            self.hashprice(
                algorithm,
                value * self.hashprice_scale,
                now_s=now_s,
                url=url,
                raw_value=value,
                raw_unit="usd_per_hs_day",
                note=f"recorded hour {offset_s // 3600}; scale {self.hashprice_scale:g}",
            )
            for algorithm, value in zip(data.ALGORITHMS, hashprices, strict=True)
        ]
        quotes.append(
            self.power(power, now_s=now_s, url=url, raw_value=power, raw_unit="usd_per_kwh")
        )
        return FetchResult(tuple(quotes), ())
