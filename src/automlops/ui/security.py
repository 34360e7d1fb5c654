"""Who may read and change things through the dashboard, and CSRF protection.

- API key: the same key as the inference API, sent as `Authorization: Bearer <key>` or
  `X-API-Key: <key>` and compared in constant time (serving/auth.py's rules). Browsers give it
  once to the login form, which sets an HttpOnly, SameSite=Strict session cookie holding a MAC
  of the key (never the key).
- CSRF: every form carries a token that must equal the token in a SameSite=Strict cookie
  (double submit), and the token is a MAC under a per-process secret, so a cookie planted by a
  sibling origin does not validate. A request whose Origin (or, lacking it, Referer) names
  another site is refused too. Requests authenticated by a key header are exempt: a browser
  cannot attach that header to a cross-site request without a CORS preflight we never grant.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request

from automlops.serving import auth

CSRF_COOKIE = "automlops_csrf"
CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "automlops_session"


def presented_key(request: Request) -> str | None:
    """The API key a request carries in `Authorization: Bearer` or `X-API-Key`, if any."""
    # The inference API's own rules (serving/auth.py): one key, read the same way everywhere.
    return auth.presented_key(request.headers)


def keys_match(presented: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented key with the configured one."""
    return auth.key_matches(presented, expected)


@dataclass
class Guard:
    """The dashboard's access rules for one server process."""

    api_key: str | None = None
    protect_reads: bool = False
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    # -- API key and session -------------------------------------------------------------------

    @property
    def key_required(self) -> bool:
        """True when a key is configured: changes (and reads with protect_reads) need it."""
        return self.api_key is not None

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    def session_value(self) -> str:
        """The session cookie's value: a MAC of the key, useless outside this process."""
        assert self.api_key is not None
        return self._mac("session", hashlib.sha256(self.api_key.encode()).hexdigest())

    def header_authenticated(self, request: Request) -> bool:
        """The request carries the configured key in a header."""
        return self.api_key is not None and keys_match(presented_key(request), self.api_key)

    def authenticated(self, request: Request) -> bool:
        """The caller proved the key (header or session cookie); always True without a key."""
        if self.api_key is None:
            return True
        if self.header_authenticated(request):
            return True
        cookie = request.cookies.get(SESSION_COOKIE)
        return cookie is not None and hmac.compare_digest(cookie, self.session_value())

    def may_read(self, request: Request) -> bool:
        """Reading pages needs the key only under protect_reads."""
        return not self.protect_reads or self.authenticated(request)

    # -- CSRF --------------------------------------------------------------------------------

    def new_csrf_token(self) -> str:
        """A fresh token: a nonce and its MAC under the process secret."""
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._mac('csrf', nonce)}"

    def valid_csrf_token(self, token: str | None) -> bool:
        """The token was made by this process (its MAC checks out)."""
        if not token or "." not in token:
            return False
        nonce, _, mac = token.partition(".")
        return hmac.compare_digest(mac, self._mac("csrf", nonce))

    def csrf_ok(self, request: Request, submitted: str | None) -> bool:
        """Same-origin request whose form token equals its cookie token, made by us."""
        if not same_origin(request):
            return False
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
            return False
        return self.valid_csrf_token(submitted)


def same_origin(request: Request) -> bool:
    """Origin (or Referer) names this server, or neither header was sent."""
    # Browsers send Origin on every POST; Referer is the fallback of older ones. Neither present
    # means a non-browser client, which the double-submit token still has to satisfy.
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True
    if source == "null":  # sandboxed or privacy-stripped origin: never ours
        return False
    parts = urlsplit(source)
    host = request.headers.get("host", "")
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
