"""From telemetry to the planner's view: the agent's latest word, and dwell from facts.

Pure, no broker: a `FleetState` fed snapshots, a `GpuBook` fed final events, the observer
and the real planner.
"""

from __future__ import annotations

import pytest

from orchestrator.agents.miners import MINER_APIS, MinerApiError, parse_miner
from orchestrator.central.fleet import FleetState
from orchestrator.central.gpubook import Fact, GpuBook
from orchestrator.central.observe import FleetObserver
from orchestrator.config.policy import PolicySection
from orchestrator.domain import IDLE, SwitchState
from orchestrator.policy.economics import mining_rate
from orchestrator.policy.model import Market, MeasuredRate, policy_from_config
from orchestrator.policy.planner import plan
from orchestrator.protocol import GpuTelemetry, NodeTelemetry, WorkloadReport
from tests.agents.miners.conftest import UPSTREAM, fixture_bytes

A100 = "NVIDIA A100-SXM4-80GB"
NOW_S = 100_000.0
POLICY = policy_from_config(
    PolicySection.model_validate(
        {
            "mining_profiles": [
                {
                    "id": "kawpow",
                    "algorithm": "kawpow",
                    "switch_downtime_s": 20.0,
                    "benchmarks": {A100: {"hashrate_hs": 60e6, "power_w": 300.0}},
                }
            ],
            "contracts": {
                "reserved": [
                    {
                        "id": "acme",
                        "rate_usd_per_gpu_hour": 0.10,
                        "committed_gpus": 1,
                        "eligible_models": [A100],
                        "penalty_usd_per_gpu_hour": 0.0,
                    }
                ]
            },
            "planner": {"min_dwell_s": 600.0, "hysteresis_margin_usd_per_gpu_hour": 0.01},
        }
    )
)
RICH = Market(hashprice_usd_per_hs_day={"kawpow": 1.0e-7}, power_price_usd_per_kwh=0.05)


def snapshot(
    workloads: list[tuple[str, float | None]], *, seq: int = 5, boot_s: float = 1.0
) -> NodeTelemetry:
    return NodeTelemetry(
        node="rig",
        seq=seq,
        boot_s=boot_s,
        sent_at_s=NOW_S,
        agent_version="test",
        nvml_backend="fake",
        gpus=tuple(
            GpuTelemetry(
                index=i,
                uuid=f"GPU-{i}",
                name=A100,
                memory_total_bytes=80 * 1024**3,
                power_draw_w=300.0,
                workload=WorkloadReport(workload=workload, since_s=since_s),
            )
            for i, (workload, since_s) in enumerate(workloads)
        ),
    )


def fleet_of(message: NodeTelemetry) -> FleetState:
    fleet = FleetState(offline_after_s=30.0, started_at_s=NOW_S - 5)
    fleet.apply_telemetry(message, now_s=NOW_S)
    return fleet


def test_a_fresh_site_moves_its_idle_gpus_at_the_first_plan() -> None:
    """Idle since nobody knows when: no dwell is owed, whatever `min_dwell_s` says."""
    fleet = fleet_of(snapshot([(IDLE, None), (IDLE, None), (IDLE, None)]))
    gpus = FleetObserver().observe(fleet, now_s=NOW_S, sla_workloads={"ai:acme"})
    assert [g.since_s for g in gpus] == [None, None, None]
    result = plan(
        gpus,
        RICH,
        contracts=POLICY.contracts,
        profiles=POLICY.profiles,
        overrides={},
        settings=POLICY.settings,
        now_s=NOW_S,
    )
    assert sorted(a.workload or "" for a in result.assignments.values()) == [
        "ai:acme",
        "mine:kawpow",
        "mine:kawpow",
    ]
    assert all(a.changed for a in result.assignments.values())


def test_dwell_runs_from_the_agents_start_time_and_holds_an_sla_gpu_of_unknown_start() -> None:
    fleet = fleet_of(
        snapshot([(IDLE, NOW_S - 60.0), ("ai:acme", None), ("mine:kawpow", NOW_S - 7_200.0)])
    )
    observer = FleetObserver()
    gpus = observer.observe(fleet, now_s=NOW_S, sla_workloads={"ai:acme"})
    assert [g.since_s for g in gpus] == [NOW_S - 60.0, NOW_S, NOW_S - 7_200.0]
    # the SLA GPU is held from first sight, not from each plan
    later = observer.observe(fleet, now_s=NOW_S + 30.0, sla_workloads={"ai:acme"})
    assert later[1].since_s == NOW_S


