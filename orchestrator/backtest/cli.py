"""`orchestrator backtest`: arguments, the backtest's config, and the run from files to report.

The command reads a serve config TOML, but only what a backtest needs: the policy
tables (`mining_profiles`, `contracts` and `planner` at the top level as in the serve
config, or under a `[policy]` table; validated by `orchestrator.config.policy.PolicySection`)
and its own `[backtest]` section. Everything else in the file
(mqtt, http, ...) is ignored. `[backtest]`:

    [backtest]
    step = "1h"                    # default: the finest interval of the price files
    power_usd_per_kwh = 0.05       # constant, when the prices have no power column
    static_split_ai_fraction = 0.5 # the static-split baseline
    max_gap = "36h"                # every price file; default: 1.5 x each file's median interval
    [[backtest.fleet]]
    model = "NVIDIA A100 80GB PCIe"
    count = 32
    memory_gib = 80

`--fleet "MODEL=COUNT@GIB;MODEL=COUNT@GIB"` replaces the configured fleet.

Exit status: 0 with the report; 2 for unusable input (config, CSV, arguments), with one
line per problem on stderr naming the file and line or the key.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from orchestrator.backtest.engine import FleetGroup, Scenario, make_scenario, run_strategy
from orchestrator.backtest.prices import (
    HASHPRICE_PREFIX,
    POWER_COLUMN,
    PriceDataError,
    PriceSeries,
    Resampled,
    at_steps,
    check_period,
    format_time,
    plausible_hashprice_max,
    read_price_csv,
)
from orchestrator.backtest.report import format_table, render_svg, to_json
from orchestrator.backtest.strategies import default_strategies
from orchestrator.backtest.sweep import format_sweep, parse_duration_s, parse_sweep, run_sweep
from orchestrator.config.backtest import BacktestSection, add_backtest_parser
from orchestrator.config.policy import PolicySection, contract_problems
from orchestrator.policy.model import PolicyInputs, policy_from_config
from orchestrator.policy.power import NEUTRAL_SITE

EXIT_BAD_INPUT = 2
__all__ = ["add_backtest_parser", "main", "run_backtest_command"]


class BacktestInputError(Exception):
    """Unusable input; the message names the file and line or the key."""


def _parse_moment(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BacktestInputError(f"{text!r} is not an ISO date or timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_fleet(spec: str) -> list[FleetGroup]:
    """`"NVIDIA A100 80GB PCIe=32@80;NVIDIA GeForce RTX 3090=64@24"` -> groups."""
    groups = []
    for part in spec.split(";"):
        model, sep, rest = part.strip().rpartition("=")
        count_text, _, gib_text = rest.partition("@")
        try:
            count = int(count_text)
            memory_gib = float(gib_text) if gib_text else 24.0
        except ValueError:
            count = memory_gib = 0
        if not sep or not model or count < 1 or memory_gib <= 0:
            raise BacktestInputError(f"--fleet {part!r}: expected MODEL=COUNT[@GIB]")
        groups.append(FleetGroup(model.strip(), count, memory_gib))
    return groups


def load_backtest_config(path: Path) -> tuple[PolicyInputs, BacktestSection, PolicySection]:
    """The policy and `[backtest]` sections of a serve config (other sections ignored)."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise BacktestInputError(f"{path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise BacktestInputError(f"{path}: {error}") from None
    raw_policy = document.get("policy")
    prefix = "policy."
    if raw_policy is None:
        keys = ("mining_profiles", "contracts", "planner")
        raw_policy = {k: document[k] for k in keys if k in document}
        prefix = ""
    try:
        policy = PolicySection.model_validate(raw_policy)
    except ValidationError as error:
        raise BacktestInputError(_problems(path, error, prefix)) from None
    try:
        backtest = BacktestSection.model_validate(document.get("backtest", {}))
    except ValidationError as error:
        raise BacktestInputError(_problems(path, error, "backtest.")) from None
    inputs = policy_from_config(policy)
    # the backtest accounts board power (benchmarks, contract power_w, idle_power_w): the
    # live policy it replays plans on the same figures, not at the wall, so that deciding
    # and accounting agree
    inputs = replace(inputs, settings=replace(inputs.settings, site_power=NEUTRAL_SITE))
    return inputs, backtest, policy


def _problems(path: Path, error: ValidationError, prefix: str) -> str:
    lines = []
    for item in error.errors():
        key = prefix + ".".join(str(p) for p in item["loc"])
        reason = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"{path}: {key.rstrip('.')}: {reason}")
    return "\n".join(lines)


