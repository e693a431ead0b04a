"""Saved quotes come back after a restart with the BTC price they were converted with, so a
hashprice whose BTC price has run out is not a price again because serve restarted."""

from __future__ import annotations

from pathlib import Path

from orchestrator.central.market_memory import MarketMemory
from orchestrator.central.store import Store
from orchestrator.markets import MarketBook, Provenance, Quote, QuoteKind

NOW_S = 1_733_350_000.0


def converted(value: float, *, valid_until_s: float | None) -> Quote:
    provenance = Provenance(
        "nicehash",
        "http://nicehash",
        NOW_S,
        "0.21",
        "btc_per_TH_day",
        usd_per_btc=60_000.0,
        btc_price_static=False,
        valid_until_s=valid_until_s,
    )
    return Quote(QuoteKind.HASHPRICE, "kawpow", value, provenance, 3600.0)


def test_a_restored_quote_keeps_its_btc_price_and_expires_with_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "serve.sqlite3")
    book = MarketBook()
    assert book.offer(converted(1.26e-8, valid_until_s=NOW_S + 300), NOW_S) is None
    assert MarketMemory(book=book, store=store, clock=lambda: NOW_S).save_once() == 1
    store.close()

    store = Store(tmp_path / "serve.sqlite3")
    fresh_book = MarketBook()
    memory = MarketMemory(book=fresh_book, store=store, clock=lambda: NOW_S + 100)
    assert memory.restore() == 1
    quote = fresh_book.snapshot(NOW_S + 100).quotes["kawpow"]
    assert quote.provenance.usd_per_btc == 60_000.0
    assert quote.provenance.valid_until_s == NOW_S + 300
    assert fresh_book.snapshot(NOW_S + 300).hashprice_usd_per_hs_day == {}
    store.close()
