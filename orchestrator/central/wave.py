"""The switch wave: which of a plan's commands may go out now, so the site cap holds meanwhile.

A plan is checked against the site power cap as a whole: where every GPU ends up. Getting
there is a wave of switches, and a wave sent all at once can overshoot the cap while it runs
(starts land before the stops they replace have freed their power). `WaveScheduler` decides,
each time the dispatcher asks, which of the held commands may be released:

- a command that does not raise its GPU's power (a stop, a switch to idle or to a lighter
  workload) is released at once: it can only free power;
- a command that raises it (a *start*) is released only when the site's estimated wall power
  plus the rise stays within the cap, at most `max_starts_per_node` starts are in flight on
  its node, and the starts released in the last 60 s rise by at most
  `ramp_limit_w_per_minute` in all (a lone start larger than that may go when the window is
  empty). Starts go first come, first served: the first that the cap or the ramp does not
  admit stops the queue, so small starts never overtake a large one for good, and a
  decision prices only the starts up to it (a few, not the whole held set, at 10k GPUs).

The estimate is pessimistic on purpose. A GPU with a command in flight counts at the largest
of its reading and the estimates of its previous and target workloads until the agent's
final event (a switch draws its old power, then idle, then its new power); so does a GPU
whose superseded or timed-out command may still run at its agent. Every other GPU counts at
the larger of its latest reading and the estimate of what it runs (an inference server that
just became ready draws little until its traffic arrives). A GPU whose workload is unknown
counts at its reading, else its power limit, else the largest planned figure: never 0.
Nodes that went silent still count: silence is not a stopped workload.

Power figures come through `WavePower`: the wall watts of a GPU in a workload (given the
plan's board figure), of a reading, a node's fixed overhead, and the cap now (read at each
decision, so a curtailment window that lowers it is obeyed by the next release). The default,
`BoardAsWall`, takes the plan's candidate power and the readings as they are and a fixed
cap (tests, tools). Serve uses `SiteWavePower`: the plan's candidate power, which the
planner prices at the wall with the learnt power model; readings and power limits (board
watts) through the site's PSU efficiency and PUE; each node's host at the wall; and the
cap in force, configured or a curtailment window's.

Pure bookkeeping over the fleet snapshot and the dispatcher's `GpuBook`: no I/O, no clock.
Per node, the estimate is kept and redone only when the node's telemetry object, or a
command on it, changed; a release decision costs O(nodes + held), not O(GPUs).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from orchestrator.central.fleet import FleetState
from orchestrator.central.gpubook import GpuBook, Held, telemetry_order
from orchestrator.domain import UNKNOWN, GpuKey, gpu_key
from orchestrator.policy.model import Plan
from orchestrator.policy.power import SitePower, node_of
from orchestrator.protocol import NodeTelemetry

RAMP_WINDOW_S = 60.0

# why a command is held, as metrics and the lifecycle view say it
HELD_SITE_POWER = "site_power"
HELD_RAMP = "ramp"
HELD_NODE_STARTS = "node_starts"
HELD_REASONS = (HELD_SITE_POWER, HELD_RAMP, HELD_NODE_STARTS)


class WavePower(Protocol):
    """What the wave needs to know of power. All figures are watts at the wall."""

    def gpu_wall_w(self, gpu: str, workload: str, board_w: float | None) -> float | None:
        """GPU `gpu`'s share of the site's wall power running `workload`. `board_w` is the
        plan's board figure for it, None where the plan priced no such candidate. None:
        unknown."""
        ...

    def reading_wall_w(self, gpu: str, board_w: float) -> float:
        """The wall watts of a board power reading (or power limit) of GPU `gpu`."""
        ...

    def node_overhead_wall_w(self, node: str) -> float:
        """A node's wall power beside its GPUs (host overhead), which no switch changes."""
        ...

    def cap_w(self, now_s: float) -> float | None:
        """The site's wall power cap now; None: no cap."""
        ...


@dataclass(frozen=True, slots=True)
class BoardAsWall:
    """The default `WavePower`: the plan's board figures and the readings as wall power
    (no PSU loss, host overhead or cooling), and a fixed cap."""

    cap_kw: float | None = None

    # the arguments a measured model would use are unused here: ARG002 is the protocol's
    def gpu_wall_w(self, gpu: str, workload: str, board_w: float | None) -> float | None:  # noqa: ARG002
        return board_w

    def reading_wall_w(self, gpu: str, board_w: float) -> float:  # noqa: ARG002
        return board_w

    def node_overhead_wall_w(self, node: str) -> float:  # noqa: ARG002
        return 0.0

    def cap_w(self, now_s: float) -> float | None:  # noqa: ARG002
        return None if self.cap_kw is None else self.cap_kw * 1000.0


