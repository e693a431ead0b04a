"""The HTTP API of `serve`: health, readiness, metrics, the fleet state, the plan and overrides.

The GET handlers only read: they build JSON from the fleet snapshot and the newest plan as
they stand at the request. The API changes two things, operators' overrides and curtailment
windows: `POST /api/v1/overrides` and `DELETE /api/v1/overrides/{id}` go through
`OverrideService`, `POST /api/v1/curtailments` and `DELETE /api/v1/curtailments/{id}`
through `CurtailmentService`; each checks the request, writes it to the store with an audit
record naming the token, and lets the policy loop replan; `auth` admits writes only with an
operator token. `/readyz` answers 200 only while the daemon is connected to the broker and
has loaded its state (a load balancer or systemd check can trust it).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, assert_never

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from orchestrator.central.curtailment import (
    CurtailmentRejected,
    CurtailmentRequest,
    CurtailmentService,
    window_json,
)
from orchestrator.central.fleet import FleetState
from orchestrator.central.overrides import (
    OverrideRejected,
    OverrideRequest,
    OverrideService,
    RefusalReason,
)
from orchestrator.central.reader import ServeReader
from orchestrator.domain import FAILURE_STATES, SwitchState
from orchestrator.httpserver import metrics_handler
from orchestrator.web.auth import IDENTITY_KEY, TokenChecker, auth_middleware
from orchestrator.web.openapi import openapi_document
from orchestrator.web.rendering import StateRenderer
from orchestrator.web.statuspage import add_status_page
from orchestrator.web.views import contracts_json, explain_json, lifecycle_json, plan_json

FLEET_KEY = web.AppKey("fleet", FleetState)
READY_KEY: web.AppKey[Callable[[], dict[str, bool]]] = web.AppKey("ready")
CLOCK_KEY: web.AppKey[Callable[[], float]] = web.AppKey("clock")
SITE_KEY = web.AppKey("site", str)
READER_KEY = web.AppKey("reader", ServeReader)
OVERRIDES_KEY = web.AppKey("overrides", OverrideService)
STATE_RENDERER_KEY = web.AppKey("state_renderer", StateRenderer)
CURTAILMENTS_KEY = web.AppKey("curtailments", CurtailmentService)

log = structlog.get_logger(__name__)
MAX_BODY_BYTES = 64 * 1024
_FAILED_STATES = frozenset(s.value for s in (*FAILURE_STATES, SwitchState.TIMED_OUT))


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = request.app[READY_KEY]()
    ready = all(checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def state(request: web.Request) -> web.Response:
    """The whole fleet: every node's fields (`node_head`) and its GPUs, by node name.

    Written by `StateRenderer` as text (at 10k GPUs the dict-and-`json.dumps` way took
    0.3 s a request on a 2-core machine); the JSON document is the same."""
    last = request.app[READER_KEY].last_plan
    body = request.app[STATE_RENDERER_KEY].render(
        fleet=request.app[FLEET_KEY],
        site=request.app[SITE_KEY],
        now_s=request.app[CLOCK_KEY](),
        assignments=last.plan.assignments if last else None,
        plan=last,
        plan_generation=last.generation if last else None,
    )
    return web.Response(body=body, content_type="application/json")


def _no_plan() -> web.Response:
    return web.json_response(
        {
            "error": "no plan yet",
            "detail": "the planner waits for the fleet to report and for prices",
        },
        status=503,
    )


async def current_plan(request: web.Request) -> web.Response:
    reader = request.app[READER_KEY]
    if reader.last_plan is None:
        return _no_plan()
    return web.json_response(plan_json(reader.last_plan, reader.recent_commands(50), reader.wave()))


async def sla(request: web.Request) -> web.Response:
    reader = request.app[READER_KEY]
    ledger = reader.ledger
    now_s = request.app[CLOCK_KEY]()
    current = [entry.to_json() for entry in ledger.current(now_s)]
    history = [
        entry.to_json() for entry in sorted(ledger.entries.values(), key=lambda e: e.period_start_s)
    ]
    return web.json_response(
        {
            "billing_period": ledger.period,
            "contracts": contracts_json(reader.contracts),
            "current": current,
            "history": history,
        }
    )


def _bad_request(message: str, problems: list[dict[str, str]] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if problems:
        body["problems"] = problems
    return web.json_response(body, status=400)


def _refusal_status(reason: RefusalReason) -> int:
    """The HTTP status of a refused override: the client's mistake, a conflict, or absent."""
    match reason:
        case (
            RefusalReason.BAD_REQUEST
            | RefusalReason.UNKNOWN_NODE
            | RefusalReason.UNKNOWN_GPU
            | RefusalReason.UNKNOWN_WORKLOAD
        ):
            return 400
        case RefusalReason.CONTRACT_SHORT:
            return 409
        case RefusalReason.NOT_FOUND:
            return 404
        case _:
            assert_never(reason)


