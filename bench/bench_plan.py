"""Benchmark: a full re-plan of 1k, 10k and 50k GPUs (5 models, 10 contracts, 4 algorithms).

Run as `python bench/bench_plan.py [--repeats N]`. Prints the median and p90 wall time of
`plan()` for each fleet size next to the target from issue 3 (10k GPUs <= 250 ms median on
a 2-core machine, 1k GPUs <= 30 ms). The fleet is deliberately untidy: measured hashrates
with noise on every mining GPU, a fifth of the GPUs inside their minimum dwell, 1 % offline,
a few overrides, reserved contracts with windows, and a site power cap that binds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.policy.model import (
    AiPower,
    Benchmark,
    Contracts,
    Eligibility,
    GpuState,
    Market,
    MeasuredRate,
    MiningProfile,
    OnDemandContract,
    Override,
    PlannerSettings,
    ReservedContract,
    ScheduleWindow,
)
from orchestrator.policy.planner import plan

NOW_S = 1_790_000_000.0
GIB = 1024**3
MODELS = {  # name: (memory GiB, relative speed, power W)
    "NVIDIA GeForce RTX 3070": (8, 0.6, 130.0),
    "NVIDIA GeForce RTX 3080": (10, 0.8, 220.0),
    "NVIDIA GeForce RTX 3090": (24, 1.0, 290.0),
    "NVIDIA GeForce RTX 4090": (24, 1.5, 320.0),
    "NVIDIA A100-SXM4-80GB": (80, 1.3, 300.0),
}
ALGORITHMS = {  # algorithm: (H/s of a 3090, $ per H/s per day)
    "kawpow": (30e6, 4.0e-8),
    "etchash": (120e6, 1.0e-8),
    "autolykos2": (250e6, 4.6e-9),
    "kheavyhash": (1.2e9, 1.0e-9),
}
TARGETS_MS = {1_000: 30.0, 10_000: 250.0, 50_000: None}


def build_inputs(
    n_gpus: int, seed: int = 7
) -> tuple[
    list[GpuState], Market, Contracts, list[MiningProfile], dict[str, Override], PlannerSettings
]:
    rng = random.Random(seed)  # noqa: S311  (a reproducible fleet, not a secret)
    profiles = [
        MiningProfile(
            id=algorithm,
            algorithm=algorithm,
            pool_fee_fraction=0.01,
            switch_downtime_s=30.0,
            benchmarks={
                model: Benchmark(base_hs * speed, power_w * 0.9)
                for model, (_, speed, power_w) in MODELS.items()
            },
        )
        for algorithm, (base_hs, _) in ALGORITHMS.items()
    ]
    big = Eligibility(min_memory_bytes=20 * GIB)
    weekday = ScheduleWindow(frozenset(range(5)), 8 * 60, 20 * 60, "Europe/Berlin")
    reserved = tuple(
        ReservedContract(
            id=f"reserved{i}",
            rate_usd_per_gpu_hour=0.30 + 0.05 * i,
            committed_gpus=max(1, n_gpus // 60),
            eligibility=big if i % 2 else Eligibility(),
            windows=None if i < 3 else (weekday,),
            availability_target_fraction=0.99,
            penalty_usd_per_gpu_hour=1.0,
            lead_time_s=900.0,
            switch_downtime_s=300.0,
            power=AiPower(default_w=280.0),
        )
        for i in range(6)
    )
    on_demand = tuple(
        OnDemandContract(
            id=f"spot{i}",
            rate_usd_per_gpu_hour=0.35 + 0.04 * i,
            expected_utilisation_fraction=0.7,
            max_gpus=n_gpus // 20,
            eligibility=big if i % 2 else Eligibility(),
            switch_downtime_s=240.0,
            power=AiPower(default_w=260.0),
        )
        for i in range(4)
    )
    workloads = ["idle"] + [f"mine:{p.id}" for p in profiles]
    workloads += [f"ai:{c.id}" for c in reserved] + [f"ai:{c.id}" for c in on_demand]
    fleet = []
    for i in range(n_gpus):
        model = rng.choice(list(MODELS))
        memory_gib, _, _ = MODELS[model]
        current = rng.choice(workloads)
        measured = {}
        if current.startswith("mine:"):
            profile = next(p for p in profiles if f"mine:{p.id}" == current)
            bench = profile.benchmarks[model]
            measured[profile.id] = MeasuredRate(
                bench.hashrate_hs * rng.gauss(1.0, 0.01), bench.power_w * rng.gauss(1.0, 0.01)
            )
        fleet.append(
            GpuState(
                key=f"node{i // 8}:{i % 8}",
                uuid=f"GPU-{i:08d}",
                model=model,
                memory_total_bytes=memory_gib * GIB,
                online=rng.random() > 0.01,
                healthy=rng.random() > 0.005,
                current_workload=current,
                since_s=NOW_S - rng.uniform(0, 3000),
                measured=measured,
            )
        )
    overrides = {
        g.key: Override(g.key, "idle", by="ops", until_s=NOW_S + 3600)
        for g in rng.sample(fleet, max(1, n_gpus // 500))
    }
    market = Market({a: price for a, (_, price) in ALGORITHMS.items()}, 0.06)
    settings = PlannerSettings(
        min_dwell_s=600.0,
        hysteresis_margin_usd_per_gpu_hour=0.02,
        switch_fixed_cost_usd=0.01,
        site_power_cap_kw=n_gpus * 0.24,
    )
    return fleet, market, Contracts(reserved, on_demand), profiles, overrides, settings


def time_plan(n_gpus: int, repeats: int) -> tuple[list[float], int]:
    fleet, market, contracts, profiles, overrides, settings = build_inputs(n_gpus)
    timings_ms = []
    switches = 0
    for _ in range(repeats + 1):
        started = time.perf_counter()
        result = plan(
            fleet,
            market,
            contracts=contracts,
            profiles=profiles,
            overrides=overrides,
            settings=settings,
            now_s=NOW_S,
        )
        timings_ms.append((time.perf_counter() - started) * 1000.0)
        switches = result.switches
    return timings_ms[1:], switches  # the first run warms imports and caches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"plan() benchmark, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'GPUs':>7} {'median ms':>10} {'p90 ms':>8} {'target ms':>10}  switches")
    for n_gpus, target_ms in TARGETS_MS.items():
        repeats = args.repeats if n_gpus <= 10_000 else max(3, args.repeats // 3)
        timings_ms, switches = time_plan(n_gpus, repeats)
        median_ms = statistics.median(timings_ms)
        p90_ms = statistics.quantiles(timings_ms, n=10)[-1] if len(timings_ms) > 1 else median_ms
        target = f"<= {target_ms:.0f}" if target_ms is not None else "-"
        verdict = "" if target_ms is None else ("ok" if median_ms <= target_ms else "MISSED")
        print(
            f"{n_gpus:>7} {median_ms:>10.1f} {p90_ms:>8.1f} {target:>10}  {switches:>8}  {verdict}"
        )


if __name__ == "__main__":
    main()
