"""A real curtailment day: ERCOT's hub average real-time price on 2024-08-20 (Central time),
replayed interval by interval through the central loop and the planner.

That evening, in ERCOT's August 2024 heat, the real-time hub price rose from about
30 $/MWh to 414 $/MWh at 19:00 CDT and 4,852.83 $/MWh at 19:30 CDT (00:30Z), and was back
under 120 $/MWh by 20:45 CDT. The 96 fifteen-minute prices are in
`data/ercot_hb_hubavg_rtm_2024-08-20.csv` (source named in the file).

The site: 8 RTX 3090s on one node; `acme` reserves 2 of them all day; the other 6 mine
(rich hashprice) or could serve on-demand `spot`. Two demand-response rules apply:

- the strike: at or above 300 $/MWh (0.30 $/kWh) the site sheds mining and on-demand AI;
  at 414 $/MWh mining still pays for its power here, so only the strike stops it;
- a utility window from 18:30 to 19:15 CDT (23:30Z to 00:15Z) at 2.2 kW at the wall,
  declared ahead: before the strike it must hold the site under 2.2 kW by shedding miners,
  never acme. At the wall (the config's PUE 1.2 and PSU 0.92, a 150 W host) the node
  draws 180 W, acme's two GPUs 391 W each and an idle GPU 65 W: 1.35 kW with every other
  GPU idle; each miner adds 339 W, so two of the six may mine.

Each interval: the clock moves on 15 minutes, the price is offered to the market book, the
loop plans (its own trigger), every command it orders ends `done` at once (the agent's
events, through the dispatcher) and the node reports what runs. Checked at every plan:
acme is whole, no cap is breached, and mining is shed exactly while the rules say so.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from orchestrator.policy.curtailment import CurtailmentWindow
from orchestrator.policy.model import (
    AiPower,
    Contracts,
    Eligibility,
    OnDemandContract,
    PolicyInputs,
    ReservedContract,
)
from orchestrator.protocol import (
    GpuTelemetry,
    NodeTelemetry,
    SwitchEvent,
    WorkloadReport,
    encode,
)
from tests.central.test_policy_loop import (
    RICH_HASHPRICE,
    RTX_3090,
    Rig,
    prices,
    rig,  # noqa: F401  (the fixture)
)

pytestmark = pytest.mark.slow

DAY = Path(__file__).parent / "data" / "ercot_hb_hubavg_rtm_2024-08-20.csv"
STRIKE_USD_PER_KWH = 0.30
GPUS = 8
WINDOW = CurtailmentWindow(
    "ercot-dr-1",
    2.2,
    datetime.fromisoformat("2024-08-20T23:30:00+00:00").timestamp(),
    datetime.fromisoformat("2024-08-21T00:15:00+00:00").timestamp(),
    "utility demand response",
    "utility",
)


def day_prices() -> list[tuple[float, float]]:
    """(interval start, US$/kWh) for each of the day's 96 intervals."""
    with DAY.open(encoding="utf-8") as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return [
            (
                datetime.fromisoformat(r["interval_start_utc"].replace("Z", "+00:00")).timestamp(),
                float(r["price_usd_per_mwh"]) / 1000.0,
            )
            for r in rows
        ]


def site_policy(rig: Rig) -> PolicyInputs:  # noqa: F811
    base = rig.loop.policy
    acme = ReservedContract(
        id="acme",
        rate_usd_per_gpu_hour=0.05,  # less than a miner earns: only the SLA keeps it whole
        committed_gpus=2,
        eligibility=Eligibility(),
        windows=None,
        availability_target_fraction=0.99,
        penalty_usd_per_gpu_hour=5.0,
        lead_time_s=0.0,
        switch_downtime_s=60.0,
        power=AiPower(default_w=300.0),
    )
    spot = OnDemandContract("spot", 0.30, 0.25, None, Eligibility(), 60.0, AiPower(default_w=300.0))
    settings = replace(
        base.settings,
        interval_s=900.0,
        min_dwell_s=0.0,
        curtail_price_strike_usd_per_kwh=STRIKE_USD_PER_KWH,
    )
    return PolicyInputs(base.profiles, Contracts((acme,), (spot,)), settings)


