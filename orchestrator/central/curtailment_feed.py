"""A utility's curtailment feed: an HTTP JSON list of windows, polled like a price feed.

The answer is `{"windows": [...]}` or the bare list; each entry is an object with `id` (the
feed's own, stable), `cap_kw`, `start` and `end` (unix seconds, or ISO 8601 with a zone)
and an optional `reason`. `fetch_once` reads it once and never raises (but cancellation):

- a fetch that fails (timeout, refused, HTTP error, not JSON, no list) is counted by its
  reason in `orchestrator_curtailment_feed_fetch_total` and changes nothing: the windows
  the feed gave before stay as they are;
- an entry that is not a usable window (no id, a cap that is not a finite number of kW in
  range, an unreadable time, an end before its start, longer than `max_window_s`) is
  counted in `orchestrator_curtailment_feed_rejected_total` with its reason, logged and
  dropped; the rest of the answer still counts. An entry already ended is skipped quietly.
- what is left goes to `CurtailmentService.apply_feed`, which creates, changes or (for a
  window the feed no longer lists) cancels windows, each with an audit record.

`run` polls every `interval_s` after a success and backs off with jitter after failures
(the market feeds' `Backoff`), so a dead feed is retried without hammering it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

import aiohttp
import structlog
from prometheus_client import CollectorRegistry, Counter

from orchestrator.central.curtailment import CurtailmentService, FeedWindow, window_problem
from orchestrator.config.curtailment import CurtailmentFeedSection
from orchestrator.markets import Backoff, parse_time

log = structlog.get_logger(__name__)

RESULT_OK = "ok"
MAX_ENTRIES = 1000
MAX_BODY_BYTES = 1024 * 1024


class CurtailmentFeedMetrics:
    """The feeds' counters, one set per daemon (labelled by feed)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.fetches = Counter(
            "orchestrator_curtailment_feed_fetch",
            "Fetches of curtailment feeds, by feed and result",
            ["feed", "result"],
            registry=registry,
        )
        self.rejected = Counter(
            "orchestrator_curtailment_feed_rejected",
            "Curtailment feed entries dropped, by feed and reason",
            ["feed", "reason"],
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class _Rejection:
    entry_id: str | None
    reason: str
    detail: str


class _FetchFailed(Exception):  # noqa: N818  (internal: one failed fetch and its reason)
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def read_entries(
    document: object, *, now_s: float, max_window_s: float
) -> tuple[list[FeedWindow], set[str], list[_Rejection]]:
    """The usable windows of a feed's answer, every id it listed, and what was dropped."""
    entries = document.get("windows") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise _FetchFailed("bad_payload", "the answer has no list of windows")
    if len(entries) > MAX_ENTRIES:
        raise _FetchFailed("bad_payload", f"{len(entries)} windows, over {MAX_ENTRIES}")
    windows: list[FeedWindow] = []
    listed: set[str] = set()
    rejected: list[_Rejection] = []
    for entry in entries:
        if not isinstance(entry, dict):
            rejected.append(_Rejection(None, "not_an_object", repr(entry)[:80]))
            continue
        raw_id = entry.get("id")
        if not isinstance(raw_id, str | int) or isinstance(raw_id, bool) or not str(raw_id):
            rejected.append(_Rejection(None, "bad_id", f"id {raw_id!r}"[:80]))
            continue
        entry_id = str(raw_id)[:128]
        listed.add(entry_id)
        cap = entry.get("cap_kw")
        if isinstance(cap, bool) or not isinstance(cap, int | float):
            rejected.append(_Rejection(entry_id, "bad_cap", f"cap_kw {cap!r}"[:80]))
            continue
        start_s, end_s = parse_time(entry.get("start")), parse_time(entry.get("end"))
        if start_s is None or end_s is None:
            detail = f"start {entry.get('start')!r}, end {entry.get('end')!r}"[:120]
            rejected.append(_Rejection(entry_id, "bad_time", detail))
            continue
        if end_s <= now_s and end_s > start_s:
            continue  # over already: nothing to do, nothing wrong
        problem = window_problem(float(cap), start_s, end_s, now_s=now_s, max_window_s=max_window_s)
        if problem is not None:
            reason = "bad_cap" if problem.startswith("cap_kw") else "bad_window"
            rejected.append(_Rejection(entry_id, reason, problem))
            continue
        reason_text = entry.get("reason")
        text = str(reason_text)[:500] if isinstance(reason_text, str) and reason_text else ""
        windows.append(FeedWindow(entry_id, float(cap), start_s, end_s, text))
    return windows, listed, rejected


class CurtailmentFeed:
    """Polls one curtailment feed forever; `fetch_once` is one iteration."""

    def __init__(
        self,
        *,
        section: CurtailmentFeedSection,
        service: CurtailmentService,
        session: aiohttp.ClientSession,
        metrics: CurtailmentFeedMetrics,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.section = section
        self.service = service
        self.session = session
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311  (jitter, not cryptography)
        self.consecutive_failures = 0
        self._sleep = sleep

    @property
    def name(self) -> str:
        return self.section.name

    async def _get(self) -> object:
        timeout = aiohttp.ClientTimeout(total=self.section.timeout_s)
        try:
            async with self.session.get(self.section.url, timeout=timeout) as response:
                body = await response.content.read(MAX_BODY_BYTES + 1)
                status = response.status
        except TimeoutError:
            raise _FetchFailed("timeout", f"no answer within {self.section.timeout_s} s") from None
        except aiohttp.ClientError as error:
            raise _FetchFailed("connection_error", f"{type(error).__name__}: {error}") from None
        if status >= 400:
            raise _FetchFailed("http_error", f"HTTP {status} from {self.section.url}")
        if len(body) > MAX_BODY_BYTES:
            raise _FetchFailed("bad_payload", f"the answer is over {MAX_BODY_BYTES} bytes")
        try:
            return json.loads(body)
        except ValueError:
            raise _FetchFailed("bad_json", f"{self.section.url} did not answer JSON") from None

    async def fetch_once(self) -> str:
        """Fetch and apply once; the result ("ok" or why not). Never raises (but cancellation)."""
        try:
            document = await self._get()
            windows, listed, rejected = read_entries(
                document, now_s=self.clock(), max_window_s=self.service.settings.max_window_s
            )
            for r in rejected:
                self.metrics.rejected.labels(feed=self.name, reason=r.reason).inc()
                log.warning(
                    "curtailment_feed_entry_rejected",
                    feed=self.name,
                    entry=r.entry_id,
                    reason=r.reason,
                    detail=r.detail,
                )
            await self.service.apply_feed(self.name, windows, listed=listed)
            result = RESULT_OK
        except _FetchFailed as failed:
            log.warning(
                "curtailment_feed_fetch_failed",
                feed=self.name,
                result=failed.reason,
                error=failed.detail,
            )
            result = failed.reason
        except Exception:  # a feed bug must not kill the daemon (STYLE 16)
            log.exception("curtailment_feed_crashed", feed=self.name)
            result = "error"
        self.metrics.fetches.labels(feed=self.name, result=result).inc()
        return result

    async def step(self) -> float:
        """Fetch once; how long to wait before the next fetch."""
        if await self.fetch_once() == RESULT_OK:
            self.consecutive_failures = 0
            return self.section.interval_s
        self.consecutive_failures += 1
        return self.backoff.delay_s(self.consecutive_failures, self.rng)

    async def run(self) -> NoReturn:
        while True:
            await self._sleep(await self.step())
