"""The feed loop: one iteration's metrics and logs, backoff with jitter that resets, no death."""

from __future__ import annotations

import asyncio
import random

import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest

from orchestrator.markets import (
    Backoff,
    FeedMetrics,
    FeedRunner,
    FeedUnavailable,
    FetchResult,
    MarketBook,
    StaticSource,
    run_feed_once,
)
from orchestrator.markets.quote import SourceBase

NOW_S = 1_714_560_000.0


class ScriptedSource(SourceBase):
    """Answers from a script: a float is a hashprice, an exception is raised."""

    def __init__(self, script: list[float | BaseException]) -> None:
        super().__init__(name="scripted", interval_s=30.0, timeout_s=0.2, staleness_s=120.0)
        self.script = script

    async def fetch(self, now_s: float) -> FetchResult:
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        quote = self.hashprice(
            "kawpow", step, now_s=now_s, url="test:", raw_value=step, raw_unit="usd_per_hs_day"
        )
        return FetchResult((quote,), ())


class Hanging(SourceBase):
    async def fetch(self, now_s: float) -> FetchResult:  # noqa: ARG002  (the protocol's signature)
        await asyncio.sleep(10)
        return FetchResult()


async def test_outliers_and_nan_are_counted_logged_and_never_reach_the_snapshot() -> None:
    registry = CollectorRegistry()
    book = MarketBook()
    clock = [NOW_S]
    metrics = FeedMetrics(registry, book=book, clock=lambda: clock[0])
    source = ScriptedSource([1.2e-8, 1.2e-8 * 1000 * 1.5, float("nan"), 1.3e-8])
    with structlog.testing.capture_logs() as logs:
        for _ in range(4):
            await run_feed_once(source, book, clock[0], metrics=metrics)
            clock[0] += 30
    sample = registry.get_sample_value
    assert sample("orchestrator_feed_fetch_total", {"feed": "scripted", "result": "ok"}) == 4.0
    assert (
        sample("orchestrator_feed_rejected_total", {"feed": "scripted", "reason": "outlier"}) == 1.0
    )
    assert (
        sample("orchestrator_feed_rejected_total", {"feed": "scripted", "reason": "not_finite"})
        == 1.0
    )
    assert sample("orchestrator_hashprice_usd_per_hs_day", {"algorithm": "kawpow"}) == 1.3e-8
    assert (
        sample("orchestrator_feed_last_success_timestamp_seconds", {"feed": "scripted"})
        == NOW_S + 90
    )
    rejected = [entry for entry in logs if entry["event"] == "feed_value_rejected"]
    assert [entry["reason"] for entry in rejected] == ["outlier", "not_finite"]
    assert all(entry["feed"] == "scripted" and entry["key"] == "kawpow" for entry in rejected)


async def test_stale_prices_leave_the_metrics_and_the_snapshot() -> None:
    registry = CollectorRegistry()
    book = MarketBook()
    clock = [NOW_S]
    FeedMetrics(registry, book=book, clock=lambda: clock[0])
    await run_feed_once(ScriptedSource([1.2e-8]), book, NOW_S)
    assert b'orchestrator_hashprice_usd_per_hs_day{algorithm="kawpow"} 1.2e-08' in generate_latest(
        registry
    )
    clock[0] = NOW_S + 121
    text = generate_latest(registry).decode()
    assert 'orchestrator_hashprice_usd_per_hs_day{algorithm="kawpow"}' not in text
    assert 'orchestrator_market_stale{key="kawpow"} 1.0' in text


async def test_a_hanging_source_is_cut_at_its_timeout() -> None:
    source = Hanging(name="hang", interval_s=30.0, timeout_s=0.2, staleness_s=120.0)
    outcome = await run_feed_once(source, MarketBook(), NOW_S)
    assert outcome.result == "timeout"


async def test_unexpected_exceptions_become_outcomes() -> None:
    outcome = await run_feed_once(ScriptedSource([ZeroDivisionError("bug")]), MarketBook(), NOW_S)
    assert outcome.result == "error"
    assert outcome.error == "ZeroDivisionError: bug"


def test_backoff_grows_caps_and_jitters() -> None:
    backoff = Backoff(initial_s=2.0, max_s=60.0, jitter=0.0)
    rng = random.Random(1)  # noqa: S311  (jitter, not cryptography)
    assert [backoff.delay_s(n, rng) for n in (1, 2, 3, 10)] == [2.0, 4.0, 8.0, 60.0]
    jittery = Backoff(initial_s=10.0, max_s=60.0, jitter=0.2)
    delays = {jittery.delay_s(1, rng) for _ in range(50)}
    assert min(delays) >= 8.0
    assert max(delays) <= 12.0
    assert len(delays) > 1


async def test_runner_backs_off_on_errors_and_resets_on_success() -> None:
    down = FeedUnavailable("scripted", "timeout", "no answer")
    source = ScriptedSource([down, down, 1.2e-8, down])
    runner = FeedRunner(
        source=source,
        book=MarketBook(),
        backoff=Backoff(initial_s=2.0, max_s=60.0, jitter=0.0),
        clock=lambda: NOW_S,
        rng=random.Random(0),  # noqa: S311  (jitter, not cryptography)
    )
    delays = [await runner.step() for _ in range(4)]
    assert delays[0] == 2.0
    assert delays[1] == 4.0
    assert delays[2] == pytest.approx(30.0, rel=0.05)  # interval, lightly jittered
    assert delays[3] == 2.0  # backoff restarted after the success


async def test_the_loop_survives_every_kind_of_failure() -> None:
    source = ScriptedSource(
        [RuntimeError("bug"), FeedUnavailable("scripted", "http_error", "500"), 1.2e-8]
    )
    slept: list[float] = []

    async def fake_sleep(delay_s: float) -> None:
        slept.append(delay_s)
        if not source.script:
            raise asyncio.CancelledError

    book = MarketBook()
    runner = FeedRunner(source=source, book=book, clock=lambda: NOW_S, sleep=fake_sleep)
    with pytest.raises(asyncio.CancelledError):
        await runner.run()
    assert len(slept) == 3
    assert book.snapshot(NOW_S).hashprice_usd_per_hs_day == {"kawpow": 1.2e-8}


async def test_static_source_through_the_runner() -> None:
    source = StaticSource(
        name="s", interval_s=60.0, timeout_s=1.0, staleness_s=300.0, algorithm="etchash", value=6e-9
    )
    book = MarketBook()
    runner = FeedRunner(source=source, book=book, clock=lambda: NOW_S)
    await runner.step()
    assert runner.last_outcome is not None
    assert runner.last_outcome.accepted == 1
    assert book.snapshot(NOW_S).hashprice_usd_per_hs_day == {"etchash": 6e-9}
