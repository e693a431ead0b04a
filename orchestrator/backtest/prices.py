"""Price history from CSV: loading, validation and resampling onto the backtest's steps.

A backtest is only as good as its prices, and a silent unit mistake (MH/s read as H/s) or
a silent hole (a week of missing rows carried forward) gives a confident wrong answer.
So every row is checked, and every problem is an error that names the file and line
(`prices.csv:123: ...`) unless the user asked for a documented repair (`fill_gaps`),
in which case the repair is counted and reported. The format is in docs/backtest.md.

The prices file has a `timestamp` column (ISO 8601 with an offset or `Z`), one column per
algorithm named `hashprice_usd_per_hs_day:<algorithm>` (US$ per H/s per day) and
optionally `power_usd_per_kwh`. A power file has `timestamp,power_usd_per_kwh`.

Checks, in order per row, when the file is read: field count, timestamp (parsable, with
offset, strictly after the previous row), every value (numeric, finite, not negative,
plausible in its unit). Empty cells are recorded, not judged, at that point.

Holes are judged inside the replayed period only (`check_period`), so that a hole in a
year the backtest does not replay cannot stop it: an empty cell in a row the period uses,
and a gap longer than `max_gap_s` (default 1.5 x the file's median interval, so one
missing row of a regular file is a gap) between two rows the period uses. The rows a
period [start, end) uses are those whose time is before its end and whose successor
comes after its start (the row carried into the first step included).

Resampling (`at_steps`) is last value carried forward: the price at step time t is the
latest row at or before t. It is bounded: a value older than the gap limit at a step is
an error too. With `fill_gaps` both kinds of hole are carried over instead, and
`Resampled.carried_steps` names every step that used a carried-over price (older than
the limit, or from an empty cell) so that the report can count them per file. A step
before the first row is always an error; nothing is invented backwards.

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
    """Rows of one file, validated.

    An empty cell holds the value of the row above (NaN on the first row) and is listed
    in `empty_rows`; whether that carry is allowed is decided per period (`check_period`).
    """

    source: str
    times_s: tuple[float, ...]
    lines: tuple[int, ...]  # the file line of each row
    hashprice_usd_per_hs_day: Mapping[str, tuple[float, ...]]  # by algorithm
    power_usd_per_kwh: tuple[float, ...] | None
    max_gap_s: float
    empty_rows: Mapping[str, frozenset[int]] = field(default_factory=dict)  # by column name

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self.hashprice_usd_per_hs_day)

    @property
    def columns(self) -> tuple[str, ...]:
        """The value columns, as named in the header."""
        names = [HASHPRICE_PREFIX + a for a in self.hashprice_usd_per_hs_day]
        return (*names, POWER_COLUMN) if self.power_usd_per_kwh is not None else tuple(names)

    @property
    def filled_cells(self) -> int:
        """Empty cells in the whole file (carried from the row above)."""
        return sum(len(rows) for rows in self.empty_rows.values())

    def values(self, column: str) -> tuple[float, ...]:
        """One value column by its header name."""
        if column == POWER_COLUMN and self.power_usd_per_kwh is not None:
            return self.power_usd_per_kwh
        return self.hashprice_usd_per_hs_day[column.removeprefix(HASHPRICE_PREFIX)]

    @property
    def interval_s(self) -> float:
        """The file's median interval between rows (its natural step)."""
        return _median_interval_s(self.times_s)


@dataclass(frozen=True, slots=True)
class Resampled:
    """Values at each step, and which steps used a carried-over price (by step index)."""

    values: tuple[float, ...]
    carried_steps: frozenset[int] = frozenset()

    @property
    def filled_steps(self) -> int:
        return len(self.carried_steps)


@dataclass(slots=True)
class _Reader:
    source: str
    plausible_max: Mapping[str, tuple[float, str]] = field(default_factory=dict)


