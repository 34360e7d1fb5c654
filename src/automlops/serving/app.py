"""The inference API (FastAPI): raw rows in, predictions out, for every dataset in a registry.

Routes only: the body handling, errors and schemas of an invocation are `serving.invocation`
and `serving.wire`, shared with the SageMaker container's app.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

from automlops.config import Settings, max_instances_setting
from automlops.errors import NotFoundError
from automlops.ml.predictor import Predictor
from automlops.names import is_dataset_name
from automlops.serving.auth import require_api_key
from automlops.serving.capture import CaptureWriter, capture_writer, respond_captured
from automlops.serving.feedback import accept_feedback, feedback_body
from automlops.serving.invocation import (
    INVOCATION_RESPONSES,
    ApiError,
    InvocationLimits,
    OrjsonResponse,
    describe,
    error_response,
    handle_api_errors,
    invocation_body,
    read_body,
    respond,
)
from automlops.serving.models import ModelCache, UnservableVersion
from automlops.serving.wire import EndpointDescription, FeedbackReceipt

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: error_response("No such dataset or version, or no model serves it."),
    503: error_response("The version's model cannot be loaded; the error says why."),
}


class Status(BaseModel):
    """The answer of `GET /ping`."""

    status: str


class Endpoint(BaseModel):
    """A dataset and the version serving it (None: no champion)."""

    dataset: str
    version: int | None


class EndpointList(BaseModel):
    """The answer of `GET /endpoints`."""

    endpoints: list[Endpoint]


def create_app(
    models: ModelCache,
    *,
    max_body_bytes: int = 10 * 1024 * 1024,
    max_instances: int | None = None,
    api_key: str | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    """The HTTP app over a model cache; with `api_key`, every route but /ping requires it.

    `max_instances` (default $AUTOMLOPS_MAX_INSTANCES, else 100,000) caps rows per request.
    `settings` (default: from the environment) names the monitoring bucket the champion's
    traffic is captured to, and how (`settings.capture`).
    """
    app = FastAPI(title="automlops inference API", default_response_class=OrjsonResponse)
    limits = InvocationLimits(
        max_body_bytes, max_instances if max_instances is not None else max_instances_setting()
    )
    app.state.models = models
    if api_key is not None:
        require_api_key(app, api_key)
    handle_api_errors(app)
    settings = settings if settings is not None else Settings()
    capture = capture_writer(models.store, settings.buckets.model_monitoring, settings.capture)
    app.state.capture = capture
    if capture is not None:
        app.router.lifespan_context = capture.lifespan(app.router.lifespan_context)
    _add_description_routes(app, models)
    _add_invocation_routes(app, models, limits, capture)
    _add_feedback_route(app, models, limits, settings.buckets.model_monitoring)
    return app


def _add_description_routes(app: FastAPI, models: ModelCache) -> None:
    """Liveness and what is served: /ping, /endpoints and one endpoint or version."""

    @app.get("/ping")
    async def ping() -> Status:  # async: answered on the loop, needing no pool thread
        """Liveness: 200 when the server is up."""
        return Status(status="ok")

    @app.get("/endpoints")
    def list_endpoints() -> EndpointList:
        """Datasets and the versions serving them."""
        items = []
        for dataset in models.registry.datasets():
            doc = models.registry.read(dataset)
            items.append(Endpoint(dataset=dataset, version=doc.champion))
        return EndpointList(endpoints=items)

    @app.get("/endpoints/{dataset}", responses=_NOT_FOUND)
    def describe_champion(dataset: str) -> EndpointDescription:
        """The champion's version, task, input columns and labels."""
        version, predictor = _champion(models, dataset)
        return describe(dataset, version, predictor)

    @app.get("/endpoints/{dataset}/versions/{version}", responses=_NOT_FOUND)
    def describe_version(dataset: str, version: int) -> EndpointDescription:
        """One version's task, input columns and labels."""
        return describe(dataset, version, _version(models, dataset, version))


def _add_invocation_routes(
    app: FastAPI, models: ModelCache, limits: InvocationLimits, capture: CaptureWriter | None
) -> None:
    """Predictions: the champion's (its traffic captured) and a named version's (not)."""

    @app.post(
        "/endpoints/{dataset}/invocations",
        openapi_extra=invocation_body(),
        responses=INVOCATION_RESPONSES,
    )
    async def invoke_champion(dataset: str, request: Request) -> Response:
        """Predict raw rows with the dataset's champion: JSON `{"instances": [...]}` or CSV."""
        version, predictor = _champion(models, dataset)
        return await respond_captured(capture, dataset, request, version, predictor, limits)

    @app.post(
        "/endpoints/{dataset}/versions/{version}/invocations",
        openapi_extra=invocation_body(),
        responses=INVOCATION_RESPONSES,
    )
    async def invoke_version(dataset: str, version: int, request: Request) -> Response:
        """Predict raw rows with one specific version (candidates are evaluated this way)."""
        predictor = _version(models, dataset, version)
        return await respond(request, version, predictor, limits)


def _add_feedback_route(
    app: FastAPI, models: ModelCache, limits: InvocationLimits, monitoring_bucket: str
) -> None:
    """Ground truth coming back for answered rows."""

    @app.post(
        "/endpoints/{dataset}/feedback",
        openapi_extra=feedback_body(),
        responses={
            400: error_response("A body that is not a list of feedback items."),
            **_NOT_FOUND,
        },
    )
    async def feedback(dataset: str, request: Request) -> FeedbackReceipt:
        """Ground truth for answered rows: `[{"id": <inference id>, "label" | "value": ...}]`,
        stored as a labels batch the monitor joins with the captured traffic by id."""
        if not is_dataset_name(dataset):
            raise ApiError(404, f"unknown dataset {dataset!r}")
        body = await read_body(request, limits.max_body_bytes)
        # Parsing up to max_body_bytes and the store's I/O: off the event loop.
        return await anyio.to_thread.run_sync(
            accept_feedback, models, monitoring_bucket, dataset, body
        )


def _champion(models: ModelCache, dataset: str) -> tuple[int, Predictor]:
    if not is_dataset_name(dataset):
        raise ApiError(404, f"unknown dataset {dataset!r}")
    try:
        return models.champion(dataset)
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except UnservableVersion as exc:
        raise ApiError(503, str(exc)) from None


def _version(models: ModelCache, dataset: str, version: int) -> Predictor:
    if not is_dataset_name(dataset):
        raise ApiError(404, f"unknown dataset {dataset!r}")
    try:
        return models.version(dataset, version)
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except UnservableVersion as exc:
        raise ApiError(503, str(exc)) from None
