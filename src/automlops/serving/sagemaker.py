"""The SageMaker container contract for one model: `GET /ping`, `POST /invocations` on 8080.

SageMaker unpacks the endpoint's model.tar.gz into `/opt/ml/model` (or `$SM_MODEL_DIR`) and
starts the image with `serve`. Requests and responses are exactly those of
`POST /endpoints/{dataset}/invocations` of the main app (same parsing, errors, formats and
OpenAPI declaration, all from `serving.invocation`): this module only swaps the registry
lookup for the one model in the directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

from automlops.config import max_instances_setting
from automlops.errors import PermanentError
from automlops.ml.artifact import METADATA, TRANSFORM, ModelArtifact, ModelMetadata
from automlops.ml.columns.transform import FittedTransform
from automlops.ml.predictor import Predictor
from automlops.serving.invocation import (
    INVOCATION_RESPONSES,
    InvocationLimits,
    OrjsonResponse,
    describe,
    handle_api_errors,
    invocation_body,
    respond,
)
from automlops.serving.wire import EndpointDescription

DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_PORT = 8080
ENV_VERSION = "AUTOMLOPS_MODEL_VERSION"
ENV_DATASET = "AUTOMLOPS_DATASET"
# Set by a Batch Transform job: the scored file's header line, which every mini-batch but the
# first lacks (`aws/transform.py`).
ENV_CSV_HEADER = "AUTOMLOPS_CSV_HEADER"


class ContainerStatus(BaseModel):
    """The answer of the container's `GET /ping`."""

    status: str
    dataset: str
    model_version: str


def model_dir(explicit: str | Path | None = None) -> Path:
    """The model directory: explicit, else $SM_MODEL_DIR, else /opt/ml/model."""
    return Path(explicit or os.environ.get("SM_MODEL_DIR") or DEFAULT_MODEL_DIR)


def load_model_dir(path: str | Path) -> Predictor:
    """Load an unpacked model.tar.gz (metadata.json, transform.json, the model file).

    A directory still holding the archive itself (model.tar.gz) is read from the archive.
    """
    root = Path(path)
    archive = root / "model.tar.gz"
    if not (root / METADATA).exists() and archive.exists():
        return Predictor(ModelArtifact.from_tar_gz(archive.read_bytes(), str(archive)))
    try:
        metadata = ModelMetadata.model_validate_json((root / METADATA).read_bytes())
        transform = FittedTransform.model_validate_json((root / TRANSFORM).read_bytes())
        model = (root / metadata.model_file).read_bytes()
    except FileNotFoundError as exc:
        raise PermanentError(f"{root}: not an automlops model directory: {exc}") from None
    except ValueError as exc:
        raise PermanentError(f"{root}: invalid model metadata: {exc}") from None
    return Predictor(ModelArtifact(metadata=metadata, transform=transform, model=model))


def create_sagemaker_app(
    path: str | Path | None = None,
    *,
    version: int | str | None = None,
    max_body_bytes: int = 6 * 1024 * 1024,
    max_instances: int | None = None,
) -> FastAPI:
    """The contract app over one model, loaded now so a broken model fails the container start.

    `version` (default $AUTOMLOPS_MODEL_VERSION, set by the deploy stage) is echoed as
    `model_version` in responses. 6 MB is above SageMaker's own payload limits.
    `max_instances` (default $AUTOMLOPS_MAX_INSTANCES, else 100,000) caps rows per request.
    """
    directory = model_dir(path)
    predictor = load_model_dir(directory)
    label = str(version if version is not None else os.environ.get(ENV_VERSION, "1"))
    numeric = int(label) if label.isdigit() else 0
    dataset = os.environ.get(ENV_DATASET) or predictor.metadata.dataset
    app = FastAPI(
        title="automlops model (SageMaker contract)", default_response_class=OrjsonResponse
    )
    app.state.predictor = predictor
    limits = InvocationLimits(
        max_body_bytes, max_instances if max_instances is not None else max_instances_setting()
    )
    handle_api_errors(app)
    header = os.environ.get(ENV_CSV_HEADER)
    csv_header = header.encode() if header else None

    @app.get("/ping")
    async def ping() -> ContainerStatus:  # async: answered on the loop, needing no pool thread
        """Health check: 200 once the model is loaded (it is, or the app would not exist)."""
        return ContainerStatus(status="ok", dataset=dataset, model_version=label)

    @app.get("/model")
    def describe_model() -> EndpointDescription:
        """The model's task, input columns and labels (as GET /endpoints/{dataset})."""
        return describe(dataset, numeric, predictor)

    @app.post("/invocations", openapi_extra=invocation_body(), responses=INVOCATION_RESPONSES)
    async def invocations(request: Request) -> Response:
        """Predict raw rows: JSON `{"instances": [...]}` or CSV with a header."""
        return await respond(request, numeric, predictor, limits, csv_header)

    return app


def serve(
    path: str | Path | None = None, *, host: str = "0.0.0.0", port: int | None = None
) -> None:
    """Run the contract app (the container's `serve` command); one process, model loaded once."""
    import uvicorn

    from automlops.serving.lean_imports import import_learner_libraries

    import_learner_libraries()  # first, while this process has no other thread
    port = port or int(os.environ.get("SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT))
    uvicorn.run(create_sagemaker_app(path), host=host, port=port, log_level="info")
