"""The web dashboard: server-rendered pages under /ui, mounted on the inference app."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from automlops.local.runtime import LocalRuntime
from automlops.ui.actions import build_actions
from automlops.ui.context import (
    PREFIX,
    STATIC_DIR,
    LoginRequired,
    UiContext,
    UiError,
    json_error,
    redirect,
    safe_next,
)
from automlops.ui.monitoring import build_monitoring_pages
from automlops.ui.pages import build_pages
from automlops.ui.progress import LiveProgress
from automlops.ui.security import Guard

__all__ = ["PREFIX", "Guard", "LiveProgress", "UiContext", "mount_ui"]


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(f"{PREFIX}/api/") or "application/json" in (
        request.headers.get("accept", "")
    )


def _back(request: Request) -> str:
    """The dashboard page a refused form was sent from: where to return after signing in."""
    parts = urlsplit(request.headers.get("referer", ""))
    return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))


def mount_ui(
    app: FastAPI,
    runtime: LocalRuntime,
    *,
    guard: Guard | None = None,
    progress: LiveProgress | None = None,
    max_upload_bytes: int | None = None,
) -> UiContext:
    """Add the dashboard (pages, actions, static files) to `app` under /ui."""
    ui = UiContext(runtime, guard=guard or Guard(), progress=progress or LiveProgress())
    if max_upload_bytes is not None:
        ui.max_upload_bytes = max_upload_bytes
    app.include_router(build_pages(ui), prefix=PREFIX, include_in_schema=False)
    app.include_router(build_monitoring_pages(ui), prefix=PREFIX, include_in_schema=False)
    app.include_router(build_actions(ui), prefix=PREFIX, include_in_schema=False)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

    @app.exception_handler(UiError)
    async def _ui_error(request: Request, exc: UiError) -> Response:
        if _wants_json(request):
            return json_error(exc.status, f"{exc.title}: {exc.detail}" if exc.detail else exc.title)
        if exc.status == 401:
            return ui.render(
                request,
                "login.html",
                status=401,
                title="Sign in",
                next=_back(request),
                error=exc.detail,
            )
        return ui.render(
            request,
            "error.html",
            status=exc.status,
            title=exc.title,
            detail=exc.detail,
        )

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _: LoginRequired) -> Response:
        if _wants_json(request) or request.method != "GET":
            return json_error(401, "sign in first: this dashboard needs the API key")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"{PREFIX}/login?next={quote(target, safe='')}")

    app.state.ui = ui
    return ui