def _refused(rejected: OverrideRejected) -> web.Response:
    return web.json_response({"error": rejected.message}, status=_refusal_status(rejected.reason))


async def list_overrides(request: web.Request) -> web.Response:
    service = request.app[OVERRIDES_KEY]
    return web.json_response(
        {"overrides": service.list(), "workloads": sorted(service.valid_workloads())}
    )


def _problems(error: ValidationError) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(p) for p in e["loc"]) or "<body>",
            "problem": "unknown field" if e["type"] == "extra_forbidden" else e["msg"],
        }
        for e in error.errors()
    ]


async def create_override(request: web.Request) -> web.Response:
    try:
        raw = await request.read()
        body = OverrideRequest.model_validate_json(raw)
    except ValidationError as error:
        return _bad_request("invalid override", _problems(error))
    try:
        created = await request.app[OVERRIDES_KEY].create(body, actor=request[IDENTITY_KEY])
    except OverrideRejected as rejected:
        return _refused(rejected)
    log.info(
        "override created",
        override=created.row.id,
        by=created.row.actor,
        gpus=len(created.gpus),
        workload=created.row.workload,
        sla=created.sla_note,
    )
    return web.json_response(
        {**created.row.to_json(), "gpus": list(created.gpus), "sla": created.sla_note}, status=201
    )


async def delete_override(request: web.Request) -> web.Response:
    override_id = request.match_info["override_id"]
    try:
        await request.app[OVERRIDES_KEY].delete(override_id, actor=request[IDENTITY_KEY])
    except OverrideRejected as rejected:
        return _refused(rejected)
    log.info("override deleted", override=override_id, by=request[IDENTITY_KEY])
    return web.json_response({"deleted": override_id})


async def list_curtailments(request: web.Request) -> web.Response:
    service = request.app[CURTAILMENTS_KEY]
    now_s = request.app[CLOCK_KEY]()
    cap_w = service.effective_cap_w(now_s)
    return web.json_response(
        {
            "windows": service.history(),
            "effective_cap_kw": None if cap_w is None else cap_w / 1000.0,
            "configured_cap_kw": service.loop.policy.settings.site_power_cap_kw,
            "price_strike_usd_per_kwh": (
                service.loop.policy.settings.curtail_price_strike_usd_per_kwh
            ),
            "shed_ahead_s": service.settings.shed_ahead_s,
            "lead_time_s": service.settings.lead_time_s,
        }
    )


async def create_curtailment(request: web.Request) -> web.Response:
    try:
        body = CurtailmentRequest.model_validate_json(await request.read())
    except ValidationError as error:
        return _bad_request("invalid curtailment window", _problems(error))
    try:
        row = await request.app[CURTAILMENTS_KEY].create(body, actor=request[IDENTITY_KEY])
    except CurtailmentRejected as rejected:
        return _curtailment_refused(rejected)
    return web.json_response(window_json(row, request.app[CLOCK_KEY]()), status=201)


async def cancel_curtailment(request: web.Request) -> web.Response:
    window_id = request.match_info["window_id"]
    try:
        row = await request.app[CURTAILMENTS_KEY].cancel(window_id, actor=request[IDENTITY_KEY])
    except CurtailmentRejected as rejected:
        return _curtailment_refused(rejected)
    return web.json_response({"cancelled": row.id})