@dataclass(frozen=True, slots=True)
class SiteWavePower:
    """The `WavePower` serve uses: the plan's candidate figures, which the planner already
    prices at the wall; readings and power limits (board watts, from NVML) turned to wall
    watts by the site's power model (PSU efficiency and PUE of the GPU's node); each node's
    host overhead at the wall; and the cap in force now (`cap_w_at`: the configured cap or
    a curtailment window's, read at every release decision)."""

    site: SitePower
    cap_w_at: Callable[[float], float | None]

    def gpu_wall_w(self, gpu: str, workload: str, board_w: float | None) -> float | None:  # noqa: ARG002
        return board_w  # the plan's candidate `power_w`: at the wall already

    def reading_wall_w(self, gpu: str, board_w: float) -> float:
        return self.site.gpu_wall_w(board_w, node_of(gpu))

    def node_overhead_wall_w(self, node: str) -> float:
        return self.site.host_wall_w(node)

    def cap_w(self, now_s: float) -> float | None:
        return self.cap_w_at(now_s)


@dataclass(frozen=True, slots=True)
class WaveSettings:
    """The limits of a wave; None: no such limit."""

    ramp_limit_w_per_minute: float | None = None
    max_starts_per_node: int | None = None


@dataclass(slots=True)
class _NodeCache:
    telemetry: NodeTelemetry | None
    wall_w: float


