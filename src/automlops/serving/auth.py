"""Optional API-key authentication for the inference API.

With a key configured every route answers 401 unless the request carries it, as
`Authorization: Bearer <key>` or `X-API-Key: <key>`; `/ping` stays open so load balancers and
the SageMaker-style health check need no secret. Keys are compared with `hmac.compare_digest`,
so the time to refuse does not depend on how much of a guessed key was right.

It is plain ASGI middleware rather than a FastAPI dependency: it also covers routes added later
(and /docs, /openapi.json), and refuses before a request body is read.

Host allow-list: a server answers only requests whose `Host` names it (loopback names and the
interface it binds by default), so a page whose DNS name was rebound to 127.0.0.1 gets 400.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Iterable

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/ping"})
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# A host name, an IPv4 address, a bracketed IPv6 literal, or a `*.domain` wildcard.
_HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9_.-]+|\[[0-9a-f:.]+\]")
_REFUSAL = "missing or wrong API key: send Authorization: Bearer <key> or X-API-Key: <key>"


def api_key_from_env(variable: str) -> str:
    """The key held by environment variable `variable`; ValueError if unset or blank."""
    key = os.environ.get(variable, "").strip()
    if not key:
        raise ValueError(f"environment variable {variable} is not set or empty")
    return key


def presented_key(headers: Headers) -> str | None:
    """The key a request carries in `Authorization: Bearer` or `X-API-Key`, if any."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key", "").strip() or None


def key_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented key with the configured one."""
    if presented is None:
        return False
    # Bytes, not str: compare_digest refuses non-ASCII str, and a header may carry anything.
    return hmac.compare_digest(presented.encode(), expected.encode())


class ApiKeyMiddleware:
    """Answers 401 to HTTP requests without the key, except on `open_paths`."""

    def __init__(
        self, app: ASGIApp, *, api_key: str, open_paths: Iterable[str] = OPEN_PATHS
    ) -> None:
        if not api_key.strip():
            raise ValueError("the API key must not be empty")  # "" would match a bare header
        self.app = app
        self.api_key = api_key
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        if key_matches(presented_key(Headers(scope=scope)), self.api_key):
            await self.app(scope, receive, send)
            return
        refusal = JSONResponse(
            {"error": _REFUSAL}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
        await refusal(scope, receive, send)


def require_api_key(app: FastAPI, api_key: str, open_paths: Iterable[str] = OPEN_PATHS) -> None:
    """Make every route of `app` except `open_paths` need `api_key` (call before serving)."""
    if not api_key.strip():
        # Checked here too: Starlette builds middleware on the first request, too late.
        raise ValueError("the API key must not be empty")
    app.add_middleware(ApiKeyMiddleware, api_key=api_key, open_paths=frozenset(open_paths))


def default_allowed_hosts(bind_host: str) -> tuple[str, ...]:
    """The `Host` names a server bound to `bind_host` answers by default: loopback and itself."""
    name = bind_host.strip().lower()
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"  # an IPv6 literal is written bracketed in a Host header
    if name in ("0.0.0.0", "[::]", "") or name in LOOPBACK_HOSTS:
        # Listening on every interface says nothing about the names clients use:
        # `--allowed-hosts` names them.
        return LOOPBACK_HOSTS
    return (*LOOPBACK_HOSTS, name)


def parse_allowed_hosts(text: str) -> tuple[str, ...]:
    """`--allowed-hosts`: comma-separated names (`*.example.com` wildcards allowed, or `*` for
    any host); ValueError naming a bad one."""
    hosts = tuple(part.strip().lower() for part in text.split(","))
    for host in hosts:
        if host != "*" and not _HOST_PATTERN.fullmatch(host):
            raise ValueError(f"--allowed-hosts: {host!r} is not a host name")
    return hosts


def allow_hosts(app: FastAPI, hosts: Iterable[str]) -> None:
    """Make `app` answer 400 to requests whose `Host` is not one of `hosts`."""
    # Starlette's middleware: parses bracketed IPv6 and ports, knows `*.domain` wildcards.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts), www_redirect=False)