def _curtailment_refused(rejected: CurtailmentRejected) -> web.Response:
    """404 for a window that is not there (or no longer live), else 400 with the reason."""
    if rejected.not_found:
        return web.json_response({"error": rejected.message}, status=404)
    return _bad_request(rejected.message)


async def decisions(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return _bad_request("limit must be an integer")
    if not 1 <= limit <= 1000:
        return _bad_request("limit must be between 1 and 1000")
    store = request.app[OVERRIDES_KEY].store
    entries: list[dict[str, Any]] = [
        {"at_s": e["at_s"], "kind": e["action"], "by": e["by"], **e["detail"]}
        for e in store.audit_log(limit)
    ]
    entries.extend(
        {"at_s": p["at_s"], "kind": "plan", "by": "planner", **p} for p in store.recent_plans(limit)
    )
    entries.extend(
        {
            "at_s": c.issued_at_s,
            "kind": "switch",
            "by": "planner",
            **c.to_json(),
            # a rollback is a failed switch, whatever runs afterwards
            "failed": c.state in _FAILED_STATES,
        }
        for c in store.recent_commands(limit)
    )
    entries.sort(key=lambda e: e["at_s"], reverse=True)
    return web.json_response({"decisions": entries[:limit]})


async def openapi(_request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unexpected errors become a bare 500; the detail goes to the log, not the client."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("http handler failed", path=request.path, method=request.method)
        return web.json_response({"error": "internal error"}, status=500)


async def explain(request: web.Request) -> web.Response:
    reader = request.app[READER_KEY]
    name = request.match_info["gpu"]
    key = reader.resolve(name)
    if reader.last_plan is None:
        return _no_plan()
    view = explain_json(reader.last_plan, key) if key else None
    if view is None:
        return web.json_response(
            {
                "error": "unknown GPU",
                "detail": f"no GPU {name!r} in the newest plan (name it node:index or by UUID)",
            },
            status=404,
        )
    assert key is not None  # noqa: S101  (a view exists only for a resolved GPU)
    view["lifecycle"] = lifecycle_json(reader, key)
    return web.json_response(view)


def build_app(
    *,
    reader: ServeReader,
    overrides: OverrideService,
    tokens: TokenChecker,
    registry: CollectorRegistry,
    readiness: Callable[[], dict[str, bool]],
    site: str,
    clock: Callable[[], float] = time.time,
    metrics_text: Callable[[], str] | None = None,
    curtailments: CurtailmentService | None = None,
) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[errors_middleware, auth_middleware(tokens)]
    )
    app[FLEET_KEY] = reader.fleet
    app[READY_KEY] = readiness
    app[CLOCK_KEY] = clock
    app[SITE_KEY] = site
    app[READER_KEY] = reader
    app[OVERRIDES_KEY] = overrides
    app[STATE_RENDERER_KEY] = StateRenderer()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler(registry, extra_text=metrics_text))
    app.router.add_get("/api/v1/state", state)
    app.router.add_get("/api/v1/plan", current_plan)
    app.router.add_get("/api/v1/sla", sla)
    app.router.add_get("/api/v1/gpus/{gpu}/explain", explain)
    app.router.add_get("/api/v1/overrides", list_overrides)
    app.router.add_post("/api/v1/overrides", create_override)
    app.router.add_delete("/api/v1/overrides/{override_id}", delete_override)
    if curtailments is not None:
        app[CURTAILMENTS_KEY] = curtailments
        app.router.add_get("/api/v1/curtailments", list_curtailments)
        app.router.add_post("/api/v1/curtailments", create_curtailment)
        app.router.add_delete("/api/v1/curtailments/{window_id}", cancel_curtailment)
    app.router.add_get("/api/v1/decisions", decisions)
    app.router.add_get("/api/v1/openapi.json", openapi)
    add_status_page(app)
    return app
