"""Derive the backtest's sample data from ../shared/data/market-history (see its SOURCES.md).

Run: `python bench/derive_sample_data.py [--history DIR] [--out DIR] [--coinmetrics DIR]`.

Writes to orchestrator/backtest/data/ (shipped with the package), from sources that are not
Coin Metrics:
- power-ercot-hubavg-dam-2024.csv: ERCOT day-ahead hub average, every hour of 2024 (UTC),
  US$/kWh = US$/MWh / 1000 + DELIVERY_ADDER_USD_PER_KWH (an assumption, not data).
- hashprice-randomx-equihash-2020.csv: bitinfocharts daily "mining profitability" for
  Monero (RandomX, USD/day per kH/s) and Zcash (Equihash, USD/day per kSol/s) in 2020,
  divided by 1000 to US$ per H/s (per Sol/s) per day.
- hashprice-randomx-equihash-on-2024.csv: the same bitinfocharts series, its last 366 days
  (2019-12-27 .. 2020-12-26) moved by 1,466 days onto 2024-01-01 .. 2024-12-31, so that a
  year of real GPU-coin hashprices lines up with 2024's hourly ERCOT power prices (a
  what-if: the two series are from different years; nothing else is changed).
- ai-rates-primeintellect-2025.csv: per GPU type, the median over Prime Intellect
  marketplace snapshots (2025-10-19 .. 2025-11-16, MIT-licensed collection) of the offer
  median and of the offer 25th percentile, US$ per GPU-hour.

With `--coinmetrics DIR` it also writes DIR/hashprice-ethash-merge-2022.csv: Ethereum's
ethash hashprice around the Merge, computed from Coin Metrics community data (CC BY-NC 4.0,
non-commercial). It is NOT shipped: write it somewhere ignored (the default is build/).
hashprice = 86400 s/day x 2 ETH block reward x PriceUSD / DiffMean (a hash finds a block
with probability 1/difficulty); fees and uncle rewards are left out (a few % low).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HISTORY = ROOT.parent / "shared" / "data" / "market-history"
OUT = ROOT / "orchestrator" / "backtest" / "data"
DELIVERY_ADDER_USD_PER_KWH = 0.010
ETH_BLOCK_REWARD = 2.0  # ETH per block since Constantinople (2019-02-28) until the Merge
SECONDS_PER_DAY = 86_400
MERGE_UTC = "2022-09-15T06:43Z"  # the first proof-of-stake block, block 15537394, ~06:42:59
MERGE_FROM, MERGE_TO = "2022-03-15", "2023-02-25"  # ~six months either side


def _iso_day(text: str) -> str:
    return datetime.strptime(text, "%Y/%m/%d").replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%MZ")


def derive_power(history: Path, out: Path) -> int:
    source = history / "electricity" / "ercot_hb_hubavg_dam_hourly_2024-2025.csv"
    rows = 0
    with source.open() as handle, (out / "power-ercot-hubavg-dam-2024.csv").open("w") as sink:
        sink.write("timestamp,power_usd_per_kwh\n")
        for row in csv.DictReader(handle):
            stamp = row["interval_start_utc"]
            if not stamp.startswith("2024-"):
                continue
            usd_per_kwh = float(row["price_usd_per_mwh"]) / 1000.0 + DELIVERY_ADDER_USD_PER_KWH
            sink.write(f"{stamp[:16]}Z,{usd_per_kwh:.5f}\n")
            rows += 1
    return rows


def derive_gpu_coins_2020(history: Path, out: Path) -> int:
    columns = {
        "randomx": history / "gpu-coins" / "bitinfocharts_xmr_daily_2014-2020.csv",
        "equihash": history / "gpu-coins" / "bitinfocharts_zec_daily_2016-2020.csv",
    }
    by_day: dict[str, dict[str, float]] = defaultdict(dict)
    for algorithm, path in columns.items():
        with path.open() as handle:
            for row in csv.DictReader(handle):
                if row["date"].startswith("2020/") and row["mining_profitability"]:
                    per_k = float(row["mining_profitability"])
                    by_day[row["date"]][algorithm] = per_k / 1000.0
    days = sorted(d for d, v in by_day.items() if len(v) == len(columns))
    with (out / "hashprice-randomx-equihash-2020.csv").open("w") as sink:
        names = ",".join(f"hashprice_usd_per_hs_day:{a}" for a in columns)
        sink.write(f"timestamp,{names}\n")
        for day in days:
            values = ",".join(f"{by_day[day][a]:.4e}" for a in columns)
            sink.write(f"{_iso_day(day)},{values}\n")
    return len(days)


REPLAY_FROM, REPLAY_DAYS, REPLAY_SHIFT_DAYS = "2019/12/27", 366, 1466  # onto 2024-01-01 ..


def derive_gpu_coins_on_2024(history: Path, out: Path) -> int:
    """Monero and Zcash hashprices of 2019-12-27 .. 2020-12-26 replayed on 2024's dates."""
    columns = {
        "randomx": history / "gpu-coins" / "bitinfocharts_xmr_daily_2014-2020.csv",
        "equihash": history / "gpu-coins" / "bitinfocharts_zec_daily_2016-2020.csv",
    }
    by_day: dict[str, dict[str, float]] = defaultdict(dict)
    for algorithm, path in columns.items():
        with path.open() as handle:
            for row in csv.DictReader(handle):
                if row["date"] >= REPLAY_FROM and row["mining_profitability"]:
                    by_day[row["date"]][algorithm] = float(row["mining_profitability"]) / 1000.0
    days = sorted(d for d, v in by_day.items() if len(v) == len(columns))[:REPLAY_DAYS]
    with (out / "hashprice-randomx-equihash-on-2024.csv").open("w") as sink:
        names = ",".join(f"hashprice_usd_per_hs_day:{a}" for a in columns)
        sink.write(f"timestamp,{names}\n")
        for day in days:
            moved = datetime.strptime(day, "%Y/%m/%d").replace(tzinfo=UTC) + timedelta(
                days=REPLAY_SHIFT_DAYS
            )
            values = ",".join(f"{by_day[day][a]:.4e}" for a in columns)
            sink.write(f"{moved.strftime('%Y-%m-%dT%H:%MZ')},{values}\n")
    return len(days)


