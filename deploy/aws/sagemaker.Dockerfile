# The SageMaker image: `train` runs the train stage on a training job's channels, `serve`
# answers the container contract (GET /ping, POST /invocations on 8080, model in
# /opt/ml/model). Build from the repository root:
#   docker build -f deploy/aws/sagemaker.Dockerfile -t automlops-sagemaker .
FROM python:3.12-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/program
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /opt/program/src

ENV PYTHONUNBUFFERED=1 MPLCONFIGDIR=/tmp/matplotlib
EXPOSE 8080
# SageMaker appends `train` or `serve`.
ENTRYPOINT ["python", "-m", "automlops.aws.container"]
