"""Operator tasks on a deployed stage, found by its SSM parameters: upload, models, teardown.

`python -m automlops.aws <command> --stage dev` runs them (the CI workflows do); the CLI can
call the same functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from automlops import keys
from automlops.aws.config import AwsConfig, load_config
from automlops.aws.s3_store import S3ObjectStore
from automlops.aws.sagemaker import SageMakerModelHost
from automlops.config import Manifest
from automlops.manifests import save_manifest
from automlops.registry import Registry


def stage_config(stage: str, session: Any, endpoint_url: str | None = None) -> AwsConfig:
    """A deployed stage's configuration, from its SSM parameters."""
    ssm = session.client("ssm", endpoint_url=endpoint_url)
    return load_config({}, ssm_client=ssm, ssm_prefix=f"/automlops/{stage}")


def upload(config: AwsConfig, store: S3ObjectStore, path: Path, manifest: Manifest) -> str:
    """Store the manifest, then the CSV (whose ObjectCreated starts the pipeline)."""
    save_manifest(store, config.bucket_data, manifest)
    key = keys.source_key(manifest.dataset, path.name)
    store.put(config.bucket_data, key, path.read_bytes())
    return f"s3://{config.bucket_data}/{key}"


def models(
    config: AwsConfig, store: S3ObjectStore, dataset: str | None = None
) -> list[dict[str, Any]]:
    """Each dataset's versions: status, endpoint, metrics, report."""
    registry = Registry(store, config.bucket_model_output)
    out = []
    for name in [dataset] if dataset else registry.datasets():
        doc = registry.read(name)
        out.append(
            {
                "dataset": name,
                "champion": doc.champion,
                "versions": [
                    {
                        "version": v.version,
                        "status": v.status.value,
                        "endpoint": v.endpoint,
                        "metrics": v.metrics,
                        "report": None
                        if v.report_key is None
                        else f"s3://{config.bucket_model_monitoring}/{v.report_key}",
                    }
                    for v in doc.versions
                ],
            }
        )
    return out


def teardown(config: AwsConfig, session: Any, endpoint_url: str | None = None) -> list[str]:
    """Delete the stage's endpoints, models and configs; empty its buckets (all versions).

    `serverless remove` cannot delete non-empty buckets, nor the SageMaker resources the
    deploy stage created at run time.
    """
    sagemaker = session.client("sagemaker", endpoint_url=endpoint_url)
    host = SageMakerModelHost(config, sagemaker, None)
    done: list[str] = []
    prefix = config.name_prefix + "-"
    for page in sagemaker.get_paginator("list_endpoints").paginate(NameContains=prefix):
        for endpoint in page["Endpoints"]:
            if endpoint["EndpointName"].startswith(prefix):
                host.delete(endpoint["EndpointName"])
                done.append(f"endpoint {endpoint['EndpointName']}")
    s3 = session.resource("s3", endpoint_url=endpoint_url)
    for name in (
        config.bucket_data,
        config.bucket_automl_data,
        config.bucket_model_output,
        config.bucket_model_monitoring,
    ):
        s3.Bucket(name).object_versions.delete()
        done.append(f"bucket {name} emptied")
    return done


def main(argv: list[str] | None = None) -> int:
    """`python -m automlops.aws upload|models|teardown --stage STAGE ...`."""
    import boto3

    parser = argparse.ArgumentParser(prog="python -m automlops.aws")
    parser.add_argument("command", choices=["upload", "models", "teardown"])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--file", type=Path)
    parser.add_argument("--dataset")
    parser.add_argument("--target")
    parser.add_argument("--positive")
    parser.add_argument("--drop", action="append", default=[])
    parser.add_argument("--time-budget", type=float, default=60.0)
    parser.add_argument("--yes", action="store_true", help="confirm teardown")
    args = parser.parse_args(argv)
    session = boto3.session.Session()
    config = stage_config(args.stage, session)
    store = S3ObjectStore(session.client("s3"))
    if args.command == "upload":
        if args.file is None:
            parser.error("upload needs --file")
        manifest = Manifest(
            dataset=args.dataset or args.file.stem,
            target=args.target,
            positive=args.positive,
            drop=args.drop,
            time_budget_s=args.time_budget,
        )
        print(upload(config, store, args.file, manifest))
    elif args.command == "models":
        print(json.dumps(models(config, store, args.dataset), indent=1))
    else:
        if not args.yes:
            parser.error("teardown deletes data, models and endpoints: pass --yes")
        for line in teardown(config, session):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
