"""Every Grafana panel query and every alert expression, against a real Prometheus scraping a
real `orchestrator demo`.

Grafana is not packaged here, so the dashboard's PromQL is checked where it runs: Prometheus
(Debian's package) scrapes the demo every second with the shipped scrape config (its serve
target pointed at the demo) and the shipped rules loaded. Then:

- every panel query and every alert expression parses (`/api/v1/query` says `success`);
- every rule evaluates without error on the demo's real series (`/api/v1/rules` health);
- a panel query returns data whenever every metric it reads is one the demo exports from its
  first seconds (`METRICS_IN_DEMO`): counters that alerts read with increase() exist at 0 from
  the start. Metrics not in that set (dropped payloads, held plans, stale prices: they
  appear only once something goes wrong; the site power cap, NaN without one) are checked
  for syntax only.

The demo's two nodes of consumer cards mine for their first half minute (the minimum dwell)
before the planner may move them, so per-GPU hashrate and mining revenue have data then.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.demo.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "orchestrator.json"
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "orchestrator.rules.yml"

# what `orchestrator demo` exports from its first seconds; a query over only these must have data
METRICS_IN_DEMO = frozenset(
    {
        "orchestrator_node_up",
        "orchestrator_node_report_age_seconds",
        "orchestrator_gpu_power_watts",
        "orchestrator_gpu_temperature_celsius",
        "orchestrator_gpu_utilization_ratio",
        "orchestrator_gpu_memory_used_bytes",
        "orchestrator_gpu_info",
        "orchestrator_mqtt_messages_total",
        "orchestrator_feed_fetch_total",
        "orchestrator_feed_last_success_timestamp_seconds",
        "orchestrator_hashprice_usd_per_hs_day",
        "orchestrator_power_price_usd_per_kwh",
        # planner, dispatcher and SLA
        "orchestrator_plan_duration_seconds_bucket",
        "orchestrator_plans_total",
        "orchestrator_plan_generation",
        "orchestrator_contract_problems",
        "orchestrator_switches_planned_total",
        "orchestrator_switches_total",
        "orchestrator_commands_published_total",
        "orchestrator_contract_rate_usd_per_gpu_hour",
        "orchestrator_sla_committed_gpus",
        "orchestrator_sla_planned_gpus",
        "orchestrator_sla_serving_gpus",
        "orchestrator_sla_shortfall_gpus",
        "orchestrator_sla_availability_ratio",
        "orchestrator_sla_availability_target_ratio",
        "orchestrator_sla_committed_gpu_hours",
        "orchestrator_sla_delivered_gpu_hours",
        "orchestrator_gpu_expected_usd_per_hour",
        "orchestrator_workload_expected_usd_per_hour",
        "orchestrator_workload_best_alternative_usd_per_hour",
        "orchestrator_workload_gpus",
        # watchdog and miners
        "orchestrator_gpu_quarantined",
        "orchestrator_gpu_hashrate_hashes_per_second",
        # power and the switch wave; the learnt power model has its first readings ~15 s in
        "orchestrator_plan_power_watts",
        "orchestrator_site_power_estimated_watts",
        "orchestrator_wave_held_commands",
        "orchestrator_wave_commands_total",
        "orchestrator_workload_power_source_gpus",
        "orchestrator_power_model_board_watts",
        "orchestrator_power_model_samples",
        # curtailment: 0 while no window is declared (the demo declares none)
        "orchestrator_curtailment_in_force",
        "orchestrator_curtailment_forecast_shortfall_gpus",
        # not here: orchestrator_site_power_cap_watts and orchestrator_curtailment_cap_watts
        # are NaN while the site has no cap, and the demo sets none, so a panel would be empty
    }
)
# Grafana's variables, as the test substitutes them
VARIABLES = {"$__rate_interval": "10s", "$Hostname": ".+"}
_METRIC = re.compile(r"\b(orchestrator_[a-z0-9_]+)")


@dataclass(frozen=True)
class Query:
    where: str
    expr: str

    @property
    def metrics(self) -> set[str]:
        return set(_METRIC.findall(self.expr))

    @property
    def needs_data(self) -> bool:
        return bool(self.metrics) and self.metrics <= METRICS_IN_DEMO


def _panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries() -> list[Query]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            queries.append(Query(f"panel {panel['title']!r} {target['refId']}", expr))
    return queries


def alert_queries() -> list[Query]:
    document = yaml.safe_load(RULES.read_text())
    return [
        Query(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in document["groups"]
        for rule in group["rules"]
    ]


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  (loopback http)
            return json.load(response)
    except urllib.error.HTTPError as error:  # Prometheus answers 400 with a JSON error body
        return json.load(error)


def _wait(probe: Any, *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = probe()
        except (OSError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class Stack:
    """The demo and a Prometheus scraping it, both real processes."""

    def __init__(self, prometheus_url: str, logs: Path) -> None:
        self.url = prometheus_url
        self.logs = logs

    def query(self, expr: str) -> dict[str, Any]:
        answer: dict[str, Any] = _get_json(
            f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        )
        return answer

    def diagnostics(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.logs.glob("*.log"))
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail(
            "prometheus is not installed: apt-get install --no-install-recommends prometheus"
        )
    tmp = tmp_path_factory.mktemp("prometheus")
    demo_port, prometheus_port = free_port(), free_port()
    demo_log = (tmp / "demo.log").open("wb")
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "demo",
            "--nodes",
            "2",
            "--gpus-per-node",
            "4",
            "--http",
            f"127.0.0.1:{demo_port}",
            "--duration",
            "60",
        ],
        stdout=demo_log,
        stderr=subprocess.STDOUT,
    )
    # the shipped scrape config, scraping every second, its serve target pointed at the demo
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(RULES)]
    (tmp / "agents.yml").write_text("[]\n")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["orchestrator-serve"]["static_configs"] = [{"targets": [f"127.0.0.1:{demo_port}"]}]
    jobs["orchestrator-agent"]["file_sd_configs"] = [{"files": [str(tmp / "agents.yml")]}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus_log = (tmp / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=prometheus_log,
        stderr=subprocess.STDOUT,
    )
    stack = Stack(f"http://127.0.0.1:{prometheus_port}", tmp)
    try:

        def serve_target_up() -> bool:
            targets = _get_json(f"{stack.url}/api/v1/targets")["data"]["activeTargets"]
            return any(
                t["labels"]["job"] == "orchestrator-serve" and t["health"] == "up" for t in targets
            )

        try:
            _wait(serve_target_up, timeout_s=25, what="Prometheus to scrape the demo")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{stack.diagnostics()}") from None
        yield stack
    finally:
        _stop(server)
        _stop(demo)
        demo_log.close()
        prometheus_log.close()


def test_the_dashboard_and_rules_have_queries() -> None:
    panels = list(_panels(json.loads(DASHBOARD.read_text())["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert len(dashboard_queries()) >= 20
    assert any(query.needs_data for query in dashboard_queries())


@pytest.mark.slow
def test_every_query_parses(stack: Stack) -> None:
    failures = {}
    for query in [*dashboard_queries(), *alert_queries()]:
        answer = stack.query(query.expr)
        if answer["status"] != "success":
            failures[query.where] = answer.get("error")
    assert failures == {}


@pytest.mark.slow
def test_dashboard_queries_over_demo_metrics_return_data(stack: Stack) -> None:
    """Waits (briefly) until each such query has data: rate() needs a few scrapes."""
    needing = [query for query in dashboard_queries() if query.needs_data]
    empty = {query.where: query.expr for query in needing}
    deadline = time.monotonic() + 20
    while empty and time.monotonic() < deadline:
        for query in needing:
            if query.where in empty and stack.query(query.expr)["data"]["result"]:
                del empty[query.where]
        time.sleep(0.5)
    assert empty == {}, stack.diagnostics()


@pytest.mark.slow
def test_the_node_variable_lists_the_demo_nodes(stack: Stack) -> None:
    """The dashboard's `Hostname` variable is label_values(orchestrator_gpu_info, Hostname)."""
    variable = next(
        item
        for item in json.loads(DASHBOARD.read_text())["templating"]["list"]
        if item["name"] == "Hostname"
    )
    metric, label = re.fullmatch(
        r"label_values\((\w+), (\w+)\)", variable["query"]["query"]
    ).groups()  # type: ignore[union-attr]
    url = f"{stack.url}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": metric})
    assert _get_json(url)["data"] == ["node-01", "node-02"]


@pytest.mark.slow
def test_every_rule_evaluates_on_real_series(stack: Stack) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = _get_json(f"{stack.url}/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        done = all(not rule["lastEvaluation"].startswith("0001") for rule in rules)
        return rules if rules and done else None

    rules = _wait(evaluated, timeout_s=10, what="every rule to be evaluated once")
    assert len(rules) == len(alert_queries())
    assert {
        rule["name"]: rule.get("lastError", "") for rule in rules if rule["health"] != "ok"
    } == {}
