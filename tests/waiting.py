"""Waiting for a condition with a deadline: poll, never sleep and hope."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], T | None], *, timeout_s: float = 10.0, what: str = "condition"
) -> T:
    """Poll `probe` until it returns a truthy value; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def eventually_sync(
    probe: Callable[[], T | None], *, timeout_s: float = 10.0, what: str = "condition"
) -> T:
    """`eventually` for code outside an event loop (polls every 0.1 s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)