def build_scenario(args: argparse.Namespace) -> tuple[Scenario, BacktestSection, list[str]]:
    """Config and price files -> a scenario, plus the notes to print with the report."""
    policy, backtest, policy_section = load_backtest_config(args.config)
    groups = (
        parse_fleet(args.fleet)
        if args.fleet
        else [FleetGroup(g.model, g.count, g.memory_gib) for g in backtest.fleet]
    )
    if not groups:
        raise BacktestInputError(
            f"{args.config}: no fleet: add [[backtest.fleet]] entries or pass --fleet"
        )
    notes: list[str] = []
    fleet_models: dict[str, int] = {}
    for g in groups:
        fleet_models[g.model] = fleet_models.get(g.model, 0) + g.count
    notes.extend(
        f"contract problem: {p}" for p in contract_problems(policy_section.contracts, fleet_models)
    )
    benchmarks: dict[str, dict[str, float]] = {}
    for profile in policy.profiles:
        by_model = benchmarks.setdefault(profile.algorithm, {})
        for model, bench in profile.benchmarks.items():
            by_model[model] = max(by_model.get(model, 0.0), bench.hashrate_hs)
    max_gap_text = args.max_gap or backtest.max_gap
    max_gap_s = parse_duration_s(max_gap_text) if max_gap_text else None
    limits = plausible_hashprice_max(benchmarks)
    prices = read_price_csv(args.prices, plausible_max=limits, max_gap_s=max_gap_s)
    power: PriceSeries | None = None
    if args.power is not None:
        power = read_price_csv(args.power, plausible_max={}, max_gap_s=max_gap_s, power_only=True)
    notes.extend(
        f"mining profile {profile.id!r}: no hashprice column for {profile.algorithm!r} "
        f"in {prices.source}, so it is never mined"
        for profile in policy.profiles
        if profile.algorithm not in prices.algorithms
    )
    step_text = args.step or backtest.step
    intervals = [s.interval_s for s in (prices, power) if s is not None and s.interval_s > 0]
    step_s = parse_duration_s(step_text) if step_text else min(intervals, default=3600.0)
    if step_s <= 0:
        raise BacktestInputError("--step must be positive")
    start_s = _parse_moment(args.start) if args.start else prices.times_s[0]
    end_s = (
        _parse_moment(args.end) if args.end else prices.times_s[-1] + (prices.interval_s or step_s)
    )
    n_steps = int((end_s - start_s) // step_s)
    if n_steps < 1:
        raise BacktestInputError(
            f"no steps between {format_time(start_s)} and {format_time(end_s)} at {step_s:g} s"
        )
    steps = [start_s + i * step_s for i in range(n_steps)]
    period_end_s = steps[-1] + step_s
    # the columns each file contributes: the power file's power replaces the prices' column
    used: list[tuple[PriceSeries, list[str]]] = [
        (prices, [c for c in prices.columns if power is None or c != POWER_COLUMN])
    ]
    if power is not None:
        used.append((power, [POWER_COLUMN]))
    for series, columns in used:
        check_period(series, start_s, period_end_s, columns=columns, fill_gaps=args.fill_gaps)
    hashprice = {}
    carried: list[set[int]] = [set() for _ in used]  # steps, per file as in `used`
    for algorithm in prices.algorithms:
        sampled = at_steps(
            prices,
            HASHPRICE_PREFIX + algorithm,
            steps,
            what=f"hashprice {algorithm}",
            fill_gaps=args.fill_gaps,
        )
        hashprice[algorithm] = sampled.values
        carried[0] |= sampled.carried_steps
    power_values, power_sampled = _power_values(
        args, backtest=backtest, prices=prices, power=power, steps=steps, notes=notes
    )
    if power_sampled is not None:
        carried[0 if power_sampled[0] is prices else 1] |= power_sampled[1].carried_steps
    if args.fill_gaps:
        notes.extend(
            f"--fill-gaps: {len(steps_carried)} of {len(steps)} steps used a carried-over "
            f"price from {series.source} (older than its gap limit, or an empty cell)"
            for (series, _), steps_carried in zip(used, carried, strict=True)
        )
    scenario = make_scenario(
        groups,
        policy,
        steps_s=steps,
        step_s=step_s,
        hashprice_usd_per_hs_day=hashprice,
        power_usd_per_kwh=power_values,
    )
    return scenario, backtest, notes


def _power_values(
    args: argparse.Namespace,
    *,
    backtest: BacktestSection,
    prices: PriceSeries,
    power: PriceSeries | None,
    steps: list[float],
    notes: list[str],
) -> tuple[tuple[float, ...], tuple[PriceSeries, Resampled] | None]:
    """Power price per step: the --power file, else the prices' column, else the constant;
    with the file it came from and its resampling (None for the constant)."""
    for series in (power, prices):
        if series is None or series.power_usd_per_kwh is None:
            continue
        sampled = at_steps(
            series, POWER_COLUMN, steps, what="power price", fill_gaps=args.fill_gaps
        )
        if series is power:
            notes.append(f"power price from {series.source}, last value carried forward per step")
        return sampled.values, (series, sampled)
    if backtest.power_usd_per_kwh is not None:
        notes.append(f"power price constant at {backtest.power_usd_per_kwh:g} US$/kWh (config)")
        return (backtest.power_usd_per_kwh,) * len(steps), None
    raise BacktestInputError(
        f"{prices.source}: no power price: add a power_usd_per_kwh column, pass --power, "
        "or set [backtest] power_usd_per_kwh"
    )


def _split_fraction(args: argparse.Namespace, backtest: BacktestSection) -> float:
    fraction: float = args.split if args.split is not None else backtest.static_split_ai_fraction
    if not 0.0 <= fraction <= 1.0:
        raise BacktestInputError(f"--split {fraction}: expected a fraction from 0 to 1")
    return fraction


def run_backtest_command(args: argparse.Namespace) -> int:
    """Run `orchestrator backtest` with parsed `args`; print the report; return the exit code."""
    try:
        scenario, backtest, notes = build_scenario(args)
        grid = parse_sweep(args.sweep) if args.sweep else None
        fraction = _split_fraction(args, backtest)
    except (BacktestInputError, PriceDataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    strategies = default_strategies(fraction)
    results = [run_strategy(scenario, s) for s in strategies]
    live_name = strategies[0].name
    print(
        f"backtest {format_time(scenario.steps_s[0])} .. "
        f"{format_time(scenario.steps_s[-1] + scenario.step_s)}, {len(scenario.steps_s)} steps "
        f"of {scenario.step_s:g} s, {scenario.gpu_count} GPUs"
    )
    print(format_table(results), end="")
    for note in notes:
        print(f"note: {note}")
    sweep_rows = None
    if grid is not None:
        sweep_rows = run_sweep(scenario, grid)
        print()
        print(format_sweep(sweep_rows), end="")
    if args.json is not None:
        document = to_json(scenario, results, notes, sweep_rows)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if args.svg is not None:
        args.svg.write_text(render_svg(scenario, results, live_name), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m orchestrator.backtest.cli`) until the lead wires it in."""
    parser = argparse.ArgumentParser(prog="orchestrator")
    add_backtest_parser(parser.add_subparsers(dest="command", required=True))
    return run_backtest_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
