"""What every dashboard route shares: the workspace, the access rules, the page renderer."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from automlops.local.runtime import LocalRuntime
from automlops.names import is_dataset_name
from automlops.ui import views
from automlops.ui.progress import LiveProgress
from automlops.ui.security import CSRF_COOKIE, Guard, same_text

PREFIX = "/ui"
STATIC_DIR = Path(__file__).parent / "static"
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Pages never run inline script or style and never load anything from elsewhere.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


NOTICES = {
    "promoted": "Version {version} of {dataset} is now the champion.",
    "rolled-back": "Rolled back: version {version} of {dataset} serves again.",
    "redriven": "Moved {count} message(s) back to their queue; the worker picks them up next.",
    "uploaded": "Uploaded {key} to dataset {dataset}. Its run appears below as soon as a worker "
    "takes it.",
    "signed-out": "Signed out.",
    "submitted": "Submitted {key} for scoring. Its run shows here as soon as a worker takes it.",
}


def notice(request: Request) -> str | None:
    """The confirmation of the action that redirected here (from fixed texts only); every
    page shows it."""
    code = request.query_params.get("done")
    if code not in NOTICES:
        return None
    params = {k: request.query_params.get(k, "?") for k in ("dataset", "version", "count", "key")}
    return NOTICES[code].format(**params)


class UiError(Exception):
    """Answered as an error page (or JSON for API routes) with this status."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.detail = detail


class LoginRequired(Exception):
    """Reading or acting needs the API key and the request did not prove it."""


def valid_dataset(name: str) -> str:
    """A dataset name from a URL, or 404 (never let it reach a key unchecked)."""
    if not is_dataset_name(name):
        raise UiError(404, "No such dataset", f"{name!r} is not a dataset name.")
    return name


def valid_run_id(run_id: str) -> str:
    """A run id from a URL, or 404."""
    if not _RUN_ID.match(run_id):
        raise UiError(404, "No such run", f"{run_id!r} is not a run id.")
    return run_id


@cache
def _static_version() -> str:
    # Cache busting: the asset URLs change whenever the files do.
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("automlops.ui", "templates"),
        # Every template is HTML: escape everything, whatever the file name says.
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["metric"] = format_metric
    env.filters["duration"] = format_duration
    env.globals["prefix"] = PREFIX
    env.globals["static"] = lambda name: f"{PREFIX}/static/{name}?v={_static_version()}"
    return env


_COUNTS = {"n", "tp", "fp", "tn", "fn", "rows"}  # metrics that are counts of rows


def format_metric(value: Any, name: str = "") -> str:
    """A metric for people: counts as integers, scores to 4 decimals, n/a when not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    if value != value:  # NaN
        return "n/a"
    if isinstance(value, int) or (name in _COUNTS and float(value).is_integer()):
        return f"{value:,.0f}"
    return f"{value:.4f}"


def format_duration(seconds: float | None) -> str:
    """1.2 s, 2 min 05 s, 1 h 02 min."""
    if seconds is None:
        return "…"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class UiContext:
    """The dashboard of one workspace."""

    runtime: LocalRuntime
    guard: Guard = field(default_factory=Guard)
    progress: LiveProgress = field(default_factory=LiveProgress)
    max_upload_bytes: int = 512 * 1024 * 1024
    env: jinja2.Environment = field(default_factory=_environment)

    def csrf_token(self, request: Request) -> tuple[str, bool]:
        """The request's CSRF token (reused from its cookie when valid) and whether it is new.
        Signed in, it is the session's own token (the only one that acts for the session)."""
        session = self.guard.session_of(request)
        if session is not None:
            token = self.guard.session_csrf_token(session)
            return token, not same_text(request.cookies.get(CSRF_COOKIE), token)
        current = request.cookies.get(CSRF_COOKIE)
        if current and self.guard.valid_csrf_token(current):
            return current, False
        return self.guard.new_csrf_token(), True

    def render(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """A page, with the CSRF token its forms need and the live-update fingerprint."""
        token, fresh = self.csrf_token(request)
        # Under --protect-ui the login and error pages a stranger sees tell nothing about the
        # workspace: no path, no counts, no navigation.
        readable = self.guard.may_read(request)
        context.setdefault("nav", "")
        context.setdefault("notice", notice(request))
        context.setdefault("live", False)
        context["live"] = context["live"] and readable
        html = self.env.get_template(template).render(
            request_path=request.url.path,
            csrf_token=token,
            key_required=self.guard.key_required,
            signed_in=self.guard.key_required and self.guard.authenticated(request),
            readable=readable,
            fingerprint=views.fingerprint(self.runtime, self.progress) if readable else "",
            home=str(self.runtime.home) if readable else "",
            dead_letter_count=len(views.dead_letters(self.runtime)) if readable else 0,
            **context,
        )
        response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
        if fresh:
            self.guard.set_cookie(request, response, CSRF_COOKIE, token)
        return response

    def require_read(self, request: Request) -> None:
        """Reading pages needs the key only under --protect-ui."""
        if not self.guard.may_read(request):
            raise LoginRequired()


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path only (no open redirect)."""
    if (
        target
        and target.startswith(PREFIX)
        and not target.startswith("//")
        and "\\" not in target
        and all(c.isprintable() for c in target)
    ):
        return target
    return f"{PREFIX}/"


def redirect(url: str) -> RedirectResponse:
    """Post/redirect/get: 303 so a reload never resubmits a form."""
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def json_error(status: int, message: str) -> JSONResponse:
    """An error for API callers."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)
