"""Learning board power from telemetry: real wire messages, the fake H200 at the NVML boundary.

Each round samples a simulated node (`FakeGpuBackend`, which agrees with the readings of a
real H200), wraps the readings in the agent's `NodeTelemetry`, sends it through the wire
codec into a `FleetState`, and lets the observer walk it as the policy loop does before a
plan. What the planner then prices, and with what provenance, is asserted.
"""

from __future__ import annotations

import pytest

from orchestrator.agents.gpu.fake import FakeGpuBackend
from orchestrator.central.fleet import FleetState
from orchestrator.central.gpubook import GpuBook
from orchestrator.central.observe import FleetObserver
from orchestrator.central.power_learning import PowerLearner
from orchestrator.central.store import CommandRecord
from orchestrator.domain import NodeStatus
from orchestrator.policy.economics import board_power
from orchestrator.policy.model import GpuState
from orchestrator.policy.power import PowerEstimate, PowerLearning
from orchestrator.protocol import (
    GpuTelemetry,
    NodeStatusMessage,
    NodeTelemetry,
    WorkloadReport,
    decode_telemetry,
    encode,
)
from tests.fakes import Clock

H200 = "NVIDIA H200"
PRIOR = PowerEstimate(300.0, "config")


class Site:
    """One simulated node of H200s reporting to a fleet state, observed once per round."""

    def __init__(
        self,
        *,
        gpus: int = 4,
        noise_fraction: float = 0.02,
        energy_counter: bool = True,
        learning: PowerLearning | None = None,
    ) -> None:
        self.clock = Clock()
        self.fake = FakeGpuBackend(
            node="rig", gpus=gpus, models=["h200"], noise_fraction=noise_fraction, clock=self.clock
        )
        self.fake.open()
        self.energy_counter = energy_counter
        self.since = dict.fromkeys(range(gpus), self.clock.now_s - 3600)
        self.fleet = FleetState(offline_after_s=30.0, started_at_s=self.clock.now_s)
        self.observer = FleetObserver(power=PowerLearner(learning or PowerLearning()))
        self.seq = 0
        self.instant: list[float] = []  # every instantaneous reading sent

    def switch(self, index: int, workload: str) -> None:
        self.fake.set_workload(index, workload, since_s=self.clock.now_s)
        self.since[index] = self.clock.now_s

    def report(self) -> None:
        gpus = []
        for gpu in self.fake.sample():
            update: dict[str, object] = {
                "workload": WorkloadReport(
                    workload=self.fake.workload_of(gpu.index), since_s=self.since[gpu.index]
                )
            }
            if not self.energy_counter:
                update["total_energy_mj"] = None
            if gpu.power_draw_w is not None:
                self.instant.append(gpu.power_draw_w)
            gpus.append(GpuTelemetry.model_validate({**gpu.model_dump(), **update}))
        self.seq += 1
        message = NodeTelemetry(
            node="rig",
            seq=self.seq,
            boot_s=1.0,
            sent_at_s=self.clock.now_s,
            agent_version="test",
            nvml_backend="fake",
            gpus=tuple(gpus),
        )
        wire = decode_telemetry(encode(message), topic_node="rig")
        self.fleet.apply_telemetry(wire, now_s=self.clock.now_s)

    def observe(self, book: GpuBook | None = None) -> list[GpuState]:
        return self.observer.observe(self.fleet, now_s=self.clock.now_s, book=book or GpuBook())

    def rounds(self, count: int, every_s: float = 10.0) -> list[GpuState]:
        states: list[GpuState] = []
        for _ in range(count):
            self.report()
            states = self.observe()
            self.clock.advance(every_s)
        return states

    def estimate(self, workload: str, utilisation_pct: float | None = None) -> PowerEstimate:
        gpu = self.observe()[0]
        table = self.observer.power.table()
        return board_power(gpu, workload, PRIOR, table, utilisation_pct)


def test_idle_and_mining_power_are_learnt_with_provenance() -> None:
    """Two idle and two mining H200s: 78 W and 690 W, said to be measured, with the count."""
    site = Site()
    site.switch(2, "mine:kawpow")
    site.switch(3, "mine:kawpow")
    site.clock.advance(120)  # past the DAG build and the settle time
    site.rounds(10)
    idle = site.estimate("idle")
    mining = site.estimate("mine:kawpow")
    assert idle.source == mining.source == "measured"
    assert idle.samples >= 16  # 2 GPUs x 10 rounds, less the first of each without a delta
    assert idle.board_w == pytest.approx(78.0 + 3 * (300 - 78.0) / (3 + idle.samples), abs=2)
    assert site.observer.power.learnt[(H200, "mine:kawpow")].mean_w == pytest.approx(690, abs=5)
    assert site.observer.power.readings["energy"] > site.observer.power.readings["instant"]


