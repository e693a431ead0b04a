"""HTTP and JSON helpers shared by the sources: one request with a bounded timeout, errors
typed by what the runner should do, and a small JSON path reader.

The aiohttp `ClientSession` is always passed in (one per daemon, STYLE 18). Error messages
carry the URL, status and the first bytes of the body; request headers (which may hold an
API key) are never logged or put in a message.

Upstream timestamps (`parse_time`) are Unix seconds or ISO 8601 with a zone.

JSON paths are dotted names with list indexes: `data.items[0].price`, `[0].value`,
`bitcoin.usd`. Negative indexes count from the end (`nodes[-1]`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime

import aiohttp

from orchestrator.markets.errors import FeedConfigError, FeedPayloadError, FeedUnavailable

_BODY_SNIPPET_CHARS = 200
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


async def request_json(
    session: aiohttp.ClientSession,
    *,
    feed: str,
    url: str,
    timeout_s: float,
    method: str = "GET",
    json_body: object = None,
    headers: Mapping[str, str] | None = None,
) -> object:
    """One HTTP request whose answer must be JSON. Raises a `FeedError` subclass."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with session.request(
            method, url, json=json_body, headers=dict(headers or {}), timeout=timeout
        ) as response:
            body = await response.text(errors="replace")
            status = response.status
    except TimeoutError:
        raise FeedUnavailable(
            feed, "timeout", f"no answer from {url} within {timeout_s} s"
        ) from None
    except aiohttp.ClientError as error:
        raise FeedUnavailable(
            feed, "connection_error", f"{url}: {type(error).__name__}: {error}"
        ) from None
    if status >= 400:
        snippet = " ".join(body[:_BODY_SNIPPET_CHARS].split())
        detail = f"HTTP {status} from {url}: {snippet!r}"
        if status in (401, 403, 404):
            raise FeedConfigError(feed, "http_error", detail)
        raise FeedUnavailable(feed, "http_error", detail)
    try:
        return json.loads(body)
    except ValueError:
        snippet = " ".join(body[:_BODY_SNIPPET_CHARS].split())
        raise FeedPayloadError(
            feed, "bad_json", f"{url} did not answer JSON: {snippet!r}"
        ) from None


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """`data.items[0].price` -> ("data", "items", 0, "price"). Raises ValueError."""
    tokens: list[str | int] = []
    position = 0
    text = path.strip()
    while position < len(text):
        if text[position] == ".":
            position += 1
            continue
        match = _PATH_TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"bad JSON path {path!r} at character {position}")
        name, index = match.groups()
        tokens.append(int(index) if index is not None else name)
        position = match.end()
    if not tokens:
        raise ValueError(f"empty JSON path {path!r}")
    return tuple(tokens)


def extract(document: object, path: str, *, feed: str, url: str) -> object:
    """The value at `path` in `document`; a missing step is a `FeedPayloadError`."""
    try:
        tokens = parse_json_path(path)
    except ValueError as error:
        raise FeedConfigError(feed, "config", str(error)) from None
    current = document
    walked: list[str] = []
    for token in tokens:
        walked.append(f"[{token}]" if isinstance(token, int) else token)
        if _has_step(current, token):
            current = current[token]  # type: ignore[index]
        else:
            raise FeedPayloadError(
                feed, "bad_payload", f"{url}: no {'.'.join(walked)!r} in the answer (path {path!r})"
            )
    return current


def _has_step(current: object, token: str | int) -> bool:
    if isinstance(token, int):
        return isinstance(current, list) and -len(current) <= token < len(current)
    return isinstance(current, dict) and token in current


def parse_time(value: object) -> float | None:
    """Unix seconds (a number, or a numeric string) or ISO 8601 with a zone; None otherwise."""
    if isinstance(value, str):
        text = value
        try:
            value = float(text)
        except ValueError:
            try:
                stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return stamp.timestamp() if stamp.tzinfo is not None else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None
