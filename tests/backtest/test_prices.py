"""Bad price files fail naming the line, or are repaired visibly with --fill-gaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.backtest.prices import (
    HASHPRICE_PREFIX,
    POWER_COLUMN,
    PriceDataError,
    at_steps,
    check_period,
    parse_time,
    plausible_hashprice_max,
    read_price_csv,
)

LIMITS = plausible_hashprice_max({"ethash": {"RTX 3090": 120e6}, "kawpow": {}})
ETHASH = HASHPRICE_PREFIX + "ethash"
HEADER = "timestamp,hashprice_usd_per_hs_day:ethash,power_usd_per_kwh\n"


def _write(tmp_path: Path, body: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def _rows(*rows: str) -> str:
    return HEADER + "".join(row + "\n" for row in rows)


GOOD = (
    "2022-09-01T00:00Z,2.0e-8,0.05",
    "2022-09-02T00:00Z,2.1e-8,0.05",
    "2022-09-03T00:00Z,2.2e-8,0.06",
)


def test_a_good_file_loads_with_lines_and_interval(tmp_path: Path) -> None:
    series = read_price_csv(_write(tmp_path, _rows(*GOOD)), plausible_max=LIMITS)
    assert series.algorithms == ("ethash",)
    assert series.hashprice_usd_per_hs_day["ethash"] == (2.0e-8, 2.1e-8, 2.2e-8)
    assert series.power_usd_per_kwh == (0.05, 0.05, 0.06)
    assert series.lines == (2, 3, 4)
    assert series.interval_s == 86_400.0
    assert series.max_gap_s == 1.5 * 86_400.0


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        (_rows(GOOD[0], GOOD[2], GOOD[1]), 4, "rows must be sorted by time"),
        (_rows(GOOD[0], GOOD[0]), 3, "duplicate timestamp 2022-09-01T00:00Z (line 2)"),
        (_rows(GOOD[0], "2022-09-02T00:00Z,abc,0.05"), 3, "'abc' is not a number"),
        (_rows(GOOD[0], "2022-09-02T00:00Z,NaN,0.05"), 3, "is not a finite number"),
        (_rows(GOOD[0], "2022-09-02T00:00Z,-1e-8,0.05"), 3, "is negative"),
        (_rows(GOOD[0], "2022-09-02T00:00Z,0.021,0.05"), 3, "is it per kH/s, MH/s or TH/s"),
        (_rows(GOOD[0], "2022-09-02T00:00Z,2e-8,52.3"), 3, "is it US$/MWh? Divide by 1000"),
        (_rows(GOOD[0], "2022-09-02T00:00,2e-8,0.05"), 3, "has no UTC offset"),
        (_rows(GOOD[0], "yesterday,2e-8,0.05"), 3, "is not ISO 8601"),
        (_rows(GOOD[0], "2022-09-02T00:00Z,2e-8"), 3, "2 fields where the header has 3"),
        (
            "timestamp,hashprice_usd_per_hs_day:scrypt\n" + "2022-09-01T00:00Z,1e-9\n",
            1,
            "unknown algorithm 'scrypt'",
        ),
        ("timestamp,ethash\n2022-09-01T00:00Z,1e-9\n", 1, "unknown column 'ethash'"),
        ("time,hashprice_usd_per_hs_day:ethash\n", 1, "no 'timestamp' column"),
        (HEADER, 2, "no data rows"),
    ],
    ids=[
        "unsorted",
        "duplicate",
        "non-numeric",
        "nan",
        "negative",
        "hashprice-units",
        "power-units",
        "no-offset",
        "bad-timestamp",
        "short-row",
        "unknown-algorithm",
        "unknown-column",
        "no-timestamp",
        "no-rows",
    ],
)
def test_each_kind_of_bad_input_names_its_line(
    tmp_path: Path, body: str, line: int, words: str
) -> None:
    with pytest.raises(PriceDataError) as caught:
        read_price_csv(_write(tmp_path, body), plausible_max=LIMITS)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"prices.csv:{line}: ")
    assert words in str(caught.value)


def test_unit_error_message_says_what_the_value_would_mean(tmp_path: Path) -> None:
    """0.021 is ETH's hashprice per MH/s: a 3090 would earn 2.5 M$ a day."""
    body = _rows(GOOD[0], "2022-09-02T00:00Z,0.021,0.05")
    with pytest.raises(PriceDataError, match=r"RTX 3090 at 1\.2e\+08 H/s would earn over"):
        read_price_csv(_write(tmp_path, body), plausible_max=LIMITS)


