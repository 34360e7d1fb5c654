"""Batch scoring on moto: a file put under score/<dataset>/ of the data bucket reaches the
score function through its S3 notification and queue, and is scored by the champion into
predictions/ of the model-output bucket, with only the calls its role allows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import polars as pl
from aws_cfn import Provisioned
from aws_invoker import CallRecorder, LambdaInvoker, LocalSageMakerRuntime
from aws_stack import allowed

from automlops import keys
from automlops.aws.runtime import AwsRuntime
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import open_runtime
from automlops.ml.batch import ScoreOptions
from automlops.registry import RegistryDoc
from support import DEMO_DATASET

Deployed = tuple[AwsRuntime, LambdaInvoker, LocalSageMakerRuntime, CallRecorder]


def _copy_champion(trained_home: Path, rt: AwsRuntime) -> None:
    """The trained workspace's registry and model file, as the AWS pipeline would leave them."""
    local = open_runtime(trained_home)
    try:
        doc = local.registry.read(DEMO_DATASET)
        bucket = rt.config.settings().buckets.model_output
        for version in doc.versions:
            data = local.store.get(version.artifact_bucket, version.artifact_key)
            rt.store.put(bucket, version.artifact_key, data)
            version.artifact_bucket = bucket
        rt.store.put(bucket, keys.registry_key(DEMO_DATASET), doc.model_dump_json().encode())
    finally:
        local.close()
    assert (
        RegistryDoc.model_validate_json(
            rt.store.get(bucket, keys.registry_key(DEMO_DATASET))
        ).champion
        == 1
    )


def test_a_file_put_under_score_is_scored_through_the_score_function(
    deployed: Deployed,
    trained_home: Path,
    session: boto3.session.Session,
    moto: str,
    provisioned: Provisioned,
) -> None:
    rt, invoker, _, recorder = deployed
    stack = provisioned.stack
    _copy_champion(trained_home, rt)
    # Not a new model: the notifications of the copy (and moto's test events) are dropped.
    for _, url, _, _ in invoker.sources:
        invoker.sqs.purge_queue(QueueUrl=url)
    buckets = rt.config.settings().buckets
    s3 = session.client("s3", endpoint_url=moto)
    # What `aws s3 cp` of the options and then the file does.
    options = ScoreOptions(id_column="mean_radius").model_dump_json().encode()
    s3.put_object(
        Bucket=buckets.data, Key=keys.score_options_key(DEMO_DATASET, "x y.csv"), Body=options
    )
    s3.put_object(
        Bucket=buckets.data, Key=keys.score_key(DEMO_DATASET, "x y.csv"), Body=breast_cancer_csv()
    )
    invoker.run_until_idle()

    assert [f for f, _, _ in invoker.invocations] == ["ScoreLambdaFunction"]
    found = [k for k in rt.store.list(buckets.model_output, "predictions/") if "lineage" in k]
    assert len(found) == 1
    lineage = json.loads(rt.store.get(buckets.model_output, found[0]))
    assert lineage["output_key"].endswith("/x y.csv") and lineage["model_version"] == 1
    out = pl.read_csv(io.BytesIO(rt.store.get(buckets.model_output, lineage["output_key"])))
    source = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    assert out.columns == [
        "mean_radius",
        "prediction",
        "probability_benign",
        "probability_malignant",
    ]
    assert out["mean_radius"].to_list() == source["mean_radius"].to_list()

    statements = stack.statements(stack.role_of("ScoreLambdaFunction"))
    calls = recorder.calls["ScoreLambdaFunction"]
    assert calls and [c for c in calls if not allowed(statements, c)] == []
