"""Price history from CSV: loading, validation and resampling onto the backtest's steps.

A backtest is only as good as its prices, and a silent unit mistake (MH/s read as H/s) or
a silent hole (a week of missing rows carried forward) gives a confident wrong answer.
So every row is checked, and every problem is an error that names the file and line
(`prices.csv:123: ...`) unless the user asked for a documented repair (`fill_gaps`),
in which case the repair is counted and reported. The format is in docs/backtest.md.

The prices file has a `timestamp` column (ISO 8601 with an offset or `Z`), one column per
algorithm named `hashprice_usd_per_hs_day:<algorithm>` (US$ per H/s per day) and
optionally `power_usd_per_kwh`. A power file has `timestamp,power_usd_per_kwh`.

Checks, in order per row: field count, timestamp (parsable, with offset, strictly after
the previous row), every value (numeric, finite, not negative, plausible in its unit).
Between rows: a gap longer than `max_gap_s` (default 1.5 x the file's median interval,
so one missing row of a regular file is a gap).

Resampling (`at_steps`) is last value carried forward: the price at step time t is the
latest row at or before t. It is bounded: a value older than the gap limit at a step is
an error too (or, with `fill_gaps`, a counted fill). A step before the first row is
always an error; nothing is invented backwards.

Plausibility. A hashprice above what any GPU could earn is a unit error: for an
algorithm with benchmarks, more than US$1,000 per day on the fastest benchmarked GPU;
without benchmarks, more than 1e-3 US$/H/s/day. A power price above 10 US$/kWh is read
as US$/MWh. Power prices below zero (real on wholesale markets) are rejected: add your
delivery charges first; the planner's economics assume power costs something.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

TIMESTAMP_COLUMN = "timestamp"
HASHPRICE_PREFIX = "hashprice_usd_per_hs_day:"
POWER_COLUMN = "power_usd_per_kwh"
GAP_FACTOR = 1.5
MAX_POWER_USD_PER_KWH = 10.0
MAX_HASHPRICE_USD_PER_HS_DAY = 1e-3
MAX_GPU_REVENUE_USD_PER_DAY = 1000.0


class PriceDataError(ValueError):
    """A price file is unusable; the message starts with `file:line:`."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        self.source = source
        self.line = line
        self.message = message
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class PriceSeries:
    """Rows of one file, validated. `None` in a column only where a repair was refused."""

    source: str
    times_s: tuple[float, ...]
    lines: tuple[int, ...]  # the file line of each row
    hashprice_usd_per_hs_day: Mapping[str, tuple[float, ...]]  # by algorithm
    power_usd_per_kwh: tuple[float, ...] | None
    max_gap_s: float
    filled_cells: int = 0  # empty cells carried forward by `fill_gaps`

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self.hashprice_usd_per_hs_day)

    @property
    def interval_s(self) -> float:
        """The file's median interval between rows (its natural step)."""
        return _median_interval_s(self.times_s)


@dataclass(frozen=True, slots=True)
class Resampled:
    """Values at each step, and how many steps needed a carry beyond the gap limit."""

    values: tuple[float, ...]
    filled_steps: int = 0


@dataclass(slots=True)
class _Reader:
    source: str
    max_gap_s: float | None
    fill_gaps: bool
    plausible_max: Mapping[str, tuple[float, str]] = field(default_factory=dict)


