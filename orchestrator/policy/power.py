"""Power: what a GPU draws on each workload (learnt, with provenance) and what the site pays at
the wall for it. Pure values and arithmetic; the learning's state lives in `central`.

Board power. NVML reports what a GPU's board draws. The planner needs it per GPU model and
workload (each mining profile, each AI contract, idle) before a GPU runs it, so every figure
starts as a prior (a mining profile's benchmark, an AI contract's `power_w`, the planner's
`idle_power_w`) and is replaced by what the fleet measures as measurements accumulate:
`PowerTable.estimate` blends the two as `(k x prior + n x measured) / (k + n)`, `k` being
`prior_samples` and `n` the readings behind the measurement, so one odd first reading does
not throw a prior away and a few hundred readings make the prior irrelevant. Each estimate
says where it came from (`PowerEstimate.source`: `measured`, `benchmark`, `config`,
`default`, or `telemetry` for a GPU counted at its own last reading or power limit) and how
many readings it rests on.

Utilisation. An inference server with no requests draws little more than idle (a real H200:
122 W holding 20 GiB, 78-126 W idle, 690 W on a mining-style load), so AI power follows
utilisation. `LearntPower` keeps exponentially weighted first and second moments of
(utilisation, power), which give the least-squares line `power = mean + slope x (u - mean_u)`;
an estimate at a given utilisation (an on-demand contract's expected utilisation) reads the
line, an estimate without one reads the mean. With too little spread in utilisation
(`MIN_UTILISATION_VARIANCE`) the line is flat at the mean: a slope from noise would be
invented, not measured.

Wall power. `SitePower` turns board watts into what the utility meters:
`wall = (board / psu_efficiency + host_overhead_w) x pue`, per node (a node's own PSU
efficiency and host overhead, else the site's). It is linear in the board power: a GPU adds
`board x pue / psu_efficiency` (`gpu_wall_w`), and each node adds a constant
`host_overhead_w x pue` (`host_wall_w`) whatever its GPUs do, so the planner's power row and
cost stay linear and the MILP stays a MILP. The neutral values (efficiency 1, overhead 0,
PUE 1) are the dataclass defaults, so a bare `PlannerSettings` plans board power; the config
defaults are realistic (see `orchestrator.config.power`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "MIN_UTILISATION_VARIANCE",
    "NEUTRAL_SITE",
    "NO_LEARNING",
    "LearntPower",
    "NodePower",
    "PowerEstimate",
    "PowerLearning",
    "PowerRound",
    "PowerTable",
    "SitePower",
    "fold",
    "fold_round",
    "node_of",
]

# (percentage points)^2: below a standard deviation of 5 points the line's slope is noise
MIN_UTILISATION_VARIANCE = 25.0


def node_of(gpu_key: str) -> str:
    """The node of a GPU named `node:index`."""
    return gpu_key.rpartition(":")[0]


# ---------------------------------------------------------------- board power, learnt


@dataclass(frozen=True, slots=True)
class PowerEstimate:
    """A GPU's board power on one workload and where the figure comes from."""

    board_w: float
    source: str  # "measured", "benchmark", "config", "default" or "telemetry"
    samples: int = 0  # readings behind a measurement (0 for a prior)


@dataclass(frozen=True, slots=True)
class LearntPower:
    """Smoothed readings of one (GPU model, workload): exponentially weighted moments.

    `mean_u_pct` and the second moments are None when no reading carried a utilisation.
    """

    mean_w: float
    samples: int
    mean_u_pct: float | None = None
    mean_uu: float | None = None
    mean_uw: float | None = None

    @property
    def slope_w_per_pct(self) -> float | None:
        """Watts per utilisation point, or None where the readings cannot tell."""
        if self.mean_u_pct is None or self.mean_uu is None or self.mean_uw is None:
            return None
        variance = self.mean_uu - self.mean_u_pct**2
        if variance < MIN_UTILISATION_VARIANCE:
            return None
        return (self.mean_uw - self.mean_u_pct * self.mean_w) / variance

    def at(self, utilisation_pct: float | None) -> float:
        """Board power at `utilisation_pct` (None: the mean of the readings)."""
        slope = self.slope_w_per_pct
        if utilisation_pct is None or slope is None or self.mean_u_pct is None:
            return self.mean_w
        return max(0.0, self.mean_w + slope * (utilisation_pct - self.mean_u_pct))

    def folded(
        self, readings: Iterable[tuple[float, float | None]], smoothing: float
    ) -> LearntPower:
        """This, with one round of readings `(power_w, utilisation_pct or None)` folded in.

        A round is averaged first (a round is one look at the fleet, and a large fleet
        gives many readings of one key in it), then weighted `smoothing` against the past.
        """
        return fold(self, readings, smoothing)


@dataclass(slots=True)
class PowerRound:
    """One round's readings of one (GPU model, workload), summed as they arrive.

    Sums rather than a list: a round of a 10,000-GPU fleet is 10,000 readings, and the
    learner adds them one by one while it walks the fleet.
    """

    count: int = 0
    sum_w: float = 0.0
    count_u: int = 0
    sum_u: float = 0.0
    sum_uu: float = 0.0
    sum_uw: float = 0.0

    def add(self, power_w: float, utilisation_pct: float | None) -> bool:
        """Count one reading; False (and nothing counted) for a non-finite or negative one."""
        if not (power_w >= 0 and math.isfinite(power_w)):
            return False
        self.count += 1
        self.sum_w += power_w
        if utilisation_pct is not None and math.isfinite(utilisation_pct):
            self.count_u += 1
            self.sum_u += utilisation_pct
            self.sum_uu += utilisation_pct * utilisation_pct
            self.sum_uw += utilisation_pct * power_w
        return True


