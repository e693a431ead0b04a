"""Scrape-time gauges over the newest plan: money, SLA and workloads.

Read at scrape time through the `ServeReader` (the newest plan), so a plan costs nothing
extra in metrics.
`orchestrator_workload_expected_usd_per_hour` is the planned net $/h summed per workload;
`orchestrator_workload_best_alternative_usd_per_hour` sums, over the same GPUs, what the
best other candidate would have earned, so a dashboard shows each choice beside its
alternative. SLA gauges compare committed, planned and actually serving (GPUs online and
reporting the contract's workload) per reserved contract.

Power: `orchestrator_plan_power_watts{at}` is the newest plan's site power at the wall
(`at="wall"`, hosts and cooling included, what the site cap counts), on the GPU boards
(`at="board"`) and of the hosts alone (`at="hosts"`). The learnt power model is
`orchestrator_power_model_board_watts` and `orchestrator_power_model_samples` per GPU model
(`modelName`) and workload, and `orchestrator_workload_power_source_gpus` counts the
planned GPUs of each workload by where their board power figure comes from (`source`:
measured, benchmark, config, default): labels per model and workload, never per GPU.

The one per-GPU family, `orchestrator_gpu_expected_usd_per_hour` (10,000 samples at 10k
GPUs), is written as exposition text by `per_gpu_text` (see `metrics.py` for why);
`/metrics` appends it to the registry's exposition.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orchestrator.central.reader import PlanRecord, ServeReader
from orchestrator.domain import UNKNOWN, GpuKey
from orchestrator.web.rendering import Family, LabelCache


class PlanCollector(Collector):
    def __init__(self, reader: ServeReader) -> None:
        self.reader = reader

    def collect(self) -> Iterator[GaugeMetricFamily]:
        contracts = self.reader.contracts
        rates = GaugeMetricFamily(
            "orchestrator_contract_rate_usd_per_gpu_hour",
            "Contracted AI rate per GPU-hour",
            labels=["contract", "kind"],
        )
        committed = GaugeMetricFamily(
            "orchestrator_sla_committed_gpus",
            "GPUs a reserved contract commits",
            labels=["contract"],
        )
        target = GaugeMetricFamily(
            "orchestrator_sla_availability_target_ratio",
            "Availability a reserved contract promises",
            labels=["contract"],
        )
        serving = GaugeMetricFamily(
            "orchestrator_sla_serving_gpus",
            "GPUs online and reporting the contract's workload",
            labels=["contract"],
        )
        for contract in contracts.reserved:
            rates.add_metric([contract.id, "reserved"], contract.rate_usd_per_gpu_hour)
            committed.add_metric([contract.id], float(contract.committed_gpus))
            target.add_metric([contract.id], contract.availability_target_fraction)
        for on_demand in contracts.on_demand:
            rates.add_metric([on_demand.id, "on_demand"], on_demand.rate_usd_per_gpu_hour)
        counts = self.reader.serving()
        for contract in contracts.reserved:
            serving.add_metric([contract.id], float(counts.get(contract.id, 0)))
        yield rates
        yield committed
        yield target
        yield serving
        yield from self._ledger_families()
        record = self.reader.last_plan
        tally = _tally(record) if record is not None else _Tally()
        yield from self._plan_families(record, tally)
        yield from self._power_families(record, tally)

    def _power_families(
        self, record: PlanRecord | None, tally: _Tally
    ) -> Iterator[GaugeMetricFamily]:
        site = GaugeMetricFamily(
            "orchestrator_plan_power_watts",
            "The newest plan's site power: at the wall (the cap's figure), boards, hosts",
            labels=["at"],
        )
        learnt = GaugeMetricFamily(
            "orchestrator_power_model_board_watts",
            "Learnt mean board power per GPU model and workload",
            labels=["modelName", "workload"],
        )
        samples = GaugeMetricFamily(
            "orchestrator_power_model_samples",
            "Readings behind the learnt board power per GPU model and workload",
            labels=["modelName", "workload"],
        )
        sources = GaugeMetricFamily(
            "orchestrator_workload_power_source_gpus",
            "Planned GPUs per workload by the source of their board power figure",
            labels=["workload", "source"],
        )
        if record is not None:
            site.add_metric(["wall"], record.plan.total_power_w)
            site.add_metric(["board"], record.plan.board_power_w)
            site.add_metric(["hosts"], record.plan.host_power_w)
            for (model, workload), entry in sorted(record.power.learnt.items()):
                learnt.add_metric([model, workload], entry.mean_w)
                samples.add_metric([model, workload], float(entry.samples))
            for (workload, source), n in sorted(tally.by_source.items()):
                sources.add_metric([workload, source], float(n))
        yield site
        yield learnt
        yield samples
        yield sources

    def _ledger_families(self) -> Iterator[GaugeMetricFamily]:
        labels = ["contract"]
        owed = GaugeMetricFamily(
            "orchestrator_sla_committed_gpu_hours",
            "GPU-hours committed so far in the current billing period",
            labels=labels,
        )
        delivered = GaugeMetricFamily(
            "orchestrator_sla_delivered_gpu_hours",
            "GPU-hours delivered so far in the current billing period",
            labels=labels,
        )
        availability = GaugeMetricFamily(
            "orchestrator_sla_availability_ratio",
            "Delivered / committed GPU-hours in the current billing period",
            labels=labels,
        )
        penalty = GaugeMetricFamily(
            "orchestrator_sla_penalty_usd",
            "Penalty owed for the current billing period's shortfall",
            labels=labels,
        )
        for entry in self.reader.ledger.current(self.reader.clock()):
            owed.add_metric([entry.contract_id], entry.committed_gpu_hours)
            delivered.add_metric([entry.contract_id], entry.delivered_gpu_hours)
            penalty.add_metric([entry.contract_id], entry.penalty_usd)
            if entry.availability_fraction is not None:
                availability.add_metric([entry.contract_id], entry.availability_fraction)
        yield owed
        yield delivered
        yield availability
        yield penalty

    def _plan_families(
        self, record: PlanRecord | None, tally: _Tally
    ) -> Iterator[GaugeMetricFamily]:
        planned = GaugeMetricFamily(
            "orchestrator_sla_planned_gpus", "GPUs the plan puts on a contract", labels=["contract"]
        )
        shortfall = GaugeMetricFamily(
            "orchestrator_sla_shortfall_gpus",
            "Committed GPUs the plan cannot serve",
            labels=["contract"],
        )
        by_workload = GaugeMetricFamily(
            "orchestrator_workload_expected_usd_per_hour",
            "Planned net revenue per hour, summed by workload",
            labels=["workload"],
        )
        alternative = GaugeMetricFamily(
            "orchestrator_workload_best_alternative_usd_per_hour",
            "What the same GPUs would earn on their best other candidate",
            labels=["workload"],
        )
        gpus = GaugeMetricFamily(
            "orchestrator_workload_gpus",
            "GPUs the plan assigns to each workload",
            labels=["workload"],
        )
        if record is not None:
            for sla in record.plan.sla:
                planned.add_metric([sla.contract_id], float(sla.assigned_gpus))
                shortfall.add_metric([sla.contract_id], float(sla.shortfall_gpus))
            for workload, n in sorted(tally.count.items()):
                gpus.add_metric([workload], float(n))
                by_workload.add_metric([workload], tally.money.get(workload, 0.0))
                alternative.add_metric([workload], tally.other.get(workload, 0.0))
        yield planned
        yield shortfall
        yield by_workload
        yield alternative
        yield gpus

    def per_gpu_text(self, labels: LabelCache) -> str:
        """`orchestrator_gpu_expected_usd_per_hour`: each GPU's planned net $/h."""
        family = Family(
            "orchestrator_gpu_expected_usd_per_hour",
            "Planned net revenue of a GPU's chosen workload",
        )
        record = self.reader.last_plan
        if record is not None:
            for key, assignment in record.plan.assignments.items():
                workload = assignment.workload or UNKNOWN
                for candidate in assignment.candidates:
                    if candidate.workload == workload:
                        gpu = record.gpus.get(key)
                        gpu_id = GpuKey.parse(key)
                        uuid, model = (gpu.uuid, gpu.model) if gpu else ("", "")
                        family.add(
                            labels.get(str(gpu_id.index), uuid, model, gpu_id.node, workload),
                            candidate.net_usd_per_hour,
                        )
                        break
        return "".join(family.lines)


@dataclass(slots=True)
class _Tally:
    """The newest plan summed by workload, in one pass over its assignments."""

    count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    money: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # chosen net
    other: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # best other
    by_source: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


def _tally(record: PlanRecord) -> _Tally:
    tally = _Tally()
    for assignment in record.plan.assignments.values():
        workload = assignment.workload or UNKNOWN
        tally.count[workload] += 1
        chosen = next((c for c in assignment.candidates if c.workload == workload), None)
        best_other = next((c for c in assignment.candidates if c.workload != workload), None)
        if chosen is not None:
            tally.money[workload] += chosen.net_usd_per_hour
        if best_other is not None:
            tally.other[workload] += best_other.net_usd_per_hour
        source = chosen.power_source if chosen is not None else ""
        tally.by_source[workload, source or "unknown"] += 1
    return tally