def test_the_energy_counter_beats_noisy_instant_readings() -> None:
    """At 20 % noise the energy counter still gives 690 W within 0.5 %; without it the
    learner falls back to the instantaneous readings and says how it read them."""
    noisy = Site(gpus=1, noise_fraction=0.2)
    noisy.switch(0, "mine:kawpow")
    noisy.clock.advance(120)
    noisy.rounds(2)  # the first settled reading is instantaneous; from the second, energy
    energy_before = noisy.observer.power.readings["energy"]
    noisy.observer.power.learnt.clear()
    noisy.rounds(1)
    learnt = noisy.observer.power.learnt[(H200, "mine:kawpow")]
    assert noisy.observer.power.readings["energy"] == energy_before + 1
    assert learnt.mean_w == pytest.approx(690.0, rel=0.005)

    no_counter = Site(gpus=1, noise_fraction=0.2, energy_counter=False)
    no_counter.switch(0, "mine:kawpow")
    no_counter.clock.advance(120)
    no_counter.instant.clear()
    no_counter.rounds(1)
    (reading,) = no_counter.instant
    learnt = no_counter.observer.power.learnt[(H200, "mine:kawpow")]
    assert learnt.mean_w == pytest.approx(reading)
    assert no_counter.observer.power.readings == {"instant": 1}


def test_readings_right_after_a_switch_are_not_learnt() -> None:
    """Idle right after mining reads 126 W; within `settle_s` nothing is learnt, after it
    the settled 78 W is."""
    site = Site(gpus=1, learning=PowerLearning(settle_s=60.0))
    site.switch(0, "mine:kawpow")
    site.clock.advance(120)
    site.rounds(2)
    site.switch(0, "idle")
    site.rounds(5, every_s=10.0)  # 0-40 s after the switch
    assert (H200, "idle") not in site.observer.power.learnt
    site.clock.advance(200)
    site.rounds(3)
    assert site.observer.power.learnt[(H200, "idle")].mean_w == pytest.approx(78.0, abs=1.5)


def test_ai_power_follows_utilisation_and_on_demand_is_priced_at_its_own() -> None:
    """Serving H200s wander in utilisation; the learnt line reads ~122 W at 0 % (the measured
    server with no requests) and more at 70 % than at 20 %."""
    site = Site(gpus=8, learning=PowerLearning(smoothing=0.05, prior_samples=0.0))
    for index in range(8):
        site.switch(index, "ai:spot")
    site.clock.advance(120)
    site.rounds(40, every_s=5.0)
    learnt = site.observer.power.learnt[(H200, "ai:spot")]
    assert learnt.slope_w_per_pct is not None
    at_zero = site.estimate("ai:spot", 0.0).board_w
    assert at_zero == pytest.approx(122.0, abs=25.0)
    assert site.estimate("ai:spot", 70.0).board_w > site.estimate("ai:spot", 20.0).board_w + 100


def test_a_silent_node_keeps_its_gpus_last_reading_and_limit() -> None:
    """Offline: the GPU's last power reading and its power limit reach the planner."""
    site = Site(gpus=1)
    site.switch(0, "mine:kawpow")
    site.clock.advance(120)
    site.rounds(1)
    site.fleet.apply_status(
        NodeStatusMessage(node="rig", status=NodeStatus.OFFLINE), now_s=site.clock.now_s
    )
    (gpu,) = site.observe()
    assert not gpu.online
    assert gpu.power_draw_w == pytest.approx(690.0, rel=0.06)
    assert gpu.power_limit_w == 700.0


def test_a_snapshot_observed_twice_is_learnt_once() -> None:
    """Two plans before the next telemetry: the same reading is not counted twice."""
    site = Site(gpus=1)
    site.rounds(1)
    site.observe()
    site.observe()
    assert site.observer.power.learnt[(H200, "idle")].samples == 1


def test_a_gpu_being_switched_is_not_learnt_from() -> None:
    """While serve has a command in flight for a GPU, its readings belong to no workload."""
    site = Site(gpus=1)
    book = GpuBook()
    book.commands["rig:0"] = CommandRecord(
        "c0000001", 1, "rig:0", "mine:kawpow", "idle", "", 0.0, 1e12, "accepted"
    )
    for _ in range(3):
        site.report()
        site.observe(book)
        site.clock.advance(10)
    assert site.observer.power.learnt == {}
    site.rounds(1)
    assert site.observer.power.learnt[(H200, "idle")].samples == 1


def test_an_implausible_reading_is_counted_and_dropped() -> None:
    """A reading far above the GPU's power limit (a counter glitch) is not learnt."""
    learner = PowerLearner(PowerLearning(settle_s=0.0))
    glitch = GpuTelemetry(index=0, name=H200, power_draw_w=9000.0, power_limit_w=700.0)
    learner.sample("rig:0", H200, "idle", since_s=0.0, gpu=glitch, sample_s=100.0, order=(1, 1, 0))
    fine = glitch.model_copy(update={"power_draw_w": 80.0})
    learner.sample("rig:1", H200, "idle", since_s=0.0, gpu=fine, sample_s=100.0, order=(1, 1, 0))
    learner.fold()
    assert learner.rejected == 1
    assert learner.learnt[(H200, "idle")].mean_w == 80.0