@dataclass(slots=True)
class WaveScheduler:
    power: WavePower
    settings: WaveSettings = field(default_factory=WaveSettings)
    fleet: FleetState | None = None
    # the newest plan's candidate figures (`WavePower.gpu_wall_w`'s input): GPU -> workload
    # -> W, and what each GPU ran then
    planned: dict[str, dict[str, float]] = field(default_factory=dict)
    planned_current: dict[str, str | None] = field(default_factory=dict)
    # commands serve ended (superseded, timed out) that the agent may still be running:
    # GPU -> command id -> (target, until when it may run)
    unsettled: dict[str, dict[str, tuple[str, float]]] = field(default_factory=dict)
    # released starts in flight: GPU -> (command id, rise W)
    starts: dict[str, tuple[str, float]] = field(default_factory=dict)
    ramp: deque[tuple[float, float]] = field(default_factory=deque)  # (released at, rise W)
    _nodes: dict[str, _NodeCache] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _gpu_w: dict[str, float] = field(default_factory=dict)  # each GPU's count, as last summed
    _site_max_w: float = 0.0

    # ---------------------------------------------------------------- what changed

    def plan_changed(self, plan: Plan) -> None:
        """Take a new plan's candidate power figures; every node's estimate is redone."""
        planned: dict[str, dict[str, float]] = {}
        current: dict[str, str | None] = {}
        site_max = 0.0
        for key, assignment in plan.assignments.items():
            figures = {c.workload: c.power_w for c in assignment.candidates}
            planned[key] = figures
            current[key] = assignment.previous
            if figures:
                site_max = max(site_max, *figures.values())
        self.planned = planned
        self.planned_current = current
        self._site_max_w = site_max
        self._nodes.clear()
        self._gpu_w.clear()

    def touch(self, gpu: str) -> None:
        """A command of `gpu` began or ended: its node's estimate is redone."""
        self._dirty.add(GpuKey.parse(gpu).node)

    def started(self, gpu: str, command_id: str, rise_w: float) -> None:
        if rise_w > 0:
            self.starts[gpu] = (command_id, rise_w)
        self.touch(gpu)

    def ended(self, gpu: str, command_id: str) -> None:
        """Command `command_id` of `gpu` ended by its agent's final word (or never left)."""
        start = self.starts.get(gpu)
        if start is not None and start[0] == command_id:
            del self.starts[gpu]
        running = self.unsettled.get(gpu)
        if running is not None:
            running.pop(command_id, None)
            if not running:
                del self.unsettled[gpu]
        self.touch(gpu)

    def may_still_run(self, gpu: str, command_id: str, workload: str, until_s: float) -> None:
        """Serve ended a command (a newer plan superseded it, or it timed out) that its
        agent may still be running: its target counts until the agent's final word on it,
        or `until_s` at the latest."""
        self.unsettled.setdefault(gpu, {})[command_id] = (workload, until_s)
        start = self.starts.get(gpu)
        if start is not None and start[0] == command_id:
            del self.starts[gpu]
        self.touch(gpu)

    def settle(self, gpu: str) -> None:
        """Nothing of an ended command can still run on `gpu`: its agent's final word on a
        later switch arrived (it switches a GPU one command at a time)."""
        if self.unsettled.pop(gpu, None) is not None:
            self.touch(gpu)

    def expire(self, now_s: float) -> None:
        """Forget ended commands past their time: their agent gave no word."""
        for gpu, running in list(self.unsettled.items()):
            for command_id, (_, until_s) in list(running.items()):
                if now_s > until_s:
                    del running[command_id]
            if not running:
                del self.unsettled[gpu]
                self.touch(gpu)

    # ---------------------------------------------------------------- the estimate

    def _estimate(self, gpu: str, workload: str | None) -> float | None:
        if workload is None or workload == UNKNOWN:
            return None
        planned = self.planned.get(gpu)
        return self.power.gpu_wall_w(gpu, workload, planned.get(workload) if planned else None)

    def gpu_wall_w(
        self,
        gpu: str,
        book: GpuBook,
        *,
        actual: str | None,
        reading_w: float | None,
        limit_w: float | None,
    ) -> float:
        """GPU `gpu`'s count against the cap (module note): pessimistic, never 0 unknown."""
        command = book.commands.get(gpu)
        running = self.unsettled.get(gpu)
        if command is None and running is None:  # the common case, kept cheap
            best = self._estimate(gpu, actual)
        else:
            workloads = {actual}
            if command is not None:
                workloads.update((command.workload, command.previous))
            if running is not None:
                workloads.update(w for w, _ in running.values())
            figures = [f for f in (self._estimate(gpu, w) for w in workloads) if f is not None]
            best = max(figures) if figures else None
        if reading_w is not None:
            read_w = self.power.reading_wall_w(gpu, reading_w)
            if best is None or read_w > best:
                best = read_w
        if best is not None:
            return best
        if limit_w is not None:
            return self.power.reading_wall_w(gpu, limit_w)
        # no reading, no limit: its largest planned figure, else the site's largest (both
        # `gpu_wall_w` figures already, not readings to convert)
        planned = self.planned.get(gpu)
        return max(planned.values()) if planned else self._site_max_w

    def _node_wall_w(self, node: str, telemetry: NodeTelemetry | None, book: GpuBook) -> float:
        total = self.power.node_overhead_wall_w(node)
        seen: set[str] = set()
        if telemetry is not None:
            order = telemetry_order(telemetry)
            facts = book.facts
            for gpu in telemetry.gpus:
                key = gpu_key(node, gpu.index)
                seen.add(key)
                report = gpu.workload
                actual = report.workload if report else None
                if key in facts:
                    actual, _ = book.actual(key, order, actual, None)
                count_w = self.gpu_wall_w(
                    key,
                    book,
                    actual=actual,
                    reading_w=gpu.power_draw_w,
                    limit_w=gpu.power_limit_w,
                )
                self._gpu_w[key] = count_w
                total += count_w
        for key in self._planned_keys(node):
            if key not in seen:  # planned, never reported: the plan's word on what it runs
                fact = book.facts.get(key)
                actual = fact.workload if fact is not None else self.planned_current.get(key)
                count_w = self.gpu_wall_w(key, book, actual=actual, reading_w=None, limit_w=None)
                self._gpu_w[key] = count_w
                total += count_w
        return total

    def _planned_keys(self, node: str) -> Iterable[str]:
        if self.fleet is not None:
            return ()  # the fleet holds every GPU that ever reported
        return (k for k in self.planned if GpuKey.parse(k).node == node)

    def site_wall_w(self, book: GpuBook) -> float:
        """The site's estimated wall power now (see the module note)."""
        nodes: Mapping[str, NodeTelemetry | None]
        if self.fleet is not None:
            nodes = {name: record.telemetry for name, record in self.fleet.nodes.items()}
        else:
            nodes = dict.fromkeys({GpuKey.parse(k).node for k in self.planned})
        for name in list(self._nodes):
            if name not in nodes:
                del self._nodes[name]
        total = 0.0
        for name, telemetry in nodes.items():
            cached = self._nodes.get(name)
            if cached is None or cached.telemetry is not telemetry or name in self._dirty:
                cached = _NodeCache(telemetry, self._node_wall_w(name, telemetry, book))
                self._nodes[name] = cached
            total += cached.wall_w
        self._dirty.clear()
        return total

    # ---------------------------------------------------------------- release

    def ramp_used_w(self, now_s: float) -> float:
        while self.ramp and self.ramp[0][0] <= now_s - RAMP_WINDOW_S:
            self.ramp.popleft()
        return sum(rise for _, rise in self.ramp)

    def next_ramp_s(self) -> float | None:
        """When the oldest start leaves the ramp window (a held start may fit then)."""
        return self.ramp[0][0] + RAMP_WINDOW_S if self.ramp else None

    def rise_w(self, held: Held) -> float:
        """How much releasing `held` raises its GPU's count against the cap (as of the last
        `site_wall_w`)."""
        target = self._estimate(held.gpu, held.workload)
        if target is None:
            return 0.0
        now_w = self._gpu_w.get(held.gpu)
        if now_w is None:  # a GPU nothing reported nor planned: count the target in full
            return target
        return max(0.0, target - now_w)

    def _planned_rise_w(self, held: Held) -> float:
        figures = self.planned.get(held.gpu, {})
        return figures.get(held.workload, 0.0) - figures.get(held.previous or "", 0.0)

    def _starts_by_node(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for gpu in self.starts:
            node = GpuKey.parse(gpu).node
            counts[node] = counts.get(node, 0) + 1
        return counts

    def choose(
        self, held: Mapping[str, Held], book: GpuBook, now_s: float
    ) -> tuple[list[tuple[Held, float]], dict[str, Held]]:
        """Which held switches go now, with their rise; and the rest, each marked with why
        it waits. Stops (no rise) go at once; starts go first come, first served while the
        cap and the ramp allow (the first that does not fit stops the queue, so a large
        start is never overtaken for good by small ones), and where their node's limit
        allows. `held` is in the order the switches were first held."""
        cap_w = self.power.cap_w(now_s)
        settings = self.settings
        ramp_limit_w = settings.ramp_limit_w_per_minute
        node_limit = settings.max_starts_per_node
        if cap_w is None and ramp_limit_w is None and node_limit is None:
            everything = sorted(held.values(), key=lambda h: self._planned_rise_w(h) > 0)
            return [(h, 0.0) for h in everything], {}
        total_w = self.site_wall_w(book)
        ramp_w = self.ramp_used_w(now_s)
        node_starts = self._starts_by_node()
        go: list[tuple[Held, float]] = []
        stay: dict[str, Held] = {}
        # a switch never decided on is priced now (a stop among them goes at once); one that
        # waited is a start, priced again only when its turn comes
        rises = {key: self.rise_w(h) for key, h in held.items() if not h.why}
        queue: list[str] = []
        for key, item in held.items():
            if key in book.commands:  # a guard: `order` ends a command it replaces first
                stay[key] = item
            elif key in rises and rises[key] <= 0:
                go.append((item, rises[key]))
            else:
                queue.append(key)
        blocked = ""
        for key in queue:
            item = held[key]
            node = GpuKey.parse(key).node
            if node_limit is not None and node_starts.get(node, 0) >= node_limit:
                stay[key] = _marked(item, HELD_NODE_STARTS, rises.get(key, item.rise_w))
                continue
            if blocked:
                stay[key] = _marked(item, blocked, rises.get(key, item.rise_w))
                continue
            rise = rises[key] if key in rises else self.rise_w(item)
            if rise > 0:
                blocked = _refusal(rise, ramp_w, ramp_limit_w, total_w, cap_w)
                if blocked:
                    stay[key] = _marked(item, blocked, rise)
                    continue
                total_w += rise
                ramp_w += rise
                node_starts[node] = node_starts.get(node, 0) + 1
                self.ramp.append((now_s, rise))
            go.append((item, rise))
        return go, stay


def _refusal(
    rise_w: float, ramp_w: float, ramp_limit_w: float | None, total_w: float, cap_w: float | None
) -> str:
    """Why a start of `rise_w` may not go now ("" if it may)."""
    if ramp_limit_w is not None and ramp_w > 0 and ramp_w + rise_w > ramp_limit_w:
        return HELD_RAMP
    if cap_w is not None and total_w + rise_w > cap_w:
        return HELD_SITE_POWER
    return ""


def _marked(held: Held, why: str, rise_w: float) -> Held:
    if held.why == why and held.rise_w == rise_w:
        return held
    return replace(held, why=why, rise_w=rise_w)
