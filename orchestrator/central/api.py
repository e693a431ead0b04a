"""The HTTP API of `serve`: health, readiness, metrics and the fleet state.

Handlers read the daemon's state and never change it; they build JSON from the fleet
snapshot as it stands at the request. `/readyz` answers 200 only while the daemon is
connected to the broker and has loaded its state (a load balancer or systemd check
can trust it). Further routes (explain, overrides, decisions) join this application.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from orchestrator.central.fleet import FleetState, NodeRecord
from orchestrator.central.policy_loop import PlanRecord, PolicyLoop
from orchestrator.central.views import explain_json, plan_json
from orchestrator.domain import UNKNOWN, NodeStatus, gpu_key
from orchestrator.httpserver import metrics_handler

FLEET_KEY = web.AppKey("fleet", FleetState)
READY_KEY: web.AppKey[Callable[[], dict[str, bool]]] = web.AppKey("ready")
CLOCK_KEY: web.AppKey[Callable[[], float]] = web.AppKey("clock")
SITE_KEY = web.AppKey("site", str)
POLICY_KEY = web.AppKey("policy", PolicyLoop)


def node_json(record: NodeRecord, now_s: float, plan: PlanRecord | None = None) -> dict[str, Any]:
    online = record.status is NodeStatus.ONLINE
    telemetry = record.telemetry
    gpus = []
    if telemetry is not None:
        for gpu in telemetry.gpus:
            reported = gpu.workload.workload if gpu.workload else UNKNOWN
            key = gpu_key(record.name, gpu.index)
            assignment = plan.plan.assignments.get(key) if plan else None
            gpus.append(
                {
                    "gpu": key,
                    "uuid": gpu.uuid,
                    "state": gpu.health.value if online else UNKNOWN,
                    "workload": reported if online else UNKNOWN,
                    "last_reported_workload": reported,
                    "planned_workload": assignment.workload if assignment else None,
                    "reason": assignment.reason if assignment else None,
                    "telemetry": gpu.model_dump(mode="json", exclude_none=True),
                }
            )
    return {
        "node": record.name,
        "status": record.status.value,
        "status_reason": record.status_reason,
        "status_since_s": record.status_changed_at_s,
        "last_report_age_s": (
            None if record.received_at_s is None else round(now_s - record.received_at_s, 3)
        ),
        "reports_total": record.reports_total,
        "agent_version": telemetry.agent_version if telemetry else None,
        "nvml_backend": telemetry.nvml_backend if telemetry else None,
        "driver_version": telemetry.driver_version if telemetry else None,
        "gpus": gpus,
    }


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = request.app[READY_KEY]()
    ready = all(checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def state(request: web.Request) -> web.Response:
    fleet = request.app[FLEET_KEY]
    now_s = request.app[CLOCK_KEY]()
    last = request.app[POLICY_KEY].last
    nodes = [
        node_json(record, now_s, last) for record in sorted(fleet.nodes.values(), key=_by_name)
    ]
    return web.json_response(
        {
            "site": request.app[SITE_KEY],
            "generated_at_s": now_s,
            "summary": fleet.counts(),
            "plan_generation": last.generation if last else None,
            "nodes": nodes,
        }
    )


def _no_plan() -> web.Response:
    return web.json_response(
        {
            "error": "no plan yet",
            "detail": "the planner waits for the fleet to report and for prices",
        },
        status=503,
    )


async def current_plan(request: web.Request) -> web.Response:
    loop = request.app[POLICY_KEY]
    if loop.last is None:
        return _no_plan()
    return web.json_response(plan_json(loop.last, loop.dispatcher.recent(50)))


async def sla(request: web.Request) -> web.Response:
    loop = request.app[POLICY_KEY]
    now_s = request.app[CLOCK_KEY]()
    current = [entry.to_json() for entry in loop.ledger.current(now_s)]
    history = [
        entry.to_json()
        for entry in sorted(loop.ledger.entries.values(), key=lambda e: e.period_start_s)
    ]
    return web.json_response(
        {"billing_period": loop.ledger.period, "current": current, "history": history}
    )


async def explain(request: web.Request) -> web.Response:
    loop = request.app[POLICY_KEY]
    name = request.match_info["gpu"]
    key = loop.observer.resolve(name)
    if loop.last is None:
        return _no_plan()
    view = explain_json(loop.last, key) if key else None
    if view is None:
        return web.json_response(
            {
                "error": "unknown GPU",
                "detail": f"no GPU {name!r} in the newest plan (name it node:index or by UUID)",
            },
            status=404,
        )
    return web.json_response(view)


def _by_name(record: NodeRecord) -> str:
    return record.name


def build_app(
    *,
    fleet: FleetState,
    policy: PolicyLoop,
    registry: CollectorRegistry,
    readiness: Callable[[], dict[str, bool]],
    site: str,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[FLEET_KEY] = fleet
    app[READY_KEY] = readiness
    app[CLOCK_KEY] = clock
    app[SITE_KEY] = site
    app[POLICY_KEY] = policy
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler(registry))
    app.router.add_get("/api/v1/state", state)
    app.router.add_get("/api/v1/plan", current_plan)
    app.router.add_get("/api/v1/sla", sla)
    app.router.add_get("/api/v1/gpus/{gpu}/explain", explain)
    return app