def derive_ai_rates(history: Path, out: Path) -> int:
    source = (
        history / "gpu-rental" / "primeintellect_gpu_usd_per_gpu_hour_snapshots_2025-10_2025-11.csv"
    )
    medians: dict[str, list[float]] = defaultdict(list)
    p25s: dict[str, list[float]] = defaultdict(list)
    stamps: list[str] = []
    with source.open() as handle:
        for row in csv.DictReader(handle):
            name = row["gpu_type"] + (f" {row['socket_type']}" if row["socket_type"] else "")
            medians[name].append(float(row["price_median"]))
            p25s[name].append(float(row["price_p25"]))
            stamps.append(row["timestamp_utc"])
    with (out / "ai-rates-primeintellect-2025.csv").open("w") as sink:
        sink.write(
            "gpu_type,snapshots,first_snapshot,last_snapshot,"
            "median_of_offer_median_usd_per_gpu_hour,median_of_offer_p25_usd_per_gpu_hour\n"
        )
        for name in sorted(medians):
            sink.write(
                f"{name},{len(medians[name])},{min(stamps)[:16]}Z,{max(stamps)[:16]}Z,"
                f"{statistics.median(medians[name]):.2f},{statistics.median(p25s[name]):.2f}\n"
            )
    return len(medians)


def derive_merge_coinmetrics(history: Path, out: Path) -> int:
    """The ethash Merge series (Coin Metrics, non-commercial: never shipped)."""
    source = history / "gpu-coins" / "coinmetrics_eth_subset_daily_2015-2023.csv"
    rows = list(csv.DictReader(source.open()))
    lines = []
    previous_difficulty = 0.0
    for row in rows:
        day = row["time"]
        if not MERGE_FROM <= day <= MERGE_TO:
            continue
        price, difficulty = float(row["PriceUSD"]), float(row["DiffMean"])
        stamp = f"{day}T00:00Z"
        if day < "2022-09-15":
            lines.append((stamp, SECONDS_PER_DAY * ETH_BLOCK_REWARD * price / difficulty))
            previous_difficulty = difficulty
        elif day == "2022-09-15":  # the day's mean mixes in proof-of-stake blocks: use the eve's
            lines.append((stamp, SECONDS_PER_DAY * ETH_BLOCK_REWARD * price / previous_difficulty))
            lines.append((MERGE_UTC, 0.0))
        else:
            lines.append((stamp, 0.0))
    with (out / "hashprice-ethash-merge-2022.csv").open("w") as sink:
        sink.write("timestamp,hashprice_usd_per_hs_day:ethash\n")
        for stamp, value in lines:
            sink.write(f"{stamp},{value:.4e}\n")
    return len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, default=HISTORY)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--coinmetrics",
        type=Path,
        nargs="?",
        const=ROOT / "build" / "backtest-data",
        help="also derive the ethash Merge series from Coin Metrics data (not shipped)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"power: {derive_power(args.history, args.out)} hourly rows")
    print(f"randomx/equihash 2020: {derive_gpu_coins_2020(args.history, args.out)} daily rows")
    rows = derive_gpu_coins_on_2024(args.history, args.out)
    print(f"randomx/equihash 2020 replayed on 2024: {rows} daily rows")
    print(f"AI rates: {derive_ai_rates(args.history, args.out)} GPU types")
    if args.coinmetrics is not None:
        args.coinmetrics.mkdir(parents=True, exist_ok=True)
        rows = derive_merge_coinmetrics(args.history, args.coinmetrics)
        print(
            f"ethash Merge (Coin Metrics, CC BY-NC 4.0, not shipped): {rows} rows "
            f"in {args.coinmetrics}"
        )


if __name__ == "__main__":
    main()