def report(rig: Rig, workloads: dict[int, str], seq: int) -> None:  # noqa: F811
    rig.fleet.apply_telemetry(
        NodeTelemetry(
            node="rig",
            seq=seq,
            boot_s=1.0,
            sent_at_s=rig.clock.now_s,
            agent_version="test",
            nvml_backend="fake",
            gpus=tuple(
                GpuTelemetry(
                    index=i,
                    uuid=f"GPU-rig-{i}",
                    name=RTX_3090,
                    memory_total_bytes=24 * 1024**3,
                    workload=WorkloadReport(workload=workloads[i], since_s=rig.clock.now_s),
                )
                for i in range(GPUS)
            ),
        ),
        now_s=rig.clock.now_s,
    )


async def test_the_2024_08_20_ercot_evening_sheds_mining_and_keeps_the_reserved_contract(
    rig: Rig,  # noqa: F811
) -> None:
    rig.loop.policy = site_policy(rig)
    rig.loop.shed_ahead_s = 0.0
    intervals = day_prices()
    assert len(intervals) == 96
    assert max(p for _, p in intervals) == pytest.approx(4.85283)

    workloads = {i: "ai:acme" if i < 2 else "mine:kawpow" for i in range(GPUS)}
    seq = 1
    rig.clock.now_s = intervals[0][0] - 900.0
    rig.fleet.started_at_s = rig.clock.now_s - 60.0
    report(rig, workloads, seq)
    prices(rig, hashprice=RICH_HASHPRICE, power=intervals[0][1])
    rig.loop.replace_curtailments((WINDOW,))

    shed_by_strike: list[float] = []
    shed_by_window: list[float] = []
    for start_s, price in intervals:
        rig.clock.now_s = start_s
        prices(rig, hashprice=RICH_HASHPRICE, power=price)
        trigger = rig.loop.due(rig.clock.now_s)
        assert trigger is not None, "a new interval is always due (timer, price or edge)"
        record = await rig.loop.plan_once(trigger)
        assert record is not None
        plan = record.plan
        planned = [a.workload for a in plan.assignments.values()]
        assert planned.count("ai:acme") == 2, f"acme short at {start_s}"
        assert all(s.shortfall_gpus == 0 for s in plan.sla)
        in_window = WINDOW.in_force(start_s)
        if in_window:
            assert plan.power_cap_w == 2200.0
            assert plan.total_power_w <= 2200.0
            assert record.curtailment == WINDOW
        else:
            assert plan.power_cap_w is None
        if price >= STRIKE_USD_PER_KWH:
            assert plan.shed_by_strike
            assert planned.count("mine:kawpow") == planned.count("ai:spot") == 0
            shed_by_strike.append(start_s)
        elif in_window:
            assert 0 < planned.count("mine:kawpow") < GPUS - 2  # some mine: mining shed first
            shed = [a for a in plan.assignments.values() if a.workload == "idle"]
            assert shed
            assert all("curtailment window ercot-dr-1 (cap 2.2 kW)" in a.reason for a in shed)
            shed_by_window.append(start_s)
        else:
            assert planned.count("mine:kawpow") == GPUS - 2, f"not mining at {start_s}"
        # the node switches at once and says so
        for command in record.commands:
            seq += 1
            index = int(command.gpu.split(":")[1])
            done = SwitchEvent(
                command_id=command.command_id,
                generation=command.generation,
                node="rig",
                gpu_index=index,
                workload=command.workload,
                state="done",
                at_s=rig.clock.now_s,
                seq=seq,
                boot_s=1.0,
                actual=command.workload,
                actual_since_s=rig.clock.now_s,
            )
            rig.loop.dispatcher.on_event("rig", encode(done))
            workloads[index] = command.workload
        seq += 1
        report(rig, workloads, seq)

    def utc(text: str) -> float:
        return datetime.fromisoformat(f"2024-08-{text}:00+00:00").timestamp()

    # 19:00 to 20:30 CDT: 414, 2387, 4853, 4588, 4222, 2015 and 920 $/MWh
    assert shed_by_strike == [
        utc(f"21T0{h}") for h in ("0:00", "0:15", "0:30", "0:45", "1:00", "1:15", "1:30")
    ]
    # the window before the strike: 18:30 and 18:45 CDT (121 and 190 $/MWh)
    assert shed_by_window == [utc("20T23:30"), utc("20T23:45")]
    # and mining is back for the rest of the evening
    assert workloads == {i: "ai:acme" if i < 2 else "mine:kawpow" for i in range(GPUS)}
