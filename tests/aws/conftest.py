"""Fixtures of the aws-mode tests: moto's server, the packaged deployment, the stack created from
it by moto's CloudFormation, the handlers configured as the created functions are."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from aws_cfn import Provisioned, create_stack
from aws_invoker import (
    CallRecorder,
    LambdaInvoker,
    LocalSageMakerRuntime,
    emulate_update_endpoint,
)
from aws_packaging import package
from aws_stack import REGION, Stack
from moto.server import ThreadedMotoServer

from automlops.aws import handlers
from automlops.aws.config import load_config
from automlops.aws.runtime import AwsRuntime, build_runtime


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's server on a loopback port: a real HTTP endpoint speaking the AWS wire protocols."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def session() -> boto3.session.Session:
    """A boto3 session with dummy credentials (nothing leaves the machine)."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


@pytest.fixture
def moto(moto_url: str) -> str:
    """moto's URL, its state reset for this test."""
    httpx.post(f"{moto_url}/moto-api/reset").raise_for_status()
    return moto_url


@pytest.fixture(scope="session")
def packaged_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dev stage, packaged once per session."""
    out = tmp_path_factory.mktemp("sls") / "dev"
    result = package("dev", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="session")
def template(packaged_dir: Path) -> dict[str, Any]:
    """The packaged CloudFormation template (JSON)."""
    return json.loads((packaged_dir / "cloudformation-template-update-stack.json").read_text())


@pytest.fixture(scope="session")
def stack(template: dict[str, Any]) -> Stack:
    return Stack(template)


FUNCTION_ENV = "PreprocessLambdaFunction"


@pytest.fixture
def provisioned(moto: str, session: boto3.session.Session, template: dict[str, Any]) -> Provisioned:
    """The packaged template, created on moto by moto's CloudFormation (gaps: aws_cfn)."""
    return create_stack(template, session, moto)


@pytest.fixture
def deployed(
    moto: str, session: boto3.session.Session, provisioned: Provisioned, tmp_path: Path
) -> Iterator[tuple[AwsRuntime, LambdaInvoker, LocalSageMakerRuntime, CallRecorder]]:
    """The created stack, handlers configured as its functions are."""
    # The created function's environment; only the retry backoff is shortened for the test.
    env = provisioned.function_env(FUNCTION_ENV)
    config = load_config({**env, "AUTOMLOPS_RETRY_BASE_S": "1"})
    recorder = CallRecorder()
    sagemaker_runtime = LocalSageMakerRuntime(
        session.client("sagemaker", endpoint_url=moto),
        session.client("s3", endpoint_url=moto),
        tmp_path / "endpoints",
        recorder,
    )
    rt = build_runtime(config, session=session, endpoint_url=moto, runtime_client=sagemaker_runtime)
    for client in (rt.store.client, rt.queue.client, rt.host.sagemaker):
        recorder.attach(client)
    emulate_update_endpoint(rt.host.sagemaker)
    handlers.configure(rt)
    invoker = LambdaInvoker(provisioned.stack, session.client("sqs", endpoint_url=moto), recorder)
    try:
        yield rt, invoker, sagemaker_runtime, recorder
    finally:
        handlers.configure(None)
        sagemaker_runtime.close()
