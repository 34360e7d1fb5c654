"""The dashboard's actions (POST): upload, promote, rollback, redrive, sign in and out.

Every action needs the API key when one is configured (a session cookie from the login form or
a key header) and a valid CSRF token unless the key came in a header; see security.py.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData, UploadFile

from automlops import keys
from automlops.errors import AutomlopsError, NotFoundError
from automlops.ui.context import (
    PREFIX,
    UiContext,
    UiError,
    redirect,
    safe_next,
    valid_dataset,
)
from automlops.ui.pages import render_upload
from automlops.ui.score import (
    ScoreForm,
    ScoreFormError,
    explain_pasted,
    render_score,
    spool,
    submit_form,
)
from automlops.ui.security import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, LoginResult
from automlops.ui.upload import UploadError, UploadForm, spooled, store_upload
from automlops.usecases import dead_letters, promotion

_FORM_LIMITS: dict[str, Any] = {"max_files": 1, "max_fields": 500, "max_part_size": 64 * 1024}


def _with_query(path: str, **params: object) -> str:
    return f"{path}?{urlencode({k: str(v) for k, v in params.items()})}"


class ActionGate:
    """The checks every action passes before its body is read, and the reading of its form."""

    def __init__(self, ui: UiContext) -> None:
        self.ui = ui
        self.guard = ui.guard

    def authorise(self, request: Request, *, signed_in: bool) -> None:
        """Before reading the body: the key (when configured and `signed_in` is asked for),
        the request's origin (a key in a header proves it), the body's announced size."""
        guard = self.guard
        if signed_in and not guard.authenticated(request):
            raise UiError(
                401,
                "Sign in to make changes",
                "This workspace has an API key: sign in with it, then try again.",
            )
        if not (signed_in and guard.header_authenticated(request)) and not guard.same_origin(
            request
        ):
            raise UiError(403, "Refused", "The request came from another site.")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.ui.max_upload_bytes:
            raise self.too_large()

    def too_large(self) -> UiError:
        """The answer to a body over the upload limit."""
        return UiError(
            413, "File too large", f"Uploads are limited to {self.ui.max_upload_bytes:,} bytes."
        )

    def check_token(self, request: Request, form: FormData) -> None:
        """The form's CSRF token, unless the key came in a header."""
        if self.guard.header_authenticated(request):
            return
        token = form.get(CSRF_FIELD)
        if not self.guard.csrf_ok(request, token if isinstance(token, str) else None):
            raise UiError(
                403,
                "The form has expired",
                "The page was open too long or came from elsewhere: reload it and try again.",
            )

    async def form_of(self, request: Request, *, signed_in: bool = True) -> FormData:
        """An action's form, once its request passed every check (signing in or out needs no
        key: `signed_in=False`)."""
        self.authorise(request, signed_in=signed_in)
        form = await request.form(**_FORM_LIMITS)
        try:
            self.check_token(request, form)
        except UiError:
            await form.close()  # an uploaded file's spool goes now, not at collection
            raise
        return form


def build_actions(ui: UiContext) -> APIRouter:
    """The POST routes of the dashboard (and the sign-in form)."""
    router = APIRouter()
    gate = ActionGate(ui)
    _model_actions(router, ui, gate)
    _upload_action(router, ui, gate)
    _score_actions(router, ui, gate)
    _session_actions(router, ui, gate)
    return router


def _model_actions(router: APIRouter, ui: UiContext, gate: ActionGate) -> None:
    """Promote, roll back, redrive dead letters."""
    runtime = ui.runtime
    form_of = gate.form_of

    @router.post("/models/{dataset}/promote")
    async def promote(request: Request, dataset: str) -> Response:
        """Make a version the champion (the API serves it from the next request on)."""
        name = valid_dataset(dataset)
        form = await form_of(request)
        try:
            version = int(str(form.get("version", "")))
        except ValueError:
            raise UiError(400, "Which version?", "The form did not name a version.") from None
        try:
            # Promotion loads the model in a child process first: off the event loop.
            await asyncio.to_thread(
                promotion.promote, runtime.registry, name, version, "promoted from the dashboard"
            )
        except AutomlopsError as exc:
            raise UiError(409, "Cannot promote", str(exc)) from None
        return redirect(
            _with_query(f"{PREFIX}/models/{name}", done="promoted", dataset=name, version=version)
        )

    @router.post("/models/{dataset}/rollback")
    async def rollback(request: Request, dataset: str) -> Response:
        """Serve the previous champion again."""
        name = valid_dataset(dataset)
        await form_of(request)
        try:
            restored = promotion.rollback(runtime.registry, name, "rolled back from the dashboard")
        except AutomlopsError as exc:
            raise UiError(409, "Cannot roll back", str(exc)) from None
        return redirect(
            _with_query(
                f"{PREFIX}/models/{name}",
                done="rolled-back",
                dataset=name,
                version=restored.version,
            )
        )

    @router.post("/dlq/redrive")
    async def redrive(request: Request) -> Response:
        """Move one dead-lettered message (or all) back to its queue."""
        form = await form_of(request)
        message_id = str(form.get("message_id", "")).strip() or None
        if message_id is None and form.get("all") != "1":
            raise UiError(400, "Which message?", "The form named no message.")
        try:
            moved = dead_letters.redrive(runtime.queue, runtime.settings.queues.served, message_id)
        except NotFoundError:
            raise UiError(
                404, "No such message", f"No dead-lettered message {message_id!r}."
            ) from None
        return redirect(_with_query(f"{PREFIX}/dlq", done="redriven", count=moved))


