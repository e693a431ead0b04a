"""`[power]`: power at the wall, and how the fleet learns each workload's board power.

NVML reports board power; the utility meters the wall. Between the two sit each node's
power supplies (`psu_efficiency`: 80 PLUS Platinum supplies deliver 92-94 % at half load,
Gold about 90 %), each node's host (`host_overhead_w`: CPUs, memory, NICs and chassis fans,
a few hundred watts on a GPU server) and the site's cooling and distribution (`pue`: large
data centres report 1.1-1.6; air-cooled mining sites run near the low end). The planner
uses `wall = (board / psu_efficiency + host_overhead_w) x pue` for the site power cap, the
power cost and every $/h figure. `[power.nodes.<name>]` overrides a node's supply and host.

The defaults are realistic for a GPU server site rather than neutral: a site that knows its
own figures sets them, and a site that sets nothing is still not planned as if its power
supplies were lossless. Set `pue = 1`, `psu_efficiency = 1` and `host_overhead_w = 0` to
plan board power alone.

Learning: a workload's board power is learnt per GPU model from telemetry (NVML's total
energy counter where the GPU has one, else its instantaneous power reading); readings
within `settle_s` of a workload's start are not counted (a miner building its DAG, a model
loading), each look at the fleet is averaged and then smoothed with weight `smoothing`,
and a configured value (benchmark, contract `power_w`, `idle_power_w`) weighs as
`prior_samples` readings against the measured ones.
"""

from __future__ import annotations

from pydantic import Field

from orchestrator.config._base import Section


class NodePowerSection(Section):
    """One node's own figures; an unset key takes the site's."""

    host_overhead_w: float | None = Field(default=None, ge=0, le=100_000)
    psu_efficiency: float | None = Field(default=None, gt=0.3, le=1)


class PowerSection(Section):
    """`[power]`: board to wall, and the learning of board power."""

    # facility watts per IT watt: cooling, distribution losses
    pue: float = Field(default=1.2, ge=1, le=3)
    # board (DC) watts delivered per wall (AC) watt by a node's power supplies
    psu_efficiency: float = Field(default=0.92, gt=0.3, le=1)
    # what a node's host draws at the wall besides its GPUs
    host_overhead_w: float = Field(default=150.0, ge=0, le=100_000)
    # per-node overrides of psu_efficiency and host_overhead_w, by node name
    nodes: dict[str, NodePowerSection] = Field(default_factory=dict)
    # readings within this long of a workload's start are not learnt from
    settle_s: float = Field(default=60.0, ge=0, le=86_400)
    # weight of the newest look at the fleet in the smoothed board power
    smoothing: float = Field(default=0.2, gt=0, le=1)
    # a configured power figure weighs as this many measured readings
    prior_samples: float = Field(default=3.0, ge=0, le=1_000_000)
