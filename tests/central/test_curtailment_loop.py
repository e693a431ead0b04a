"""Curtailment in the central loop: re-plans at a window's edges and on a strike crossing,
the service's windows in the store, its forecasts, and a utility feed over real HTTP.

The loop rig is `test_policy_loop`'s: the real fleet state, market book and dispatcher over
a real mosquitto, a hand-driven clock. The store is a real SQLite file; the feed is a real
aiohttp server on a loopback port.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from orchestrator.central.curtailment import (
    CurtailmentRejected,
    CurtailmentRequest,
    CurtailmentService,
)
from orchestrator.central.curtailment_feed import CurtailmentFeed, CurtailmentFeedMetrics
from orchestrator.central.store import Store
from orchestrator.config.curtailment import CurtailmentFeedSection, CurtailmentSection
from orchestrator.httpserver import start_http
from orchestrator.policy.curtailment import CurtailmentWindow
from orchestrator.policy.model import (
    AiPower,
    Contracts,
    Eligibility,
    PolicyInputs,
    ReservedContract,
)
from tests.central.test_policy_loop import (
    RICH_HASHPRICE,
    Rig,
    prices,
    rig,  # noqa: F401  (the fixture)
    telemetry,
)

pytestmark = pytest.mark.slow


async def first_plan(rig: Rig, workload: str = "mine:kawpow") -> None:  # noqa: F811
    rig.fleet.apply_telemetry(telemetry("rig", workload), now_s=rig.clock.now_s)
    prices(rig, hashprice=RICH_HASHPRICE)
    rig.clock.now_s += 10.0
    record = await rig.loop.plan_once("start")
    assert record is not None
    assert [a.workload for a in record.plan.assignments.values()] == ["mine:kawpow"] * 2


async def test_a_window_is_planned_at_its_edges_not_at_the_next_timer(rig: Rig) -> None:  # noqa: F811
    policy = rig.loop.policy  # the timer alone would plan an hour later
    rig.loop.policy = replace(policy, settings=replace(policy.settings, interval_s=3600.0))
    await first_plan(rig)
    rig.loop.shed_ahead_s = 10.0
    t = rig.clock.now_s
    window = CurtailmentWindow("w1", 0.2, t + 100, t + 200, "EEA1", "operator")
    rig.loop.replace_curtailments((window,))
    assert rig.loop.due(t) == "curtailment"  # a new window: plan now (it may need a forecast)
    await rig.loop.plan_once("curtailment")
    assert rig.loop.due(t + 30) is None
    # the loop sleeps a tick, or to the edge when the edge is nearer
    assert rig.loop.sleep_s(t + 50) == rig.loop.tick_s
    assert rig.loop.sleep_s(t + 89.9) == pytest.approx(0.1)
    assert rig.loop.due(t + 89.9) is None
    rig.clock.now_s = t + 90  # the window's start less shed_ahead_s
    assert rig.loop.due(rig.clock.now_s) == "curtailment"
    record = await rig.loop.plan_once("curtailment")
    assert record is not None
    assert record.curtailment == window
    assert [a.workload for a in record.plan.assignments.values()] == ["idle", "idle"]
    assert record.plan.assignments["rig:0"].reason == (
        "switch to idle: shed for curtailment window w1 (cap 0.2 kW)"
    )
    assert [c.workload for c in record.commands] == ["idle", "idle"]
    assert rig.loop.due(t + 120) is None
    rig.clock.now_s = t + 200  # the end
    assert rig.loop.due(rig.clock.now_s) == "curtailment"
    record = await rig.loop.plan_once("curtailment")
    assert record is not None
    assert record.curtailment is None
    assert record.plan.power_cap_w is None
    assert rig.loop.next_edge_s(rig.clock.now_s) is None
    rig.loop.replace_curtailments(())  # the service drops the ended window: no plan for that
    assert rig.loop.due(rig.clock.now_s + 1) is None


async def test_crossing_the_price_strike_replans_and_sheds(rig: Rig) -> None:  # noqa: F811
    policy = rig.loop.policy
    rig.loop.policy = replace(
        policy, settings=replace(policy.settings, curtail_price_strike_usd_per_kwh=0.5)
    )
    await first_plan(rig)
    rig.clock.now_s += 1.0
    prices(rig, hashprice=None, power=0.5)
    assert rig.loop.due(rig.clock.now_s) == "strike"
    record = await rig.loop.plan_once("strike")
    assert record is not None
    assert record.plan.shed_by_strike
    assert [a.workload for a in record.plan.assignments.values()] == ["idle", "idle"]
    assert "at or above the strike 0.5000 $/kWh" in record.plan.assignments["rig:1"].reason
    rig.clock.now_s += 1.0
    prices(rig, hashprice=None, power=0.499)  # a 0.2 % move: only the crossing makes it due
    assert rig.loop.due(rig.clock.now_s) == "strike"


def acme(committed: int) -> ReservedContract:
    return ReservedContract(
        id="acme",
        rate_usd_per_gpu_hour=0.5,
        committed_gpus=committed,
        eligibility=Eligibility(),
        windows=None,
        availability_target_fraction=0.99,
        penalty_usd_per_gpu_hour=5.0,
        lead_time_s=0.0,
        switch_downtime_s=60.0,
        power=AiPower(default_w=300.0),
    )


@pytest.fixture
def service(rig: Rig, tmp_path: Path) -> CurtailmentService:  # noqa: F811
    policy = rig.loop.policy
    rig.loop.policy = PolicyInputs(
        policy.profiles, Contracts(reserved=(acme(1),), on_demand=()), policy.settings
    )
    rig.loop.shed_ahead_s = 0.0
    return CurtailmentService(
        loop=rig.loop,
        store=Store(tmp_path / "serve.sqlite3"),
        settings=CurtailmentSection(lead_time_s=600.0, shed_ahead_s=0.0),
        registry=CollectorRegistry(),
    )


def window_ids(rig: Rig) -> list[str]:  # noqa: F811
    return [w.id for w in rig.loop.curtailments]


def gauge(service: CurtailmentService) -> float:
    (metric,) = service.forecast_shortfall.collect()
    return metric.samples[0].value


async def test_a_window_is_stored_forecast_at_creation_and_again_at_its_lead_time(
    rig: Rig,  # noqa: F811
    service: CurtailmentService,
    tmp_path: Path,
) -> None:
    rig.fleet.apply_telemetry(telemetry("rig", "mine:kawpow"), now_s=rig.clock.now_s)
    prices(rig, hashprice=RICH_HASHPRICE)
    rig.clock.now_s += 10.0
    await rig.loop.plan_once("start")
    t = rig.clock.now_s
    # 0.2 kW at the start, an hour ahead: acme's one GPU (300 W) cannot be kept
    row = await service.create(
        CurtailmentRequest(cap_kw=0.2, start_s=t + 3600, duration_s=1800, reason="EEA2"),
        actor="alice",
    )
    assert row.forecast is not None
    assert row.forecast["ok"] is False
    assert row.forecast["cap_kw"] == 0.2
    assert row.forecast["shortfalls"] == [
        {
            "contract": "acme",
            "committed_gpus": 1,
            "assigned_gpus": 0,
            "shortfall_gpus": 1,
            # the penalty runs below commitment x availability target (0.99): 0.99 GPU
            "penalty_usd_per_hour": 4.95,
        }
    ]
    assert gauge(service) == 1.0
    assert rig.loop.curtailments[0].id == row.id
    assert service.effective_cap_w(t) is None
    assert service.effective_cap_w(t + 3600) == 200.0
    (listed,) = service.history()
    assert (listed["state"], listed["by"], listed["forecast"]["ok"]) == ("upcoming", "alice", False)

    # the operator raises the site's headroom (a second window replaces the first); the
    # lead-time forecast of the new one is clean: at the wall (PUE 1.2, PSU 0.92, a 150 W
    # host) the node needs 180 W, acme's GPU 391 W and the other, idle, 65 W: 636 W
    await service.cancel(row.id, actor="alice")
    assert rig.loop.curtailments == ()
    assert gauge(service) == 0.0
    second = await service.create(
        CurtailmentRequest(cap_kw=0.7, start_s=t + 3600, end_s=t + 5400, reason="EEA2 bis"),
        actor="alice",
    )
    assert second.forecast is not None
    assert second.forecast["ok"] is True
    first_check = second.forecast["checked_at_s"]
    rig.clock.now_s = t + 3600 - 600  # the lead time
    await service.step()
    stored = {w["id"]: w for w in service.history()}
    assert stored[second.id]["forecast"]["checked_at_s"] == t + 3000 != first_check
    assert stored[row.id]["state"] == "cancelled"

    # a restart of serve finds both, the cancelled one kept for the record
    again = CurtailmentService(
        loop=rig.loop,
        store=Store(tmp_path / "serve.sqlite3"),
        settings=service.settings,
        registry=CollectorRegistry(),
    )
    rig.loop.replace_curtailments(())
    assert again.restore() == 1
    assert window_ids(rig) == [second.id]
    rig.clock.now_s = t + 5400
    assert {w["id"]: w["state"] for w in again.history()} == {
        row.id: "cancelled",
        second.id: "ended",
    }


async def test_bad_windows_are_refused_with_a_reason(service: CurtailmentService) -> None:
    now = service.loop.clock()
    for request, words in (
        (CurtailmentRequest(cap_kw=1, start_s=now + 10, end_s=now + 5, reason="x"), "ends before"),
        (CurtailmentRequest(cap_kw=1, start_s=now - 10, end_s=now - 5, reason="x"), "ended"),
        (CurtailmentRequest(cap_kw=1, duration_s=30 * 86_400, reason="x"), "over the"),
        (CurtailmentRequest(cap_kw=1, reason="x"), "give 'end_s' or 'duration_s'"),
    ):
        with pytest.raises(CurtailmentRejected, match=words):
            await service.create(request, actor="alice")
    assert service.history() == []


@pytest.fixture
async def feed_server() -> AsyncIterator[tuple[str, list[tuple[int, bytes]]]]:
    """A real HTTP server answering the next queued (status, body), the last one again."""
    answers: list[tuple[int, bytes]] = []

    async def handler(_request: web.Request) -> web.Response:
        status, body = answers[0] if len(answers) == 1 else answers.pop(0)
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/windows", handler)
    listener = await start_http(app, host="127.0.0.1", port=0)
    yield f"{listener.url}/windows", answers
    await listener.stop()


async def test_a_feed_creates_changes_and_withdraws_windows_and_drops_bad_entries(
    rig: Rig,  # noqa: F811
    service: CurtailmentService,
    feed_server: tuple[str, list[tuple[int, bytes]]],
) -> None:
    url, answers = feed_server
    t = rig.clock.now_s
    good = {"id": "evt-1", "cap_kw": 500, "start": t + 60, "end": t + 3660, "reason": "EEA1"}

    def stamp(at_s: float) -> str:
        return datetime.fromtimestamp(at_s, tz=UTC).isoformat().replace("+00:00", "Z")

    iso = {"id": 7, "cap_kw": 250.5, "start": stamp(t + 7200), "end": stamp(t + 9000)}
    bad = [
        "not an object",
        {"cap_kw": 1, "start": t, "end": t + 60},  # no id
        {"id": "nan", "cap_kw": "NaN", "start": t, "end": t + 60},
        {"id": "huge", "cap_kw": 1e12, "start": t, "end": t + 60},
        {"id": "when", "cap_kw": 1, "start": "tomorrow", "end": t + 60},
        {"id": "backwards", "cap_kw": 1, "start": t + 60, "end": t + 30},
        {"id": "past", "cap_kw": 1, "start": t - 7200, "end": t - 3600},  # over: skipped
    ]
    answers.append((200, json.dumps({"windows": [good, iso, *bad]}).encode()))
    registry = CollectorRegistry()
    async with aiohttp.ClientSession() as session:
        feed = CurtailmentFeed(
            section=CurtailmentFeedSection(name="utility", url=url),
            service=service,
            session=session,
            metrics=CurtailmentFeedMetrics(registry),
            clock=rig.clock,
        )
        assert await feed.fetch_once() == "ok"
        windows = {w["external_id"]: w for w in service.history()}
        assert set(windows) == {"evt-1", "7"}
        assert (windows["evt-1"]["cap_kw"], windows["evt-1"]["source"]) == (500, "utility")
        assert (windows["7"]["start_s"], windows["7"]["end_s"]) == (t + 7200, t + 9000)
        assert windows["7"]["forecast"]["checked_at_s"] is None  # no plan yet in this rig
        rejected = {
            reason: registry.get_sample_value(
                "orchestrator_curtailment_feed_rejected_total",
                {"feed": "utility", "reason": reason},
            )
            for reason in ("not_an_object", "bad_id", "bad_cap", "bad_time", "bad_window")
        }
        assert rejected == {
            "not_an_object": 1.0,
            "bad_id": 1.0,
            "bad_cap": 2.0,
            "bad_time": 1.0,
            "bad_window": 1.0,
        }
        assert len(rig.loop.curtailments) == 2

        # a failed fetch changes nothing
        answers[:] = [(500, b"oops"), (200, b"<html>"), (200, b'{"events": []}')]
        assert await feed.fetch_once() == "http_error"
        assert await feed.fetch_once() == "bad_json"
        assert await feed.fetch_once() == "bad_payload"
        assert len(rig.loop.curtailments) == 2

        # the utility moves evt-1 and withdraws 7
        moved = {**good, "cap_kw": 400}
        answers[:] = [(200, json.dumps([moved]).encode())]
        assert await feed.fetch_once() == "ok"
        windows = {w["external_id"]: w for w in service.history()}
        assert windows["evt-1"]["cap_kw"] == 400
        assert windows["evt-1"]["state"] == "upcoming"
        assert windows["7"]["state"] == "cancelled"
        assert windows["7"]["cancelled_by"] == "utility"
        assert [w.cap_kw for w in rig.loop.curtailments] == [400]
        assert (
            registry.get_sample_value(
                "orchestrator_curtailment_feed_fetch_total", {"feed": "utility", "result": "ok"}
            )
            == 2.0
        )
