"""Random waves on small simulated sites never take the metered power past the cap.

Hypothesis draws a site (nodes, GPUs, what each runs), the timing of stops, starts and
traffic ramps, which switches roll back, the wave's limits, and a sequence of random plans
made at random moments (so plans supersede switches in flight and held ones), and runs it on
`wavesim` with the product's serve side. Whatever happens, the site's metered and reported
power stay within the larger of the cap and what the site drew before the first plan (a
plan may only shed down to the cap: the wave never adds a start above it), and no GPU ever
has a held switch and a command in flight at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from tempfile import TemporaryDirectory

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.central.wave import BoardAsWall, WaveSettings
from orchestrator.domain import IDLE
from tests.central.wavesim import AI, MINE, SimSite, Timing, build_serve, run
from tests.fakes import Clock

WORKLOADS = (IDLE, MINE, AI)
halves = st.integers(min_value=1, max_value=40).map(lambda n: n / 2)


def board(by_node: Mapping[str, float]) -> float:
    return sum(by_node.values())


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_random_waves_never_pass_the_cap(data: st.DataObject) -> None:
    nodes = data.draw(st.integers(1, 3), label="nodes")
    gpus = data.draw(st.integers(1, 4), label="gpus per node")
    keys = [f"rig{n:03d}:{i}" for n in range(nodes) for i in range(gpus)]
    start = {k: data.draw(st.sampled_from(WORKLOADS), label=f"start {k}") for k in keys}
    timing = Timing(
        stop_s={w: data.draw(halves, label=f"stop {w}") for w in WORKLOADS},
        start_s={w: data.draw(halves, label=f"start {w}") for w in WORKLOADS},
        traffic_ramp_s=data.draw(halves, label="traffic ramp"),
    )
    failing = set(data.draw(st.lists(st.sampled_from(keys), unique=True), label="failing"))
    wave = WaveSettings(
        ramp_limit_w_per_minute=data.draw(st.none() | st.floats(300.0, 3000.0), label="ramp W/min"),
        max_starts_per_node=data.draw(st.none() | st.integers(1, 2), label="starts per node"),
    )
    headroom_w = data.draw(st.floats(0.0, 2000.0), label="headroom W")
    plans = data.draw(
        st.lists(
            st.tuples(
                st.fixed_dictionaries({k: st.sampled_from(WORKLOADS) for k in keys}),
                st.integers(1, 80),  # steps of 0.5 s before the next plan
            ),
            min_size=1,
            max_size=4,
        ),
        label="plans",
    )
    asyncio.run(
        _run(
            nodes=nodes,
            gpus=gpus,
            start=start,
            timing=timing,
            failing=failing,
            wave=wave,
            headroom_w=headroom_w,
            plans=plans,
        )
    )


async def _run(
    *,
    nodes: int,
    gpus: int,
    start: dict[str, str],
    timing: Timing,
    failing: set[str],
    wave: WaveSettings,
    headroom_w: float,
    plans: list[tuple[dict[str, str], int]],
) -> None:
    clock = Clock(50_000.0)
    site = SimSite(
        nodes=nodes,
        gpus_per_node=gpus,
        initial=start.__getitem__,
        clock=clock,
        timing=timing,
        fail=lambda c: f"{c.node}:{c.gpu_index}" in failing,
    )
    before_w = board(site.board_w())
    cap_w = before_w + headroom_w
    with TemporaryDirectory() as folder:
        serve = build_serve(
            site, clock, Path(folder) / "serve.sqlite3", power=BoardAsWall(cap_w / 1000), wave=wave
        )
        for _ in range(3):
            serve.deliver(site.step())
            clock.advance(0.5)

        def one_truth() -> None:
            both = set(serve.dispatcher.held) & set(serve.dispatcher.in_flight)
            assert not both, f"held and in flight at once: {both}"

        trace = None
        for targets, steps in plans:
            await serve.order(targets)
            one_truth()
            trace = await run(
                site,
                serve,
                clock,
                meter=board,
                until=lambda: False,
                max_s=steps * 0.5,
                trace=trace,
                each_step=one_truth,
            )
        trace = await run(
            site,
            serve,
            clock,
            meter=board,
            until=lambda: site.idle() and not serve.dispatcher.in_flight,
            max_s=900.0,
            trace=trace,
            each_step=one_truth,
        )
        serve.store.close()
    bound_w = max(cap_w, before_w) + 1e-6
    assert trace.peak_w <= bound_w
    # readings are rounded to 0.1 W, as an agent reports them
    assert trace.peak_reported_w <= bound_w + 0.05 * nodes * gpus
