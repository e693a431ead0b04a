"""Why a fetch failed, typed by what the feed runner should do about it.

`FeedError` is the root; each carries the feed's name and a short `reason` that becomes the
`result` label of `orchestrator_feed_fetch_total`. Messages carry the data an operator needs
(URL, HTTP status, a snippet of the body) and never a secret.

- `FeedUnavailable`: the source did not answer usefully *now* (timeout, refused connection,
  HTTP 5xx or 429). Retry later with backoff.
- `FeedPayloadError`: the source answered, but not in the shape we expect (bad JSON, a field
  missing, a GraphQL error). Retry later too, but it is worth a look: the API may have changed.
- `FeedConfigError`: the feed cannot work until a person fixes something (a missing API key,
  HTTP 401/403/404). The runner keeps retrying at its slowest pace, so a fix is picked up
  without a restart, and logs an error each time.

Single absurd values (NaN, negative, a 1000x jump) are not errors: the market book rejects
them one by one with a reason, and the rest of the fetch still counts.
"""

from __future__ import annotations


class FeedError(Exception):
    """Root of every feed failure."""

    def __init__(self, feed: str, reason: str, detail: str) -> None:
        super().__init__(f"{feed}: {reason}: {detail}")
        self.feed = feed
        self.reason = reason
        self.detail = detail


class FeedUnavailable(FeedError):  # noqa: N818  (names what the caller should expect, STYLE 15)
    """Transient: retry later with backoff."""


class FeedPayloadError(FeedError):
    """The answer had an unexpected shape; retry later and look at the API."""


class FeedConfigError(FeedError):
    """Needs a person: fix config or credentials."""
