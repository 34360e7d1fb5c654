"""Who may read and change things through the dashboard, and CSRF protection.

- API key: the same key as the inference API, sent as `Authorization: Bearer <key>` or
  `X-API-Key: <key>` and compared in constant time (serving/auth.py's rules). Browsers give it
  once to the login form, which starts a session: a random id kept in this process's memory and
  in an HttpOnly, SameSite=Strict cookie (never the key). Logging out ends the session, so a
  copy of the cookie opens nothing afterwards; sessions also end after `SESSION_LIFETIME_S`.
- Login throttle: wrong keys are counted under a lock (exactly, however many arrive at once);
  after `max_failures` of them signing in is paused for `lockout_s`, even with the right key.
  A key header is not throttled: it is how scripts and operators get in during a lockout.
- CSRF: every form carries a token that must equal the token in a SameSite=Strict cookie
  (double submit), and the token is a MAC under a per-process secret, so a cookie planted by a
  sibling origin does not validate. Signed in, the token must be the one derived from the
  session, so a token (or session) of someone else does not act for it. A request whose Origin
  (or, lacking it, Referer) is not this server, or names a host outside the allow-list, is
  refused too (DNS rebinding makes a foreign page's Origin equal the request's Host). Requests
  authenticated by a key header are exempt: a browser cannot attach that header to a
  cross-site request without a CORS preflight we never grant.
- Every comparison of something a client sent is over bytes: a non-ASCII cookie or form value
  is simply not the expected one.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from automlops.serving import auth

CSRF_COOKIE = "automlops_csrf"
CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "automlops_session"
COOKIE_PATH = "/ui"  # context.PREFIX, which imports this module
SESSION_LIFETIME_S = 12 * 3600.0


def presented_key(request: Request) -> str | None:
    """The API key a request carries in `Authorization: Bearer` or `X-API-Key`, if any."""
    # The inference API's own rules (serving/auth.py): one key, read the same way everywhere.
    return auth.presented_key(request.headers)


def keys_match(presented: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented key with the configured one."""
    return auth.key_matches(presented, expected)


def same_text(presented: str | None, expected: str) -> bool:
    """Constant-time equality of a client's string with ours, over bytes (any characters)."""
    if presented is None:
        return False
    # compare_digest refuses non-ASCII str: encoding first makes such a value merely unequal.
    return hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class SessionStore:
    """Signed-in sessions of this process: random ids, kept as hashes, until logout or expiry."""

    def __init__(self, lifetime_s: float = SESSION_LIFETIME_S) -> None:
        self.lifetime_s = lifetime_s
        self._expiry: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def start(self) -> str:
        """A new session's id (what the cookie holds)."""
        session = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._expiry = {k: t for k, t in self._expiry.items() if t > now}
            self._expiry[_digest(session)] = now + self.lifetime_s
        return session

    def valid(self, session: str | None) -> bool:
        """`session` is a live session of this process."""
        if not session:
            return False
        # Looked up by hash: the time a lookup takes says nothing about the ids held.
        with self._lock:
            expiry = self._expiry.get(_digest(session))
        return expiry is not None and expiry > time.monotonic()

    def end(self, session: str | None) -> None:
        """Forget `session` (logout): its cookie opens nothing from now on."""
        if session:
            with self._lock:
                self._expiry.pop(_digest(session), None)


class LoginResult(enum.Enum):
    accepted = "accepted"
    wrong = "wrong"
    locked = "locked"


@dataclass
class LoginThrottle:
    """Counts wrong keys given to the login form; too many in `window_s` pause signing in."""

    max_failures: int = 5
    window_s: float = 300.0
    lockout_s: float = 60.0
    delay_s: float = 0.5  # added to each wrong answer; the counter is what limits guessing
    _failures: deque[float] = field(default_factory=deque, repr=False)
    _locked_until: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def attempt(self, key_is_right: Callable[[], bool]) -> LoginResult:
        """Check a key (`key_is_right`, constant-time) unless signing in is paused; the check
        and the count are one step under the lock, so parallel attempts are counted exactly."""
        with self._lock:
            now = time.monotonic()
            if now < self._locked_until:
                return LoginResult.locked
            while self._failures and self._failures[0] <= now - self.window_s:
                self._failures.popleft()
            if key_is_right():
                self._failures.clear()
                return LoginResult.accepted
            self._failures.append(now)
            if len(self._failures) >= self.max_failures:
                self._locked_until = now + self.lockout_s
                self._failures.clear()
            return LoginResult.wrong

    def retry_after_s(self) -> int:
        """Whole seconds until signing in is possible again (0 when it is)."""
        with self._lock:
            return max(0, int(self._locked_until - time.monotonic() + 0.999))


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """`host` (a Host-header name, IPv6 bracketed) matches one of the allow-list's patterns."""
    host = host.lower()
    for pattern in allowed:
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