def format_time(time_s: float) -> str:
    """A UTC timestamp as short ISO 8601 (`2022-09-15T06:42Z`, seconds only when set)."""
    moment = datetime.fromtimestamp(time_s, tz=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S" if moment.second else "%Y-%m-%dT%H:%M")
    return text + "Z"


def parse_time(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 timestamp that carries an offset or `Z`."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset (add Z or +00:00)")
    return moment.timestamp()


def _median_interval_s(times_s: Sequence[float]) -> float:
    if len(times_s) < 2:
        return 0.0
    return float(statistics.median(b - a for a, b in itertools.pairwise(times_s)))


def _number(reader: _Reader, line: int, column: str, text: str) -> float | None:
    """A checked value, or None for an empty cell (a gap the caller resolves)."""
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise PriceDataError(reader.source, line, f"{column} = {text!r} is not a number") from None
    if not math.isfinite(value):
        raise PriceDataError(reader.source, line, f"{column} = {text!r} is not a finite number")
    if value < 0:
        raise PriceDataError(reader.source, line, f"{column} = {value:g} is negative")
    if column == POWER_COLUMN and value > MAX_POWER_USD_PER_KWH:
        raise PriceDataError(
            reader.source,
            line,
            f"{column} = {value:g} is not plausible in US$/kWh (above {MAX_POWER_USD_PER_KWH:g}); "
            "is it US$/MWh? Divide by 1000",
        )
    if column.startswith(HASHPRICE_PREFIX):
        limit, why = reader.plausible_max[column.removeprefix(HASHPRICE_PREFIX)]
        if value > limit:
            raise PriceDataError(
                reader.source,
                line,
                f"{column} = {value:g} is not plausible in US$ per H/s per day ({why}); "
                "is it per kH/s, MH/s or TH/s? Divide by 1e3, 1e6 or 1e12",
            )
    return value


def plausible_hashprice_max(
    benchmarks_hs: Mapping[str, Mapping[str, float]],
) -> dict[str, tuple[float, str]]:
    """Upper plausibility bound per algorithm from {algorithm: {model: hashrate_hs}}."""
    limits = {}
    for algorithm, by_model in benchmarks_hs.items():
        if not by_model:
            limits[algorithm] = (
                MAX_HASHPRICE_USD_PER_HS_DAY,
                f"above {MAX_HASHPRICE_USD_PER_HS_DAY:g}",
            )
            continue
        model, hashrate_hs = max(by_model.items(), key=lambda item: item[1])
        limit = MAX_GPU_REVENUE_USD_PER_DAY / hashrate_hs
        limits[algorithm] = (
            limit,
            (
                f"a {model} at {hashrate_hs:g} H/s would earn over "
                f"US${MAX_GPU_REVENUE_USD_PER_DAY:,.0f} a day"
            ),
        )
    return limits


def read_price_csv(  # noqa: PLR0912  (one check after another, read top to bottom)
    path: Path,
    *,
    plausible_max: Mapping[str, tuple[float, str]],
    max_gap_s: float | None = None,
    fill_gaps: bool = False,
    power_only: bool = False,
) -> PriceSeries:
    """Read and check a prices file (or, with `power_only`, a power file).

    `plausible_max` names the known algorithms (the configured profiles') with their
    upper bound (see `plausible_hashprice_max`); a column for any other algorithm is an
    error on line 1.
    """
    source = path.name
    reader = _Reader(source, max_gap_s, fill_gaps, plausible_max)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise PriceDataError(str(path), None, error.strerror or str(error)) from None
    except UnicodeDecodeError:
        raise PriceDataError(source, None, "not UTF-8 text") from None
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None:
        raise PriceDataError(source, 1, "empty file: expected a header row")
    header = [name.strip() for name in header]
    algorithms = _check_header(reader, header, power_only=power_only)
    times: list[float] = []
    lines: list[int] = []
    columns: dict[str, list[float]] = {a: [] for a in algorithms}
    power: list[float] | None = [] if POWER_COLUMN in header else None
    filled = 0
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(header):
            raise PriceDataError(
                source, line, f"{len(row)} fields where the header has {len(header)}"
            )
        cells = dict(zip(header, row, strict=True))
        try:
            time_s = parse_time(cells[TIMESTAMP_COLUMN])
        except ValueError as error:
            raise PriceDataError(source, line, str(error)) from None
        if times:
            _check_order(reader, line, time_s, times[-1], lines[-1])
        for algorithm in algorithms:
            column = HASHPRICE_PREFIX + algorithm
            filled += _append(reader, line, column, cells[column], columns[algorithm])
        if power is not None:
            filled += _append(reader, line, POWER_COLUMN, cells[POWER_COLUMN], power)
        times.append(time_s)
        lines.append(line)
    if not times:
        raise PriceDataError(source, 2, "no data rows after the header")
    limit = max_gap_s if max_gap_s is not None else GAP_FACTOR * _median_interval_s(times)
    if len(times) > 1 and not fill_gaps:
        for i in range(1, len(times)):
            gap_s = times[i] - times[i - 1]
            if gap_s > limit:
                raise PriceDataError(
                    source,
                    lines[i],
                    f"gap of {_duration(gap_s)} since line {lines[i - 1]} "
                    f"({format_time(times[i - 1])}), over the limit of {_duration(limit)}; "
                    "pass --fill-gaps to carry the last prices forward, or --max-gap",
                )
    return PriceSeries(
        source=source,
        times_s=tuple(times),
        lines=tuple(lines),
        hashprice_usd_per_hs_day={a: tuple(v) for a, v in columns.items()},
        power_usd_per_kwh=tuple(power) if power is not None else None,
        max_gap_s=limit if limit > 0 else math.inf,
        filled_cells=filled,
    )


def _check_header(reader: _Reader, header: list[str], *, power_only: bool) -> list[str]:
    source = reader.source
    if TIMESTAMP_COLUMN not in header:
        raise PriceDataError(source, 1, f"no {TIMESTAMP_COLUMN!r} column in the header")
    if len(set(header)) != len(header):
        twice = sorted({h for h in header if header.count(h) > 1})
        raise PriceDataError(source, 1, f"column {twice[0]!r} appears twice")
    algorithms = []
    for name in header:
        if name in (TIMESTAMP_COLUMN, POWER_COLUMN):
            continue
        if power_only:
            raise PriceDataError(
                source,
                1,
                f"unexpected column {name!r}: a power file has only "
                f"{TIMESTAMP_COLUMN},{POWER_COLUMN}",
            )
        if not name.startswith(HASHPRICE_PREFIX):
            raise PriceDataError(
                source,
                1,
                f"unknown column {name!r}: expected {HASHPRICE_PREFIX}<algorithm> "
                f"(US$ per H/s per day) or {POWER_COLUMN}",
            )
        algorithm = name.removeprefix(HASHPRICE_PREFIX)
        if algorithm not in reader.plausible_max:
            known = ", ".join(sorted(reader.plausible_max)) or "none"
            raise PriceDataError(
                source,
                1,
                f"unknown algorithm {algorithm!r}: no configured mining profile uses it "
                f"(known: {known})",
            )
        algorithms.append(algorithm)
    if power_only and POWER_COLUMN not in header:
        raise PriceDataError(source, 1, f"no {POWER_COLUMN!r} column in the header")
    return algorithms


def _check_order(reader: _Reader, line: int, time_s: float, last_s: float, last_line: int) -> None:
    if time_s == last_s:
        raise PriceDataError(
            reader.source, line, f"duplicate timestamp {format_time(time_s)} (line {last_line})"
        )
    if time_s < last_s:
        raise PriceDataError(
            reader.source,
            line,
            f"timestamp {format_time(time_s)} is before line {last_line} "
            f"({format_time(last_s)}): rows must be sorted by time",
        )


def _append(reader: _Reader, line: int, column: str, text: str, values: list[float]) -> int:
    """Append the cell's value; 1 when an empty cell was carried forward, else 0."""
    value = _number(reader, line, column, text)
    if value is not None:
        values.append(value)
        return 0
    if not reader.fill_gaps:
        raise PriceDataError(
            reader.source, line, f"{column} is empty; pass --fill-gaps to carry the last value"
        )
    if not values:
        raise PriceDataError(
            reader.source, line, f"{column} is empty on the first row: nothing to carry forward"
        )
    values.append(values[-1])
    return 1


def _duration(seconds: float) -> str:
    if seconds >= 86_400 and seconds % 3600 == 0:
        return f"{seconds / 86_400:g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds:g} s"


def at_steps(
    series: PriceSeries,
    values: Sequence[float],
    steps_s: Sequence[float],
    *,
    what: str,
    fill_gaps: bool,
) -> Resampled:
    """`values` (one per row of `series`) at each step: last value carried forward, bounded."""
    out: list[float] = []
    filled = 0
    times = series.times_s
    for t in steps_s:
        i = bisect.bisect_right(times, t) - 1
        if i < 0:
            raise PriceDataError(
                series.source,
                series.lines[0],
                f"{what} starts at {format_time(times[0])}, after the backtest step "
                f"{format_time(t)}: nothing to carry forward",
            )
        if t - times[i] > series.max_gap_s:
            if not fill_gaps:
                raise PriceDataError(
                    series.source,
                    series.lines[i],
                    f"{what} at step {format_time(t)} would come from {format_time(times[i])}, "
                    f"older than the limit of {_duration(series.max_gap_s)}; "
                    "pass --fill-gaps to carry it anyway, or shorten --to",
                )
            filled += 1
        out.append(values[i])
    return Resampled(tuple(out), filled)
