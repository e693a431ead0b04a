"""From telemetry to the planner's view: the agent's latest word, and dwell from facts.

Pure, no broker: a `FleetState` fed snapshots, a `GpuBook` fed final events, the observer
and the real planner.
"""

from __future__ import annotations

from orchestrator.central.fleet import FleetState
from orchestrator.central.gpubook import Fact, GpuBook
from orchestrator.central.observe import FleetObserver
from orchestrator.config.policy import PolicySection
from orchestrator.domain import IDLE, SwitchState
from orchestrator.policy.model import Market, policy_from_config
from orchestrator.policy.planner import plan
from orchestrator.protocol import GpuTelemetry, NodeTelemetry, WorkloadReport

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