def fold_round(previous: LearntPower | None, readings: PowerRound, smoothing: float) -> LearntPower:
    """`previous` (None: nothing yet) with one round folded in (see `LearntPower.folded`).

    An empty round returns `previous` unchanged (or raises ValueError with nothing at all).
    """
    if readings.count == 0:
        if previous is None:
            raise ValueError("no valid power reading to learn from")
        return previous
    round_w = readings.sum_w / readings.count
    round_u = round_uu = round_uw = None
    if readings.count_u:
        round_u = readings.sum_u / readings.count_u
        round_uu = readings.sum_uu / readings.count_u
        round_uw = readings.sum_uw / readings.count_u
    if previous is None:
        return LearntPower(round_w, readings.count, round_u, round_uu, round_uw)
    a = smoothing

    def blend(old: float | None, new: float | None) -> float | None:
        if old is None:
            return new
        if new is None:
            return old
        return a * new + (1 - a) * old

    return LearntPower(
        mean_w=a * round_w + (1 - a) * previous.mean_w,
        samples=previous.samples + readings.count,
        mean_u_pct=blend(previous.mean_u_pct, round_u),
        mean_uu=blend(previous.mean_uu, round_uu),
        mean_uw=blend(previous.mean_uw, round_uw),
    )


def fold(
    previous: LearntPower | None, readings: Iterable[tuple[float, float | None]], smoothing: float
) -> LearntPower:
    """`previous` with one round of `(power_w, utilisation_pct or None)` readings folded in.

    Non-finite or negative powers are not readings and are skipped.
    """
    summed = PowerRound()
    for power_w, utilisation_pct in readings:
        summed.add(power_w, utilisation_pct)
    return fold_round(previous, summed, smoothing)


@dataclass(frozen=True, slots=True)
class PowerTable:
    """What the fleet has learnt, by (GPU model, workload), and how much a prior weighs."""

    learnt: Mapping[tuple[str, str], LearntPower] = field(default_factory=dict)
    prior_samples: float = 3.0

    def estimate(
        self,
        model: str,
        workload: str,
        prior: PowerEstimate,
        utilisation_pct: float | None = None,
    ) -> PowerEstimate:
        """`model`'s board power on `workload`: the prior blended with what was measured."""
        learnt = self.learnt.get((model, workload))
        if learnt is None or learnt.samples <= 0:
            return prior
        measured_w = learnt.at(utilisation_pct)
        n, k = float(learnt.samples), self.prior_samples
        board_w = (k * prior.board_w + n * measured_w) / (k + n)
        return PowerEstimate(board_w, "measured", learnt.samples)


NO_LEARNING = PowerTable()


@dataclass(frozen=True, slots=True)
class PowerLearning:
    """How the fleet learns board power (`[power]` in the config; see `central`)."""

    settle_s: float = 60.0  # readings this soon after a workload started are not learnt
    smoothing: float = 0.2  # weight of the newest round against the past
    prior_samples: float = 3.0  # what a configured figure weighs, in readings


# ---------------------------------------------------------------- wall power


@dataclass(frozen=True, slots=True)
class NodePower:
    """One node's host: what it draws besides its GPUs, and its PSUs' efficiency."""

    host_overhead_w: float = 0.0  # at the wall, before cooling
    psu_efficiency: float = 1.0  # board (DC) watts per wall (AC) watt, in (0, 1]


NEUTRAL_NODE = NodePower()


@dataclass(frozen=True, slots=True)
class SitePower:
    """Board watts to wall watts: `(board / psu_efficiency + host_overhead_w) x pue`."""

    pue: float = 1.0  # site cooling and distribution: facility watts per IT watt, >= 1
    default: NodePower = NEUTRAL_NODE
    nodes: Mapping[str, NodePower] = field(default_factory=dict)  # per-node overrides

    def node(self, name: str) -> NodePower:
        return self.nodes.get(name, self.default)

    def wall_factor(self, node: str = "") -> float:
        """Wall watts per board watt of a GPU on `node`."""
        return self.pue / self.node(node).psu_efficiency

    def gpu_wall_w(self, board_w: float, node: str = "") -> float:
        """What `board_w` on one GPU of `node` adds at the wall (host excluded)."""
        return board_w * self.wall_factor(node)

    def host_wall_w(self, node: str = "") -> float:
        """What `node`'s host adds at the wall whatever its GPUs do."""
        return self.node(node).host_overhead_w * self.pue

    def wall_w(self, board_w: float, node: str = "") -> float:
        """A node's wall power when its GPUs draw `board_w` together (host included)."""
        return self.gpu_wall_w(board_w, node) + self.host_wall_w(node)

    def site_wall_w(self, board_w_by_node: Mapping[str, float]) -> float:
        """The site's wall power for these nodes' GPU board power (hosts included)."""
        return sum(self.wall_w(board_w, node) for node, board_w in board_w_by_node.items())

    def hosts_wall_w(self, nodes: Iterable[str]) -> float:
        """The hosts of `nodes` at the wall, together."""
        return sum(self.host_wall_w(node) for node in nodes)


NEUTRAL_SITE = SitePower()
