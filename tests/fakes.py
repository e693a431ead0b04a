"""Small fakes that many test files share; fixtures stay in the `conftest.py` files.

`Clock` stands in wherever product code takes a `clock: Callable[[], float]` (Unix seconds):
the test owns `now_s` and moves it by hand, so no test waits for real time to pass.
"""

from __future__ import annotations

START_S = 1_700_000_000.0  # 2023-11-14T22:13:20Z: a plausible "now" for a test that needs none


class Clock:
    """A hand-driven clock: calling it returns `now_s`, which only the test changes."""

    def __init__(self, now_s: float = START_S) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds
