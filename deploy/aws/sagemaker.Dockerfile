# The SageMaker image: `train` runs the train stage on a training job's channels, `serve`
# answers the container contract (GET /ping, POST /invocations on 8080, model in
# /opt/ml/model). Build from the repository root:
#   docker build -f deploy/aws/sagemaker.Dockerfile -t automlops-sagemaker .
# TODO(digest): pin the base image by digest (python:3.12-slim@sha256:...); it could not be
# looked up where this was written. See README, "Limits and open items".
FROM python:3.12-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/program
# Dependencies at the lock's exact versions, then the project without resolving again
# (xgboost-cpu provides the `xgboost` module; see deploy/aws/freeze_runtime.py).
COPY deploy/aws/requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf /opt/program/src \
    && python -c "import automlops.aws.container, xgboost, lightgbm, numba"

# numba's cache (the explanations' compiled TreeSHAP) where the container may write.
ENV PYTHONUNBUFFERED=1 MPLCONFIGDIR=/tmp/matplotlib NUMBA_CACHE_DIR=/tmp/numba
EXPOSE 8080
# SageMaker appends `train` or `serve`.
ENTRYPOINT ["python", "-m", "automlops.aws.container"]