def format_time(time_s: float) -> str:
    """A UTC timestamp as short ISO 8601 (`2022-09-15T06:42Z`, seconds only when set)."""
    moment = datetime.fromtimestamp(time_s, tz=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S" if moment.second else "%Y-%m-%dT%H:%M")
    return text + "Z"


def parse_time(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 timestamp that carries an offset or `Z`."""
    return _parse_moment(text).timestamp()


def _parse_moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset (add Z or +00:00)")
    return moment


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
    power_only: bool = False,
) -> PriceSeries:
    """Read and check a prices file (or, with `power_only`, a power file).

    `plausible_max` names the known algorithms (the configured profiles') with their
    upper bound (see `plausible_hashprice_max`); a column for any other algorithm is an
    error on line 1. `max_gap_s` (default 1.5 x the median interval) is kept for
    `check_period` and `at_steps`; gaps and empty cells are judged there.
    """
    source = path.name
    reader = _Reader(source, plausible_max)
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
    last_moment: datetime | None = None
    empty: dict[str, set[int]] = {HASHPRICE_PREFIX + a: set() for a in algorithms}
    if power is not None:
        empty[POWER_COLUMN] = set()
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(header):
            raise PriceDataError(
                source, line, f"{len(row)} fields where the header has {len(header)}"
            )
        cells = dict(zip(header, row, strict=True))
        try:
            moment = _parse_moment(cells[TIMESTAMP_COLUMN])
        except ValueError as error:
            raise PriceDataError(source, line, str(error)) from None
        time_s = moment.timestamp()
        if last_moment is not None:
            _check_order(reader, line, moment, last_moment, lines[-1])
        last_moment = moment
        for algorithm in algorithms:
            column = HASHPRICE_PREFIX + algorithm
            if not _append(reader, line, column, cells[column], columns[algorithm]):
                empty[column].add(len(times))
        if power is not None and not _append(
            reader, line, POWER_COLUMN, cells[POWER_COLUMN], power
        ):
            empty[POWER_COLUMN].add(len(times))
        times.append(time_s)
        lines.append(line)
    if not times:
        raise PriceDataError(source, 2, "no data rows after the header")
    limit = max_gap_s if max_gap_s is not None else GAP_FACTOR * _median_interval_s(times)
    return PriceSeries(
        source=source,
        times_s=tuple(times),
        lines=tuple(lines),
        hashprice_usd_per_hs_day={a: tuple(v) for a, v in columns.items()},
        power_usd_per_kwh=tuple(power) if power is not None else None,
        max_gap_s=limit if limit > 0 else math.inf,
        empty_rows={column: frozenset(rows) for column, rows in empty.items()},
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


def _check_order(
    reader: _Reader, line: int, moment: datetime, last: datetime, last_line: int
) -> None:
    time_s, last_s = moment.timestamp(), last.timestamp()
    if time_s == last_s:
        raise PriceDataError(
            reader.source,
            line,
            f"duplicate timestamp {format_time(time_s)} (line {last_line})"
            + _local_time_hint(moment, last, last_line),
        )
    if time_s < last_s:
        raise PriceDataError(
            reader.source,
            line,
            f"timestamp {format_time(time_s)} is before line {last_line} "
            f"({format_time(last_s)}): rows must be sorted by time"
            + _local_time_hint(moment, last, last_line),
        )


def _offset_text(moment: datetime) -> str:
    """The UTC offset as written in ISO 8601 (`-06:00`; `+00:00` for `Z`)."""
    offset = moment.utcoffset()
    total_min = round(offset.total_seconds() / 60) if offset is not None else 0
    hours, minutes = divmod(abs(total_min), 60)
    return f"{'-' if total_min < 0 else '+'}{hours:02d}:{minutes:02d}"


def _local_time_hint(moment: datetime, last: datetime, last_line: int) -> str:
    """Name a daylight-saving mistake behind a duplicate or backward row, where the
    offsets show one: a file in local time whose writer gave a skipped local time
    (spring forward) an offset, or a repeated one (fall back) the same offset twice."""
    offset, last_offset = moment.utcoffset(), last.utcoffset()
    if offset != last_offset:
        return (
            f"; the UTC offset changes from {_offset_text(last)} (line {last_line}) to "
            f"{_offset_text(moment)} here: if these are local times across a "
            "daylight-saving change, one of them does not exist (the skipped hour) or "
            "carries the wrong offset"
        )
    if offset and moment.replace(tzinfo=None) == last.replace(tzinfo=None):
        return (
            f"; if the file is in local time, {moment.strftime('%Y-%m-%dT%H:%M')} may be "
            "the hour that repeats when daylight saving ends: the repeat needs the "
            "standard-time offset"
        )
    return ""


def _append(reader: _Reader, line: int, column: str, text: str, values: list[float]) -> bool:
    """Append the cell's value; False for an empty cell (the row above's value, or NaN)."""
    value = _number(reader, line, column, text)
    values.append(value if value is not None else values[-1] if values else math.nan)
    return value is not None


def _flag_duration(seconds: float) -> str:
    """The shortest `--max-gap` value (3d, 36h, 90m, 3601) that admits `seconds`."""
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{math.ceil(seconds)}"


def _max_gap_hint(seconds: float) -> str:
    return (
        f"--max-gap {_flag_duration(seconds)} or more (or [backtest] max_gap; it sets every "
        "price file's limit) to accept it"
    )


def _used_rows(series: PriceSeries, start_s: float, end_s: float) -> range:
    """Rows whose price some moment of [start_s, end_s) would carry (see the docstring)."""
    first = max(bisect.bisect_right(series.times_s, start_s) - 1, 0)
    stop = bisect.bisect_left(series.times_s, end_s)
    return range(first, max(stop, first + 1))


def _check_empty_cell(series: PriceSeries, column: str, row: int, *, fill_gaps: bool) -> None:
    """Raise for the empty cell in `row` unless `fill_gaps` can carry a value into it."""
    if math.isnan(series.values(column)[row]):
        later = series.times_s[row + 1 : row + 2]
        fix = f"start --from at {format_time(later[0])} or later" if later else "fill it in"
        raise PriceDataError(
            series.source,
            series.lines[row],
            f"{column} is empty, with no value above it to carry forward; {fix}",
        )
    if not fill_gaps:
        raise PriceDataError(
            series.source,
            series.lines[row],
            f"{column} is empty; pass --fill-gaps to carry the last value, "
            "or --from/--to to leave the row out",
        )


def check_period(
    series: PriceSeries,
    start_s: float,
    end_s: float,
    *,
    columns: Sequence[str],
    fill_gaps: bool,
) -> None:
    """Judge the holes of `series` that fall inside [start_s, end_s), for the `columns`
    the backtest uses: an empty cell, or a gap between rows over `max_gap_s`, is an error
    naming its line unless `fill_gaps`; an empty cell with nothing above it always is."""
    rows = _used_rows(series, start_s, end_s)
    for i in rows:
        for column in columns:
            if i in series.empty_rows.get(column, ()):
                _check_empty_cell(series, column, i, fill_gaps=fill_gaps)
        if fill_gaps or i == rows.start:
            continue
        gap_s = series.times_s[i] - series.times_s[i - 1]
        if gap_s > series.max_gap_s:
            raise PriceDataError(
                series.source,
                series.lines[i],
                f"gap of {_duration(gap_s)} since line {series.lines[i - 1]} "
                f"({format_time(series.times_s[i - 1])}), over the limit of "
                f"{_duration(series.max_gap_s)}; pass {_max_gap_hint(gap_s)}, --fill-gaps "
                "to carry the last prices over it, or --from/--to to leave it out",
            )


def _duration(seconds: float) -> str:
    if seconds >= 86_400 and seconds % 3600 == 0:
        return f"{seconds / 86_400:g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds:g} s"


def at_steps(
    series: PriceSeries,
    column: str,
    steps_s: Sequence[float],
    *,
    what: str,
    fill_gaps: bool,
) -> Resampled:
    """The `column` of `series` at each step: last value carried forward, bounded."""
    values = series.values(column)
    empty = series.empty_rows.get(column, frozenset())
    out: list[float] = []
    carried: set[int] = set()
    times = series.times_s
    for k, t in enumerate(steps_s):
        i = bisect.bisect_right(times, t) - 1
        if i < 0:
            raise PriceDataError(
                series.source,
                series.lines[0],
                f"{what} starts at {format_time(times[0])}, after the backtest step "
                f"{format_time(t)}: nothing to carry forward; start --from at or after it",
            )
        if i in empty:
            _check_empty_cell(series, column, i, fill_gaps=fill_gaps)
            carried.add(k)
        age_s = t - times[i]
        if age_s > series.max_gap_s:
            if not fill_gaps:
                raise PriceDataError(
                    series.source,
                    series.lines[i],
                    f"{what} at step {format_time(t)} would come from {format_time(times[i])}, "
                    f"older than the limit of {_duration(series.max_gap_s)}; "
                    f"pass {_max_gap_hint(age_s)}, --fill-gaps to carry it anyway, "
                    "or --from/--to to leave the step out",
                )
            carried.add(k)
        out.append(values[i])
    return Resampled(tuple(out), frozenset(carried))
