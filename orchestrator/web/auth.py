"""Bearer tokens with roles for the HTTP API of `serve`.

Tokens are random strings handed to people and tools; the config holds only their
SHA-256 (`orchestrator token new` makes a token and its config line). A random token of
32 bytes needs no slow hash: nobody can guess it from its digest. Comparison is constant
time. Roles: `viewer` may read `/api/v1/*`; `operator` may also write. Health, readiness
and metrics stay open (they say nothing an attacker needs and probes carry no tokens).

Without any token configured the API is read-only and open to whoever reaches it (it
listens on loopback by default): every write is refused with 403.

A refusal never says more than "missing or invalid token" or "needs the operator role".
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from orchestrator.config.common import TokenSection

ROLE_RANK = {"viewer": 1, "operator": 2}
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

IDENTITY_KEY = web.RequestKey("identity", str)


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    role: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class TokenChecker:
    def __init__(self, tokens: Sequence[TokenSection]) -> None:
        self._tokens = [(t.sha256.lower(), Identity(t.name, t.role)) for t in tokens]

    @property
    def configured(self) -> bool:
        return bool(self._tokens)

    def identify(self, header: str | None) -> Identity | None:
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        wanted = digest(token.strip())
        found = None
        for known, identity in self._tokens:
            if hmac.compare_digest(known, wanted):
                found = identity
        return found


def _error(status: int, message: str) -> web.Response:
    response = web.json_response({"error": message}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="orchestrator"'
    return response


def auth_middleware(checker: TokenChecker) -> Middleware:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS or not path.startswith("/api/"):
            return await handler(request)
        write = request.method in WRITE_METHODS
        if not checker.configured:
            if write:
                return _error(403, "writes need an operator token; none is configured")
            request[IDENTITY_KEY] = "anonymous"
            return await handler(request)
        identity = checker.identify(request.headers.get("Authorization"))
        if identity is None:
            return _error(401, "missing or invalid token")
        if write and ROLE_RANK[identity.role] < ROLE_RANK["operator"]:
            return _error(403, "needs the operator role")
        request[IDENTITY_KEY] = identity.name
        return await handler(request)

    return middleware