def test_an_algorithm_without_benchmarks_uses_the_absolute_ceiling(tmp_path: Path) -> None:
    body = "timestamp,hashprice_usd_per_hs_day:kawpow\n2022-09-01T00:00Z,2e-3\n"
    with pytest.raises(PriceDataError, match=r"prices\.csv:2: .*above 0\.001"):
        read_price_csv(_write(tmp_path, body), plausible_max=LIMITS)


def test_fill_gaps_repairs_and_counts(tmp_path: Path) -> None:
    """An empty cell is carried from the row above; neither it nor the gap fails at load,
    and resampling names each step that took the empty cell's carry or a value older
    than the limit."""
    body = _rows(GOOD[0], "2022-09-02T00:00Z,,0.05", "2022-09-06T00:00Z,2.2e-8,0.06")
    path = _write(tmp_path, body)
    series = read_price_csv(path, plausible_max=LIMITS, max_gap_s=86_400.0 * 1.5)
    assert series.filled_cells == 1
    assert series.hashprice_usd_per_hs_day["ethash"] == (2.0e-8, 2.0e-8, 2.2e-8)
    steps = [parse_time(f"2022-09-0{d}T00:00Z") for d in range(1, 7)]
    sampled = at_steps(series, ETHASH, steps, what="hashprice", fill_gaps=True)
    assert sampled.values == (2.0e-8, 2.0e-8, 2.0e-8, 2.0e-8, 2.0e-8, 2.2e-8)
    # Sep 2 to 5 take line 3's empty cell (Sep 1's value); Sep 4 and 5 are also older
    # than 1.5 days
    assert sampled.carried_steps == {1, 2, 3, 4}
    assert sampled.filled_steps == 4
    with pytest.raises(PriceDataError, match=r"prices\.csv:3: hashprice_usd_per_hs_day:ethash"):
        at_steps(series, ETHASH, steps, what="hashprice", fill_gaps=False)


def test_resampling_never_invents_prices_before_the_first_row(tmp_path: Path) -> None:
    series = read_price_csv(_write(tmp_path, _rows(*GOOD), "power.csv"), plausible_max=LIMITS)
    with pytest.raises(PriceDataError, match=r"power\.csv:2: power starts at 2022-09-01T00:00Z"):
        at_steps(
            series, POWER_COLUMN, [parse_time("2022-08-31T23:00Z")], what="power", fill_gaps=True
        )