def _upload_action(router: APIRouter, ui: UiContext, gate: ActionGate) -> None:
    """Upload a file to train on."""
    runtime = ui.runtime
    form_of = gate.form_of
    too_large = gate.too_large

    @router.post("/upload")
    async def upload(request: Request) -> Response:
        """Store the manifest options, then the CSV (its notification starts the run)."""
        form = await form_of(request)
        try:
            file = form.get("file")
            values = {
                k: str(form.get(k, ""))
                for k in ("dataset", "target", "positive", "task", "time_budget")
            }
            keep = [str(v) for v in form.getlist("keep")]
            shown = {**values, "keep": ", ".join(k for k in keep if k.strip())}  # refilled
            if not isinstance(file, UploadFile) or not file.filename:
                return render_upload(
                    ui, request, status=400, error="Choose a CSV file to upload.", values=shown
                )
            if file.size is not None and file.size > ui.max_upload_bytes:
                raise too_large()
            await file.seek(0)
            source = await asyncio.to_thread(spooled, file.file)
            upload_form = UploadForm(
                filename=file.filename,
                source=source,
                drop=[str(v) for v in form.getlist("drop")] + [str(form.get("drop_text", ""))],
                keep=keep,
                learners=[str(v) for v in form.getlist("learners")],
                **values,
            )
            try:
                # The store writes and fsyncs: keep the event loop free for the live pages.
                done = await asyncio.to_thread(store_upload, runtime, upload_form)
            except UploadError as exc:
                return render_upload(ui, request, status=400, error=str(exc), values=shown)
        finally:
            await form.close()
        # The notice names the person's file and its dataset, not the upload's internal folder.
        filename = keys.parse_source_key(done.key).filename
        return redirect(
            _with_query(f"{PREFIX}/runs", done="uploaded", key=filename, dataset=done.dataset)
        )


def _score_actions(router: APIRouter, ui: UiContext, gate: ActionGate) -> None:
    """Upload a file to score, explain a pasted row."""
    form_of = gate.form_of
    too_large = gate.too_large

    @router.post("/score")
    async def score(request: Request) -> Response:
        """Submit a file for scoring (its options first, then the file, whose notification
        starts the scoring run), then show that run."""
        form = await form_of(request)
        try:
            file = form.get("file")
            values = {
                k: str(form.get(k, "")) for k in ("dataset", "version", "explain", "id_column")
            }
            if not isinstance(file, UploadFile) or not file.filename:
                return render_score(
                    ui, request, status=400, error="Choose a CSV or Parquet file.", values=values
                )
            if file.size is not None and file.size > ui.max_upload_bytes:
                raise too_large()
            await file.seek(0)
            source = await asyncio.to_thread(spool, file.file, file.filename)
            score_form = ScoreForm(filename=file.filename, **values)
            try:
                sub = await asyncio.to_thread(submit_form, ui, score_form, source)
            except ScoreFormError as exc:
                return render_score(ui, request, status=400, error=str(exc), values=values)
        finally:
            await form.close()
        return redirect(
            _with_query(
                f"{PREFIX}/score/{sub.run.dataset}/{sub.run.run_id}", done="submitted", key=sub.key
            )
        )

    @router.post("/score/explain")
    async def explain(request: Request) -> Response:
        """Predict a pasted row (JSON or CSV) and show each column's contribution."""
        form = await form_of(request)
        values = {k: str(form.get(k, "")) for k in ("dataset", "version", "row")}
        try:
            # Loading a model and explaining are CPU work: off the event loop.
            explained = await asyncio.to_thread(
                explain_pasted,
                request.app.state.models,
                values["dataset"],
                values["version"],
                values["row"],
            )
        except ScoreFormError as exc:
            return render_score(ui, request, status=400, explain_error=str(exc), values=values)
        return render_score(ui, request, values=values, explained=explained)


def _session_actions(router: APIRouter, ui: UiContext, gate: ActionGate) -> None:
    """Sign in and out."""
    guard = ui.guard
    form_of = gate.form_of

    @router.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        """Ask for the API key."""
        return ui.render(request, "login.html", title="Sign in", next=safe_next(next))

    @router.post("/login")
    async def login(request: Request) -> Response:
        """Check the key (throttled); on success start a session: its id in a cookie (never
        the key), with the CSRF token bound to it."""
        form = await form_of(request, signed_in=False)
        target = safe_next(str(form.get("next", "")))
        if guard.api_key is None:
            return redirect(target)
        result = guard.sign_in(str(form.get("key", "")))
        if result is LoginResult.locked:
            wait_s = guard.throttle.retry_after_s()
            page = ui.render(
                request,
                "login.html",
                status=429,
                title="Sign in",
                next=target,
                error=f"Too many wrong keys: signing in is paused for {wait_s} s.",
            )
            page.headers["Retry-After"] = str(wait_s)
            return page
        if result is LoginResult.wrong:
            await asyncio.sleep(guard.throttle.delay_s)
            return ui.render(
                request,
                "login.html",
                status=401,
                title="Sign in",
                next=target,
                error="That key is not the one this server was started with.",
            )
        guard.sessions.end(request.cookies.get(SESSION_COOKIE))  # a re-login replaces it
        session = guard.sessions.start()
        response = redirect(target)
        guard.set_cookie(request, response, SESSION_COOKIE, session)
        guard.set_cookie(request, response, CSRF_COOKIE, guard.session_csrf_token(session))
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        """End the session (its cookie opens nothing from now on) and drop both cookies."""
        await form_of(request, signed_in=False)
        guard.sessions.end(request.cookies.get(SESSION_COOKIE))
        response = redirect(_with_query(f"{PREFIX}/login", done="signed-out"))
        guard.delete_cookie(request, response, SESSION_COOKIE)
        guard.delete_cookie(request, response, CSRF_COOKIE)
        return response
