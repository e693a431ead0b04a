"""The switch wave holds the site cap while it runs: a simulated 1,000-GPU site (`wavesim`).

The site: 125 nodes of 8 H200s, some serving AI (300 W), the others mining (690 W), just
under a 500 kW cap; a plan swaps them (the AI GPUs go mining, the miners go to AI), so the
end state is as far under the cap as the start. Two layouts: `mixed` (on each node four of
each) and `whole` (even nodes mine, odd nodes serve). Sent all at once, the `whole` swap
passes the cap by tens of kW: the odd nodes' agents start their miners while the even
nodes' agents, four switches at a time, still mine on the GPUs they have not reached. With
the wave, each start waits until the power it needs is free.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.central.wave import HELD_SITE_POWER, BoardAsWall, SiteWavePower, WaveSettings
from orchestrator.domain import IDLE, GpuKey
from orchestrator.policy.power import NodePower, SitePower
from orchestrator.protocol import SwitchCommand
from tests.central.wavesim import (
    AI,
    MINE,
    POWER_W,
    Serve,
    SimSite,
    build_serve,
    run,
)
from tests.fakes import Clock

pytestmark = pytest.mark.slow

NODES = 125
GPUS_PER_NODE = 8
CAP_W = 500_000.0


Layout = Callable[[str], str]


def mixed(key: str) -> str:
    """Four GPUs of each node serve AI, four mine."""
    return AI if GpuKey.parse(key).index < GPUS_PER_NODE // 2 else MINE


def whole(key: str) -> str:
    """Even nodes mine, odd nodes serve AI."""
    return MINE if int(GpuKey.parse(key).node[3:]) % 2 == 0 else AI


def swap(layout: Layout, keys: Iterable[str]) -> dict[str, str]:
    return {key: MINE if layout(key) == AI else AI for key in keys}


def board(by_node: Mapping[str, float]) -> float:
    return sum(by_node.values())


@dataclass(frozen=True)
class SiteWall:
    """A `WavePower` with a board-to-wall conversion: PSU efficiency, host overhead per node
    and the cooling's PUE; the test's meter reads the site the same way."""

    psu_efficiency: float = 0.94
    host_w: float = 250.0
    pue: float = 1.1
    cap: float = CAP_W

    def gpu_wall_w(self, gpu: str, workload: str, board_w: float | None) -> float | None:  # noqa: ARG002
        return None if board_w is None else board_w / self.psu_efficiency * self.pue

    def reading_wall_w(self, gpu: str, board_w: float) -> float:  # noqa: ARG002
        return board_w / self.psu_efficiency * self.pue

    def node_overhead_wall_w(self, node: str) -> float:  # noqa: ARG002
        return self.host_w * self.pue

    def cap_w(self, now_s: float) -> float | None:  # noqa: ARG002
        return self.cap

    def meter(self, by_node: Mapping[str, float]) -> float:
        return sum(
            self.reading_wall_w("", w) + self.node_overhead_wall_w(n) for n, w in by_node.items()
        )


async def _site(
    tmp_path: Path,
    layout: Layout = mixed,
    *,
    wave: WaveSettings | None = None,
    cap_w: float | None = CAP_W,
    **kwargs: object,
) -> tuple[SimSite, Serve, Clock]:
    clock = Clock(50_000.0)
    site = SimSite(
        nodes=NODES,
        gpus_per_node=GPUS_PER_NODE,
        initial=layout,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )
    power = BoardAsWall(None if cap_w is None else cap_w / 1000.0)
    serve = build_serve(site, clock, tmp_path / "serve.sqlite3", power=power, wave=wave)
    await _warm_up(site, serve, clock)
    return site, serve, clock


async def _warm_up(site: SimSite, serve: Serve, clock: Clock) -> None:
    """Every node reports once before the first plan (as serve's start trigger waits)."""
    for _ in range(3):
        serve.deliver(site.step())
        clock.advance(0.5)
    assert len(serve.fleet.nodes) == NODES


def _settled(site: SimSite, serve: Serve) -> bool:
    return site.idle() and not serve.dispatcher.in_flight and not serve.dispatcher.held


@pytest.mark.parametrize("layout", [mixed, whole], ids=["mixed", "whole"])
async def test_a_full_swap_of_1000_gpus_never_passes_the_cap(
    tmp_path: Path, layout: Layout
) -> None:
    site, serve, clock = await _site(tmp_path, layout)
    assert CAP_W - 5_000.0 <= board(site.board_w()) < CAP_W
    targets = swap(layout, site.workloads())
    await serve.order(targets)
    # the stops left at once; most starts wait for the power the stops free
    assert len(serve.dispatcher.held) > 400
    assert all(h.workload == MINE for h in serve.dispatcher.held.values())
    trace = await run(
        site, serve, clock, meter=board, until=lambda: _settled(site, serve), max_s=1800.0
    )
    assert site.workloads() == targets, "the wave did not complete"
    assert trace.peak_w <= CAP_W
    assert trace.peak_reported_w <= CAP_W
    assert len({c.command_id for _, c in site.received}) == len(targets)


async def test_the_same_swap_sent_all_at_once_passes_the_cap(tmp_path: Path) -> None:
    """The proof's other half: without the wave (no cap known to the dispatcher; stops are
    still sent first) the same site and plan go over the cap, so the test above would catch
    a wave that let go."""
    site, serve, clock = await _site(tmp_path, whole, cap_w=None)
    targets = swap(whole, site.workloads())
    await serve.order(targets)
    assert not serve.dispatcher.held
    trace = await run(
        site, serve, clock, meter=board, until=lambda: _settled(site, serve), max_s=1800.0
    )
    assert site.workloads() == targets
    assert trace.peak_w > CAP_W + 40_000.0


async def test_the_cap_holds_at_the_wall_with_psu_losses_hosts_and_cooling(
    tmp_path: Path,
) -> None:
    """The wave counts through its `WavePower`: with a board-to-wall conversion the wall
    meter stays under a wall cap (set just above the site's wall draw before the swap)."""
    clock = Clock(50_000.0)
    site = SimSite(nodes=NODES, gpus_per_node=GPUS_PER_NODE, initial=whole, clock=clock)
    wall = SiteWall()
    wall = SiteWall(cap=wall.meter(site.board_w()) + 5_000.0)
    serve = build_serve(site, clock, tmp_path / "serve.sqlite3", power=wall)
    await _warm_up(site, serve, clock)
    targets = swap(whole, site.workloads())
    await serve.order(targets)
    assert len(serve.dispatcher.held) > 400  # binding: most starts wait
    trace = await run(
        site, serve, clock, meter=wall.meter, until=lambda: _settled(site, serve), max_s=1800.0
    )
    assert site.workloads() == targets
    assert trace.peak_w <= wall.cap
    assert trace.peak_reported_w <= wall.cap


def _rise_w(command: SwitchCommand) -> float:
    return POWER_W[command.workload] - POWER_W[command.previous_workload or IDLE]


async def test_the_ramp_limit_bounds_start_power_released_in_any_minute(tmp_path: Path) -> None:
    """No cap, a ramp limit of 30 kW a minute: 200 GPUs going from idle to mining (120 kW
    of start power) take four minutes, never more than 30 kW in any 60 s."""
    clock = Clock(50_000.0)
    site = SimSite(nodes=25, gpus_per_node=8, initial=lambda _k: IDLE, clock=clock)
    serve = build_serve(
        site, clock, tmp_path / "serve.sqlite3", wave=WaveSettings(ramp_limit_w_per_minute=30_000)
    )
    for _ in range(3):
        serve.deliver(site.step())
        clock.advance(0.5)
    started_s = clock.now_s
    targets = dict.fromkeys(site.workloads(), MINE)
    await serve.order(targets)
    await run(site, serve, clock, meter=board, until=lambda: _settled(site, serve), max_s=600.0)
    assert site.workloads() == targets
    released = sorted((at_s, _rise_w(c)) for at_s, c in site.received)
    for at_s, _ in released:
        window = sum(rise for t, rise in released if at_s <= t < at_s + 60.0)
        assert window <= 30_000.0 + 1e-6, f"{window} W released in the minute from {at_s}"
    took_s = released[-1][0] - started_s
    assert 180.0 <= took_s <= 241.0  # 120 kW at 30 kW a minute: the 4th minute's release


async def test_the_per_node_limit_bounds_starts_in_flight_on_each_node(tmp_path: Path) -> None:
    """No cap, at most 2 starts in flight per node: the agents never hold more than 2
    commands that raise power at once, and the wave still completes."""
    clock = Clock(50_000.0)
    site = SimSite(nodes=10, gpus_per_node=8, initial=lambda _k: IDLE, clock=clock)
    serve = build_serve(
        site, clock, tmp_path / "serve.sqlite3", wave=WaveSettings(max_starts_per_node=2)
    )
    for _ in range(3):
        serve.deliver(site.step())
        clock.advance(0.5)
    targets = dict.fromkeys(site.workloads(), AI)
    await serve.order(targets)
    peak: dict[str, int] = defaultdict(int)

    def count() -> None:
        for name, node in site.nodes.items():
            open_here = len(node.queue) + sum(1 for g in node.gpus if g.command is not None)
            peak[name] = max(peak[name], open_here)

    await run(
        site,
        serve,
        clock,
        meter=board,
        until=lambda: _settled(site, serve),
        max_s=900.0,
        each_step=count,
    )
    assert site.workloads() == targets
    assert max(peak.values()) == 2


async def test_a_newer_plan_mid_wave_drops_held_switches_unsent(tmp_path: Path) -> None:
    """Halfway through the swap a new plan keeps half the nodes as they are: their held
    switches are dropped, never sent; switches already sent there are undone by new
    commands; the cap holds all along and the site ends as the newer plan says."""
    site, serve, clock = await _site(tmp_path)
    first = swap(mixed, site.workloads())
    await serve.order(first)
    trace = await run(site, serve, clock, meter=board, until=lambda: False, max_s=20.0)
    held_before = dict(serve.dispatcher.held)
    assert held_before, "the wave should still hold starts 20 s in"
    kept_nodes = {f"rig{n:03d}" for n in range(0, NODES, 2)}
    second = {
        key: (mixed(key) if GpuKey.parse(key).node in kept_nodes else first[key])
        for key in site.workloads()
    }
    ordered_at_s = clock.now_s
    await serve.order(second)
    dropped = {k for k in held_before if GpuKey.parse(k).node in kept_nodes}
    assert dropped
    assert not dropped & set(serve.dispatcher.held)
    await run(
        site,
        serve,
        clock,
        meter=board,
        until=lambda: _settled(site, serve),
        max_s=1800.0,
        trace=trace,
    )
    assert site.workloads() == second
    assert trace.peak_w <= CAP_W
    assert trace.peak_reported_w <= CAP_W
    # nothing of the first plan went out after the second: its held switches were dropped
    assert all(c.generation == 2 for at_s, c in site.received if at_s >= ordered_at_s)
    ids = [c.command_id for _, c in site.received]
    assert len(ids) == len(set(ids)), "a command was sent twice"


async def test_a_switch_that_rolls_back_mid_wave_frees_no_power(tmp_path: Path) -> None:
    """One miner in five fails its start on AI and rolls back to mining: the power it was
    to free never frees, so as many starts stay held (said so, by reason), and the cap holds."""
    failing = {f"rig{n:03d}:4" for n in range(0, NODES, 5)}
    site, serve, clock = await _site(tmp_path, fail=lambda c: f"{c.node}:{c.gpu_index}" in failing)
    targets = swap(mixed, site.workloads())
    await serve.order(targets)
    trace = await run(
        site,
        serve,
        clock,
        meter=board,
        until=lambda: site.idle() and not serve.dispatcher.in_flight,
        max_s=1800.0,
    )
    assert trace.peak_w <= CAP_W
    assert trace.peak_reported_w <= CAP_W
    workloads = site.workloads()
    assert all(workloads[key] == MINE for key in failing)
    held = serve.dispatcher.held
    # each failure keeps 390 W the wave needed for one start (a few kW of headroom absorb some)
    assert len(failing) - 13 <= len(held) <= len(failing)
    assert all(h.why == HELD_SITE_POWER and h.workload == MINE for h in held.values())
    done = [k for k in targets if k not in failing and k not in held]
    assert all(workloads[k] == targets[k] for k in done)


def test_serve_s_wave_power_converts_readings_by_the_node_and_reads_the_cap_late() -> None:
    """`SiteWavePower`: plan figures are at the wall already; NVML readings and limits are
    board watts, turned to wall watts with the node's PSU efficiency and the site's PUE; a
    node's host counts at the wall; the cap is whatever the callable says at that moment."""
    site = SitePower(
        pue=1.25,
        default=NodePower(host_overhead_w=200.0, psu_efficiency=0.8),
        nodes={"big": NodePower(host_overhead_w=1000.0, psu_efficiency=0.95)},
    )
    caps: list[float | None] = [None]
    power = SiteWavePower(site=site, cap_w_at=lambda _now_s: caps[0])
    assert power.gpu_wall_w("rig:0", "mine:kawpow", 390.0) == 390.0
    assert power.reading_wall_w("rig:0", 100.0) == pytest.approx(100.0 * 1.25 / 0.8)
    assert power.reading_wall_w("big:3", 100.0) == pytest.approx(100.0 * 1.25 / 0.95)
    assert power.node_overhead_wall_w("rig") == pytest.approx(250.0)
    assert power.node_overhead_wall_w("big") == pytest.approx(1250.0)
    assert power.cap_w(0.0) is None
    caps[0] = 5000.0  # a curtailment window begins
    assert power.cap_w(1.0) == 5000.0