def test_a_snapshot_numbered_before_the_last_final_event_is_passed_over() -> None:
    """The agent said `done` (mine:kawpow) at seq 7; a snapshot sampled at seq 6 (still
    idle), delivered later, must not be what the planner sees. Seq 8 is the truth again."""
    book = GpuBook()
    fact = Fact((1.0, 7, NOW_S), "mine:kawpow", NOW_S - 1.0, SwitchState.DONE, "c" * 32, NOW_S)
    assert book.record_final("rig:0", fact)
    observer = FleetObserver()
    older = fleet_of(snapshot([(IDLE, NOW_S - 90.0)], seq=6))
    (gpu,) = observer.observe(older, now_s=NOW_S, book=book)
    assert (gpu.current_workload, gpu.since_s) == ("mine:kawpow", NOW_S - 1.0)
    newer = fleet_of(snapshot([(IDLE, NOW_S + 5.0)], seq=8))
    (gpu,) = observer.observe(newer, now_s=NOW_S, book=book)
    assert gpu.current_workload == IDLE
    # a restarted agent numbers from 1 again, under a later boot: its word is newer
    rebooted = fleet_of(snapshot([(IDLE, None)], seq=1, boot_s=2.0))
    (gpu,) = observer.observe(rebooted, now_s=NOW_S, book=book)
    assert gpu.current_workload == IDLE
    # the same event again (or an older one) does not move the GPU back
    assert not book.record_final("rig:0", fact)
    # a node rebooted before its clock was synchronised: its boot_s is earlier than the
    # fact's, yet a new run of the agent is the truth from its first report
    skewed = fleet_of(snapshot([(IDLE, None)], seq=1, boot_s=0.5))
    (gpu,) = observer.observe(skewed, now_s=NOW_S, book=book)
    assert gpu.current_workload == IDLE


# ---------------------------------------------------------------- measured hashrate


KAWPOW = {p.id: p for p in POLICY.profiles}  # warm-up 120 s, full trust at 10 readings


def mining(
    seq: int,
    *,
    hashrate_hs: float | None,
    since_s: float | None = NOW_S - 600.0,
    sent_at_s: float = NOW_S,
    shares: tuple[int, int] | None = None,
) -> FleetState:
    """One GPU mining kawpow, as snapshot number `seq` says it."""
    accepted, rejected = shares if shares is not None else (None, None)
    report = WorkloadReport(
        workload="mine:kawpow",
        since_s=since_s,
        hashrate_hs=hashrate_hs,
        accepted_shares=accepted,
        rejected_shares=rejected,
    )
    message = NodeTelemetry(
        node="rig",
        seq=seq,
        boot_s=1.0,
        sent_at_s=sent_at_s,
        agent_version="test",
        nvml_backend="fake",
        gpus=(
            GpuTelemetry(
                index=0,
                uuid="GPU-0",
                name=A100,
                memory_total_bytes=80 * 1024**3,
                power_draw_w=300.0,
                workload=report,
            ),
        ),
    )
    return fleet_of(message)


def test_readings_within_the_warm_up_are_skipped_and_each_snapshot_counts_once() -> None:
    """The miner started 60 s before its first reading (warm-up 120 s): its 5 MH/s ramp is
    not a measurement. At 160 s, 50 MH/s is the first reading; the same snapshot seen by
    a second plan is not a second reading; the next snapshot is."""
    observer = FleetObserver(profiles=KAWPOW)
    started_s = NOW_S - 60.0
    (gpu,) = observer.observe(mining(1, hashrate_hs=5e6, since_s=started_s), now_s=NOW_S)
    assert gpu.measured == {}
    ready = mining(2, hashrate_hs=50e6, since_s=started_s, sent_at_s=NOW_S + 100.0)
    for _ in range(2):
        (gpu,) = observer.observe(ready, now_s=NOW_S + 100.0)
        assert gpu.measured["kawpow"] == MeasuredRate(50e6, 300.0, 1, None)
    later = mining(3, hashrate_hs=60e6, since_s=started_s, sent_at_s=NOW_S + 110.0)
    (gpu,) = observer.observe(later, now_s=NOW_S + 110.0)
    measured = gpu.measured["kawpow"]
    assert measured.hashrate_hs == pytest.approx(0.2 * 60e6 + 0.8 * 50e6)
    assert measured.hashrate_samples == 2


