"""Running a daemon: one TaskGroup, named tasks, signals that only set a flag.

`run_daemon(main)` installs SIGTERM/SIGINT handlers that set a stop event and cancels
the daemon's TaskGroup when it fires (STYLE point 13). A task that crashes, or returns
when it should run forever, is logged by name and brings the daemon down cleanly; the
service manager restarts it. `forever(name, step, interval_s)` wraps a "one iteration"
function in the three-line loop, throttling (not dying) on unexpected errors.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class TaskEnded(Exception):  # noqa: N818  (an event, not a failure of the caller)
    """A task that should run forever returned."""


class StopRequested(Exception):  # noqa: N818
    """Raised inside the TaskGroup to stop every task."""


def guarded(name: str, coro: Coroutine[Any, Any, object]) -> Coroutine[Any, Any, None]:
    """Wrap a forever-task so that a return or a crash is logged by name."""

    async def runner() -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task crashed", task=name)
            raise
        log.error("task ended unexpectedly", task=name)
        raise TaskEnded(name)

    return runner()


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library swallowed.

    Python 3.11's `asyncio.wait_for` can lose a cancellation that arrives as the awaited
    operation completes; a forever-loop that checks this at each turn still stops.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def forever(
    name: str,
    step: Callable[[], Awaitable[object]],
    *,
    interval_s: float,
    error_delay_s: float = 5.0,
) -> None:
    """Run `step` every `interval_s`; an unexpected error throttles the loop, never ends it."""
    while True:
        raise_if_cancelling()
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("loop step failed", loop=name, retry_in_s=error_delay_s)
            await asyncio.sleep(error_delay_s)
        await asyncio.sleep(interval_s)


async def wait_for_stop(stop: asyncio.Event) -> None:
    await stop.wait()
    raise StopRequested


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def tune_garbage_collector(*, young_threshold: int = 50_000) -> None:
    """Tune the cyclic garbage collector for a daemon that churns through telemetry.

    Each snapshot replaces its node's last: about a hundred objects made and as many freed
    a message, all by reference counting, none in a cycle. The cyclic collector walks them
    all the same; at its default (a young collection every 700 allocations) it also ran full
    collections of the whole heap every few thousand messages, a third of `serve`'s time
    under a burst of telemetry (docs/benchmarks.md). So: collect once, freeze what start-up
    built (modules, schemas, configuration: long-lived by nature), and
    collect the young generation every `young_threshold` allocations, by which time most
    snapshots it would have examined have already been replaced and freed.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
