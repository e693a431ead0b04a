"""Polling one feed: a testable single iteration and a loop around it that never dies.

`run_feed_once(source, book, now_s)` fetches once, bounded by the source's `timeout_s`,
offers every quote to the book, counts and logs every rejection with its reason, and returns
a `FeedOutcome`. It never raises a feed or unexpected error (only cancellation): a failure is
an outcome with `result` = the reason, so a dead feed can never take the daemon down. What
stays in the book meanwhile expires by itself after the feed's `staleness_s`.

`FeedRunner` is the loop: after a success it waits the feed's `interval_s` (with a little
jitter, so feeds do not march in step); after failures it backs off exponentially from
`initial_s` to `max_s` with +/-`jitter` randomisation, and resets on the next success.
The daemon runs one `FeedRunner.run()` per source as a named task of its TaskGroup.

Logging: one `feed_fetch_failed` line per failed fetch (an error for a config problem that
needs a person, a warning otherwise) and one `feed_value_rejected` line per rejection.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

import structlog

from orchestrator.markets.book import MarketBook
from orchestrator.markets.errors import FeedConfigError, FeedError
from orchestrator.markets.metrics import FeedMetrics
from orchestrator.markets.quote import Rejection, Source

RESULT_OK = "ok"
_SUCCESS_JITTER = 0.05


@dataclass(frozen=True, slots=True)
class FeedOutcome:
    """One fetch: `result` is "ok" or the failure reason; counts of values kept and dropped."""

    feed: str
    result: str
    accepted: int = 0
    rejected: tuple[Rejection, ...] = ()
    error: str | None = None
    needs_operator: bool = False

    @property
    def ok(self) -> bool:
        return self.result == RESULT_OK


async def run_feed_once(
    source: Source,
    book: MarketBook,
    now_s: float,
    *,
    metrics: FeedMetrics | None = None,
) -> FeedOutcome:
    """Fetch `source` once and file its quotes in `book`. Never raises (but cancellation)."""
    log = structlog.get_logger().bind(feed=source.name)
    outcome = await _fetch_and_file(source, book, now_s, log)
    for rejection in outcome.rejected:
        log.warning(
            "feed_value_rejected",
            key=rejection.key,
            reason=rejection.reason,
            detail=rejection.detail,
            raw_value=rejection.raw_value,
        )
    if not outcome.ok:
        level = log.error if outcome.needs_operator else log.warning
        level("feed_fetch_failed", result=outcome.result, error=outcome.error)
    if metrics is not None:
        metrics.fetch_total.labels(feed=source.name, result=outcome.result).inc()
        for rejection in outcome.rejected:
            metrics.rejected_total.labels(feed=source.name, reason=rejection.reason).inc()
        if outcome.ok:
            metrics.last_success_timestamp.labels(feed=source.name).set(now_s)
    return outcome


async def _fetch_and_file(
    source: Source, book: MarketBook, now_s: float, log: structlog.typing.FilteringBoundLogger
) -> FeedOutcome:
    try:
        async with asyncio.timeout(source.timeout_s):
            result = await source.fetch(now_s)
    except FeedError as error:
        return FeedOutcome(
            source.name,
            error.reason,
            error=error.detail,
            needs_operator=isinstance(error, FeedConfigError),
        )
    except TimeoutError:
        return FeedOutcome(source.name, "timeout", error=f"fetch took over {source.timeout_s} s")
    except Exception as error:  # a feed bug must not kill the daemon (STYLE 16)
        log.exception("feed_fetch_crashed")
        return FeedOutcome(source.name, "error", error=f"{type(error).__name__}: {error}")
    rejected = list(result.rejected)
    for source_rejection in result.rejected:
        book.count_rejection(source_rejection)
    accepted = 0
    for quote in result.quotes:
        book_rejection = book.offer(quote, now_s)
        if book_rejection is None:
            accepted += 1
        else:
            rejected.append(book_rejection)
    return FeedOutcome(source.name, RESULT_OK, accepted=accepted, rejected=tuple(rejected))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter; `delay_s(n)` after the n-th consecutive failure."""

    initial_s: float = 2.0
    max_s: float = 300.0
    jitter: float = 0.2

    def delay_s(self, failures: int, rng: random.Random) -> float:
        base = min(self.max_s, self.initial_s * 2.0 ** max(0, failures - 1))
        return base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))


class FeedRunner:
    """Polls one source forever; `step()` is one iteration and returns the next delay."""

    def __init__(
        self,
        *,
        source: Source,
        book: MarketBook,
        metrics: FeedMetrics | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self._book = book
        self._metrics = metrics
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not cryptography)
        self.consecutive_failures = 0
        self.last_outcome: FeedOutcome | None = None

    async def step(self) -> float:
        """Fetch once; return how long to wait before the next fetch."""
        outcome = await run_feed_once(self.source, self._book, self._clock(), metrics=self._metrics)
        self.last_outcome = outcome
        if outcome.ok:
            self.consecutive_failures = 0
            spread = 1.0 + _SUCCESS_JITTER * (2.0 * self._rng.random() - 1.0)
            return self.source.interval_s * spread
        self.consecutive_failures += 1
        if outcome.needs_operator:
            return self._backoff.max_s
        return self._backoff.delay_s(self.consecutive_failures, self._rng)

    async def run(self) -> NoReturn:
        while True:
            await self._sleep(await self.step())