def test_a_start_the_agent_cannot_date_warms_up_from_first_sight() -> None:
    observer = FleetObserver(profiles=KAWPOW)
    (gpu,) = observer.observe(mining(1, hashrate_hs=5e6, since_s=None), now_s=NOW_S)
    assert gpu.measured == {}
    (gpu,) = observer.observe(mining(2, hashrate_hs=6e6, since_s=None), now_s=NOW_S + 119.0)
    assert gpu.measured == {}
    (gpu,) = observer.observe(mining(3, hashrate_hs=55e6, since_s=None), now_s=NOW_S + 121.0)
    assert gpu.measured["kawpow"].hashrate_hs == 55e6
    # it goes idle and mines again, still undated: a new warm-up from the new first sight
    observer.observe(fleet_of(snapshot([(IDLE, None)], seq=4)), now_s=NOW_S + 200.0)
    (gpu,) = observer.observe(mining(5, hashrate_hs=1e6, since_s=None), now_s=NOW_S + 300.0)
    assert gpu.measured["kawpow"].hashrate_hs == 55e6


def test_the_accepted_fraction_sums_share_increments_across_a_miner_restart() -> None:
    """Counters are the miner's since it started: 201 accepted and 3 rejected (T-Rex's
    per-GPU `shares` in the project's 0.26 fixture), then 251/3 (+50 accepted), then the
    miner restarts and says 10/1: 261 accepted of 265. Below 20 shares nothing is used."""
    reading = parse_miner("trex", fixture_bytes("trex-summary.0.26-shares-pci.json"))
    device = reading.devices[0]
    assert (device.accepted_shares, device.rejected_shares) == (201, 3)
    observer = FleetObserver(profiles=KAWPOW)
    counters = [(15, 1), (201, 3), (251, 3), (10, 1)]
    fractions = []
    for seq, shares in enumerate(counters, start=1):
        (gpu,) = observer.observe(mining(seq, hashrate_hs=50e6, shares=shares), now_s=NOW_S)
        fractions.append(gpu.measured["kawpow"].accepted_fraction)
    assert fractions[0] is None  # 16 shares
    assert fractions[1:] == pytest.approx([201 / 204, 251 / 254, 261 / 265])


def test_the_planner_values_a_gpu_on_its_accepted_work_blended_with_the_benchmark() -> None:
    """One reading of 50 MH/s (benchmark 60) with 90 % of 100 shares accepted: the planner
    counts (0.1 x 50 + 0.9 x 59) x 0.9 = 52.56 MH/s (the benchmark fades in ten readings)."""
    observer = FleetObserver(profiles=KAWPOW)
    (gpu,) = observer.observe(mining(1, hashrate_hs=50e6, shares=(90, 10)), now_s=NOW_S)
    (profile,) = POLICY.profiles
    rate = mining_rate(gpu, profile)
    assert rate is not None
    assert rate.hashrate_hs == pytest.approx((0.1 * 50e6 + 0.9 * 60e6) * 0.9, rel=0.006)


def _upstream_devices() -> list[tuple[str, int, int]]:
    """(file, accepted, rejected) of each real upstream reading's first counted device."""
    if not UPSTREAM.is_dir():
        return []
    found = []
    for path in sorted(UPSTREAM.iterdir()):
        api = path.name.split("-", 1)[0]
        if api not in MINER_APIS or path.suffix != ".json" or "pools" in path.name:
            continue
        try:
            reading = parse_miner(api, path.read_bytes())
        except MinerApiError:
            continue
        for device in reading.devices:
            accepted, rejected = device.accepted_shares, device.rejected_shares
            if accepted is not None and rejected is not None and accepted + rejected >= 20:
                found.append((path.name, accepted, rejected))
                break
    return found


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason="upstream samples not present")
@pytest.mark.parametrize(("name", "accepted", "rejected"), _upstream_devices())
def test_real_miner_share_counters_become_the_accepted_fraction(
    name: str, accepted: int, rejected: int
) -> None:
    """Each upstream miner reading's per-GPU counters, as the agent reports them."""
    observer = FleetObserver(profiles=KAWPOW)
    message = mining(1, hashrate_hs=50e6, shares=(accepted, rejected))
    (gpu,) = observer.observe(message, now_s=NOW_S)
    assert gpu.measured["kawpow"].accepted_fraction == pytest.approx(
        accepted / (accepted + rejected)
    ), name
