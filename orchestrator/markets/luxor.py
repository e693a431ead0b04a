"""Luxor Hashrate Index: the Bitcoin hashprice, over GraphQL.

`POST https://api.hashrateindex.com/graphql` with the key in the `x-hi-api-key` header and

    query bitcoinOverviews($last: Int!) { bitcoinOverviews(last: $last) {
        nodes { timestamp hashpriceUsd } } }

answers `{"data": {"bitcoinOverviews": {"nodes": [{"timestamp": "2024-05-01T12:00:00+00:00",
"hashpriceUsd": "0.0521"}]}}}`. `hashpriceUsd` is US$ per TH/s per day (configurable as
`hashprice_unit`), so 0.0521 becomes 5.21e-14 US$ per H/s per day. GraphQL reports failures
as HTTP 200 with an `errors` list: that is a `graphql_error` (an auth message a config error).

The API key is read from its file or variable at every fetch (a rotated key needs no
restart), held as a `SecretStr`, sent only in the header, and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiohttp

from orchestrator.config.market import LuxorFeed, SecretUnavailableError
from orchestrator.markets._http import extract, request_json
from orchestrator.markets.errors import FeedConfigError, FeedPayloadError
from orchestrator.markets.quote import FetchResult, Rejection, SourceBase, parse_number
from orchestrator.markets.units import to_usd_per_hs_day

HASHPRICE_QUERY = (
    "query bitcoinOverviews($last: Int!) { bitcoinOverviews(last: $last) "
    "{ nodes { timestamp hashpriceUsd } } }"
)
API_KEY_HEADER = "x-hi-api-key"


def _parse_timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    return stamp.timestamp()


@dataclass(kw_only=True)
class LuxorSource(SourceBase):
    session: aiohttp.ClientSession
    config: LuxorFeed

    async def fetch(self, now_s: float) -> FetchResult:
        try:
            api_key = self.config.resolve_api_key()
        except SecretUnavailableError as error:
            raise FeedConfigError(self.name, "missing_secret", str(error)) from None
        url = self.config.url
        document = await request_json(
            self.session,
            feed=self.name,
            url=url,
            timeout_s=self.timeout_s,
            method="POST",
            json_body={"query": HASHPRICE_QUERY, "variables": {"last": 1}},
            headers={
                API_KEY_HEADER: api_key.get_secret_value(),
                "Content-Type": "application/json",
            },
        )
        if isinstance(document, dict) and document.get("errors"):
            messages = "; ".join(
                str(item.get("message", item)) if isinstance(item, dict) else str(item)
                for item in document["errors"]
            )
            if any(
                word in messages.lower() for word in ("auth", "api key", "unauthor", "forbidden")
            ):
                raise FeedConfigError(self.name, "graphql_error", f"{url}: {messages}")
            raise FeedPayloadError(self.name, "graphql_error", f"{url}: {messages}")
        nodes = extract(document, "data.bitcoinOverviews.nodes", feed=self.name, url=url)
        if not isinstance(nodes, list) or not nodes or not isinstance(nodes[-1], dict):
            raise FeedPayloadError(self.name, "bad_payload", f"{url}: no hashprice nodes")
        node = nodes[-1]
        raw = node.get("hashpriceUsd")
        algorithm = self.config.algorithm
        try:
            value = parse_number(raw)
        except ValueError as error:
            rejection = Rejection(
                self.name, algorithm, "bad_payload", f"hashpriceUsd: {error}", None
            )
            return FetchResult((), (rejection,))
        quote = self.hashprice(
            algorithm,
            to_usd_per_hs_day(value, self.config.hashprice_unit),
            now_s=now_s,
            url=url,
            raw_value=str(raw),
            raw_unit=self.config.hashprice_unit,
            source_time_s=_parse_timestamp(node.get("timestamp")),
        )
        return FetchResult((quote,), ())
