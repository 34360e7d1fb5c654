# The Lambda image: one image, four functions (the image command names the handler, e.g.
# automlops.aws.handlers.preprocess; see serverless.yml). Build from the repository root:
#   docker build -f deploy/aws/lambda.Dockerfile -t automlops-lambda .
# TODO(digest): pin the base image by digest (public.ecr.aws/lambda/python:3.12@sha256:...);
# it could not be looked up where this was written. See README, "Limits and open items".
FROM public.ecr.aws/lambda/python:3.12

# LightGBM needs the OpenMP runtime.
RUN dnf install -y libgomp && dnf clean all

# Dependencies first, at the exact versions of the lock (a layer that changes only with it),
# then the project without resolving anything again.
COPY deploy/aws/requirements.lock ${LAMBDA_TASK_ROOT}/build/requirements.lock
RUN pip install --no-cache-dir -r "${LAMBDA_TASK_ROOT}/build/requirements.lock"
COPY pyproject.toml README.md ${LAMBDA_TASK_ROOT}/build/
COPY src ${LAMBDA_TASK_ROOT}/build/src
# --no-deps: the lock installed xgboost-cpu, which provides the `xgboost` module the package's
# `xgboost` requirement stands for. The import proves nothing the handlers need is missing.
RUN pip install --no-cache-dir --no-deps "${LAMBDA_TASK_ROOT}/build" \
    && rm -rf "${LAMBDA_TASK_ROOT}/build" \
    && python -c "import automlops.aws.handlers, xgboost, lightgbm, numba"

# Matplotlib and numba (the explanations' compiled TreeSHAP: compiled on a process's first
# explanation, a few seconds, then read from this cache) write where Lambda allows writes.
ENV MPLCONFIGDIR=/tmp/matplotlib NUMBA_CACHE_DIR=/tmp/numba
CMD ["automlops.aws.handlers.preprocess"]