def test_a_power_file_has_only_power(tmp_path: Path) -> None:
    path = _write(tmp_path, _rows(*GOOD), "power.csv")
    with pytest.raises(PriceDataError, match=r"power\.csv:1: unexpected column"):
        read_price_csv(path, plausible_max={}, power_only=True)


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        (
            # Chicago, spring forward on 2024-03-10: 02:00 local does not exist; written
            # with the standard-time offset it is the instant of 03:00-05:00
            ("2024-03-10T01:00-06:00", "2024-03-10T02:00-06:00", "2024-03-10T03:00-05:00"),
            (
                "duplicate timestamp 2024-03-10T08:00Z (line 3); the UTC offset changes from "
                "-06:00 (line 3) to -05:00 here: if these are local times across a "
                "daylight-saving change, one of them does not exist"
            ),
        ),
        (
            # fall back on 2024-11-03: 01:00 local happens twice, here both with -05:00
            ("2024-11-03T00:00-05:00", "2024-11-03T01:00-05:00", "2024-11-03T01:00-05:00"),
            (
                "duplicate timestamp 2024-11-03T06:00Z (line 3); if the file is in local "
                "time, 2024-11-03T01:00 may be the hour that repeats when daylight saving ends"
            ),
        ),
        (
            # the repeated hour in the wrong order: 01:30 standard time (07:30Z) before
            # 01:00 daylight time (06:00Z)
            ("2024-11-03T01:30-06:00", "2024-11-03T01:00-05:00"),
            (
                "is before line 2 (2024-11-03T07:30Z): rows must be sorted by time; the UTC "
                "offset changes from -06:00 (line 2) to -05:00 here"
            ),
        ),
    ],
    ids=["skipped-hour", "repeated-hour", "offset-backwards"],
)
def test_a_local_time_that_does_not_exist_or_repeats_is_named(
    tmp_path: Path, rows: tuple[str, ...], words: str
) -> None:
    """Timestamps carry offsets, so each names one instant; but a file written in local
    time around a daylight-saving change shows the mistake as a duplicate or backward row
    where the offset changes (or repeats a wall time), and the error says so."""
    body = "timestamp,power_usd_per_kwh\n" + "".join(f"{t},0.05\n" for t in rows)
    with pytest.raises(PriceDataError) as caught:
        read_price_csv(_write(tmp_path, body, "power.csv"), plausible_max={}, power_only=True)
    assert str(caught.value).startswith(f"power.csv:{len(rows) + 1}: ")
    assert words in str(caught.value)


def test_a_utc_file_with_a_duplicate_gets_no_daylight_saving_hint(tmp_path: Path) -> None:
    with pytest.raises(PriceDataError) as caught:
        read_price_csv(_write(tmp_path, _rows(GOOD[0], GOOD[0])), plausible_max=LIMITS)
    assert str(caught.value) == "prices.csv:3: duplicate timestamp 2022-09-01T00:00Z (line 2)"


def test_a_stale_step_suggests_the_max_gap_that_admits_it(tmp_path: Path) -> None:
    """A step 2 days after the last daily row is over the 1.5-day limit; the error
    suggests --max-gap 2d, and a file read with that limit resamples it."""
    path = _write(tmp_path, _rows(*GOOD))
    steps = [parse_time("2022-09-05T00:00Z")]
    series = read_price_csv(path, plausible_max=LIMITS)
    with pytest.raises(PriceDataError) as caught:
        at_steps(series, ETHASH, steps, what="hashprice", fill_gaps=False)
    assert str(caught.value).startswith(
        "prices.csv:4: hashprice at step 2022-09-05T00:00Z would come from 2022-09-03T00:00Z"
    )
    assert "pass --max-gap 2d or more" in str(caught.value)
    series = read_price_csv(path, plausible_max=LIMITS, max_gap_s=2 * 86_400.0)
    assert at_steps(series, ETHASH, steps, what="hashprice", fill_gaps=False).values == (2.2e-8,)


def test_an_empty_first_cell_matters_only_when_the_period_uses_it(tmp_path: Path) -> None:
    """Nothing is above it to carry, so --fill-gaps cannot repair it; a period that
    starts at the next row does not use it."""
    path = _write(tmp_path, _rows("2022-09-01T00:00Z,,0.05", *GOOD[1:]))
    series = read_price_csv(path, plausible_max=LIMITS)
    start, end = parse_time("2022-09-01T00:00Z"), parse_time("2022-09-04T00:00Z")
    with pytest.raises(
        PriceDataError, match=r"prices\.csv:2: .* start --from at 2022-09-02T00:00Z"
    ):
        check_period(series, start, end, columns=[ETHASH], fill_gaps=True)
    check_period(series, start + 86_400.0, end, columns=[ETHASH], fill_gaps=False)