def _host_of(netloc: str) -> str:
    """The host part of `host[:port]` or `[v6]:port`."""
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1]
    return netloc.partition(":")[0]


@dataclass
class Guard:
    """The dashboard's access rules for one server process.

    `allowed_hosts` (None: no allow-list) is the server's Host allow-list, which Origin must
    match too; `secure_cookies` marks cookies Secure even over plain http (behind a TLS proxy).
    """

    api_key: str | None = None
    protect_reads: bool = False
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    allowed_hosts: frozenset[str] | None = None
    secure_cookies: bool = False
    sessions: SessionStore = field(default_factory=SessionStore)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)

    # -- API key and session -------------------------------------------------------------------

    @property
    def key_required(self) -> bool:
        """True when a key is configured: changes (and reads with protect_reads) need it."""
        return self.api_key is not None

    def _mac(self, purpose: str, value: str) -> str:
        message = f"{purpose}\0{value}".encode("utf-8", "surrogatepass")
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def session_of(self, request: Request) -> str | None:
        """The request's live session id, if its cookie holds one (never without a key)."""
        if self.api_key is None:
            return None
        cookie = request.cookies.get(SESSION_COOKIE)
        return cookie if self.sessions.valid(cookie) else None

    def header_authenticated(self, request: Request) -> bool:
        """The request carries the configured key in a header."""
        return self.api_key is not None and keys_match(presented_key(request), self.api_key)

    def authenticated(self, request: Request) -> bool:
        """The caller proved the key (header or live session); always True without a key."""
        if self.api_key is None:
            return True
        return self.header_authenticated(request) or self.session_of(request) is not None

    def may_read(self, request: Request) -> bool:
        """Reading pages needs the key only under protect_reads."""
        return not self.protect_reads or self.authenticated(request)

    def sign_in(self, presented: str) -> LoginResult:
        """Check a key given to the login form, through the throttle."""
        assert self.api_key is not None
        expected = self.api_key
        return self.throttle.attempt(lambda: keys_match(presented, expected))

    # -- cookies -----------------------------------------------------------------------------

    def set_cookie(self, request: Request, response: Response, name: str, value: str) -> None:
        """A dashboard cookie: scoped to it, invisible to scripts, never sent cross-site."""
        response.set_cookie(
            name,
            value,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
        )

    def delete_cookie(self, request: Request, response: Response, name: str) -> None:
        """Remove a dashboard cookie, with the attributes it was set with."""
        response.delete_cookie(
            name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=self.secure(request)
        )

    def secure(self, request: Request) -> bool:
        """Cookies are Secure: asked for (`--secure-cookies`, behind TLS) or over https."""
        return self.secure_cookies or request.url.scheme == "https"

    # -- CSRF --------------------------------------------------------------------------------

    def new_csrf_token(self) -> str:
        """A fresh token: a nonce and its MAC under the process secret (for no session)."""
        return self._csrf_token(secrets.token_urlsafe(18))

    def session_csrf_token(self, session: str) -> str:
        """The one token that acts for `session`: its nonce is derived from the session id."""
        return self._csrf_token("s" + self._mac("csrf-session", session)[:32])

    def _csrf_token(self, nonce: str) -> str:
        return f"{nonce}.{self._mac('csrf', nonce)}"

    def valid_csrf_token(self, token: str | None) -> bool:
        """The token was made by this process (its MAC checks out)."""
        if not token or "." not in token:
            return False
        nonce, _, mac = token.partition(".")
        return same_text(mac, self._mac("csrf", nonce))

    def csrf_ok(self, request: Request, submitted: str | None) -> bool:
        """Same-origin request whose form token equals its cookie token, made by us, and,
        signed in, the token of this very session."""
        if not self.same_origin(request):
            return False
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not submitted or not same_text(cookie, submitted):
            return False
        session = self.session_of(request)
        if session is not None:
            return same_text(submitted, self.session_csrf_token(session))
        return self.valid_csrf_token(submitted)

    def same_origin(self, request: Request) -> bool:
        """Origin (or Referer) names this server and an allowed host, or neither was sent."""
        return same_origin(request, self.allowed_hosts)


def same_origin(request: Request, allowed_hosts: Iterable[str] | None = None) -> bool:
    """Origin (or Referer) names this server (and a host of `allowed_hosts` when given), or
    neither header was sent."""
    # Browsers send Origin on every POST; Referer is the fallback of older ones. Neither present
    # means a non-browser client, which the double-submit token still has to satisfy.
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True
    if source == "null":  # sandboxed or privacy-stripped origin: never ours
        return False
    parts = urlsplit(source)
    netloc = parts.netloc.lower()
    if parts.scheme not in ("http", "https") or netloc != request.headers.get("host", "").lower():
        return False
    # Equal to Host is not enough: a rebound name is both. The name must be one we answer to.
    return allowed_hosts is None or host_allowed(_host_of(netloc), allowed_hosts)
