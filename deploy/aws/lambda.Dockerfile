# The Lambda image: one image, four functions (the image command names the handler, e.g.
# automlops.aws.handlers.preprocess; see serverless.yml). Build from the repository root:
#   docker build -f deploy/aws/lambda.Dockerfile -t automlops-lambda .
FROM public.ecr.aws/lambda/python:3.12

# LightGBM needs the OpenMP runtime.
RUN dnf install -y libgomp && dnf clean all

COPY pyproject.toml README.md ${LAMBDA_TASK_ROOT}/build/
COPY src ${LAMBDA_TASK_ROOT}/build/src
RUN pip install --no-cache-dir "${LAMBDA_TASK_ROOT}/build" \
    && rm -rf "${LAMBDA_TASK_ROOT}/build"

# Matplotlib writes its cache where Lambda allows writes.
ENV MPLCONFIGDIR=/tmp/matplotlib
CMD ["automlops.aws.handlers.preprocess"]
