"""Market memory: the last good quotes, saved as they change and offered again at start.

A task of its own (`market-memory`): every `interval_s` it saves the book's fresh quotes
that changed since the last save, so a restarted `serve` can plan at once with prices that
are still within their staleness, instead of holding until every feed has answered again.
At start, `restore` offers the saved quotes that are still fresh to the book, which
validates them as it would any feed's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict

from orchestrator.central.store import Store
from orchestrator.markets import MarketBook, Provenance, Quote, QuoteKind


class MarketMemory:
    def __init__(
        self,
        *,
        book: MarketBook,
        store: Store,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book = book
        self.store = store
        self.interval_s = interval_s
        self.clock = clock
        self._saved: dict[tuple[str, str], float] = {}  # (key, source) -> fetched_at_s saved

    def save_once(self) -> int:
        """Save the quotes fetched since the last save; how many."""
        snapshot = self.book.snapshot(self.clock())
        changed = [
            q
            for q in snapshot.quotes.values()
            if self._saved.get((q.key, q.source)) != q.provenance.fetched_at_s
        ]
        if not changed:
            return 0
        self.store.save_quotes(
            (
                q.key,
                q.source,
                q.kind.value,
                q.value,
                q.provenance.fetched_at_s,
                q.staleness_s,
                asdict(q.provenance),
            )
            for q in changed
        )
        for q in changed:
            self._saved[(q.key, q.source)] = q.provenance.fetched_at_s
        return len(changed)

    async def step(self) -> None:
        """One turn of the named task `market-memory`."""
        self.save_once()

    def restore(self) -> int:
        """Offer the saved quotes that are still fresh to the book; how many it took."""
        now_s = self.clock()
        restored = 0
        for (
            key,
            _source,
            kind,
            value,
            fetched_at_s,
            staleness_s,
            provenance,
        ) in self.store.load_quotes():
            if now_s - fetched_at_s > staleness_s:
                continue
            quote = Quote(
                kind=QuoteKind(kind),
                key=key,
                value=value,
                provenance=Provenance(**provenance),
                staleness_s=staleness_s,
            )
            restored += self.book.offer(quote, fetched_at_s) is None
        return restored
