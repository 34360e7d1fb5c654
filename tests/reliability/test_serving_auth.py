"""Optional API key on the inference API: 401 without it, /ping open, constant-time compare."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from reliability_support import record
from typer.testing import CliRunner

from automlops.cli import app as cli
from automlops.local.runtime import open_runtime
from automlops.serving import auth
from automlops.serving.app import create_app
from automlops.serving.models import ModelCache
from support import DEMO_DATASET

KEY = "s3cret-Key_42"
ROW = {"instances": [{"mean radius": 14.0}]}


@pytest.fixture(scope="module")
def client(trained_home: Path) -> Iterator[TestClient]:
    runtime = open_runtime(trained_home)
    app = create_app(ModelCache(runtime.store, runtime.registry), api_key=KEY)
    with TestClient(app) as test_client:
        yield test_client
    runtime.close()


AUTHORISED = [
    {"Authorization": f"Bearer {KEY}"},
    {"authorization": f"bearer {KEY}"},
    {"X-API-Key": KEY},
]
REFUSED: list[dict[str, object]] = [
    {},
    {"Authorization": "Bearer "},
    {"Authorization": f"Basic {KEY}"},
    {"Authorization": f"Bearer {KEY}x"},
    {"Authorization": f"Bearer {KEY[:-1]}"},
    {"X-API-Key": ""},
    {"X-API-Key": KEY.upper()},
    {"X-API-Key": "ключ".encode()},
]


@pytest.mark.parametrize("headers", AUTHORISED, ids=["bearer", "bearer-lowercase", "x-api-key"])
def test_the_key_opens_every_route(client: TestClient, headers: dict[str, str]) -> None:
    assert client.get(f"/endpoints/{DEMO_DATASET}", headers=headers).status_code == 200
    answer = client.post(f"/endpoints/{DEMO_DATASET}/invocations", json=ROW, headers=headers)
    assert answer.status_code == 200, answer.text
    assert client.get("/openapi.json", headers=headers).status_code == 200


@pytest.mark.parametrize("headers", REFUSED, ids=lambda h: repr(h)[:40])
def test_no_key_or_a_wrong_one_is_refused(client: TestClient, headers: dict[str, object]) -> None:
    for method, path in [
        ("GET", f"/endpoints/{DEMO_DATASET}"),
        ("POST", f"/endpoints/{DEMO_DATASET}/invocations"),
        ("POST", f"/endpoints/{DEMO_DATASET}/versions/1/invocations"),
        ("GET", "/endpoints"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/no/such/route"),
    ]:
        answer = client.request(method, path, json=ROW, headers=headers)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "API key" in answer.json()["error"]
    record("auth", {"headers": repr(headers)[:60], "status": 401})


def test_ping_stays_open(client: TestClient) -> None:
    assert client.get("/ping").json() == {"status": "ok"}


def test_refused_before_the_body_is_read(client: TestClient) -> None:
    body = b"x" * (11 * 1024 * 1024)  # over the body limit: 413 if it were read
    answer = client.post(
        f"/endpoints/{DEMO_DATASET}/invocations",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 401


def test_keys_are_compared_in_constant_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    client.get(f"/endpoints/{DEMO_DATASET}", headers={"X-API-Key": "guess"})
    assert calls == [(b"guess", KEY.encode())]


def test_an_empty_key_is_refused_as_configuration() -> None:
    with pytest.raises(ValueError, match="empty"):
        create_app(ModelCache(None, None), api_key=" ")  # type: ignore[arg-type]


def test_serve_refuses_a_missing_key_variable(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["serve", "--api-key-env", "AUTOMLOPS_TEST_NO_SUCH_VAR", "--home", str(tmp_path)],
        env={"AUTOMLOPS_TEST_NO_SUCH_VAR": ""},
    )
    assert result.exit_code == 2
    assert "AUTOMLOPS_TEST_NO_SUCH_VAR is not set or empty" in result.output


def test_the_internal_model_host_needs_its_token(trained_home: Path) -> None:
    # The embedded server `up` and `run` start for deploys listens on a loopback port any local
    # user can reach: without the process's own token it must answer nothing but /ping.
    runtime = open_runtime(trained_home)
    try:
        url = runtime.host.base_url()
        for path in (f"/endpoints/{DEMO_DATASET}", "/openapi.json", "/endpoints"):
            answer = httpx.get(f"{url}{path}")
            assert answer.status_code == 401, (path, answer.text)
            record(
                "listeners",
                {
                    "listener": "internal model host",
                    "request": f"GET {path}",
                    "status": answer.status_code,
                },
            )
        stolen = httpx.post(f"{url}/endpoints/{DEMO_DATASET}/versions/1/invocations", json=ROW)
        assert stolen.status_code == 401
        assert httpx.get(f"{url}/ping").status_code == 200
        # The host's own client carries the token: deploying and invoking still work.
        endpoint = runtime.host.deploy(DEMO_DATASET, 1, "bucket", "key")
        body = runtime.host.invoke(
            endpoint,
            json.dumps(ROW).encode(),
            content_type="application/json",
            accept="application/json",
        )
        assert "predictions" in json.loads(body)
    finally:
        runtime.close()


def test_serve_refuses_a_foreign_host(trained_home: Path) -> None:
    # DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 reaches the
    # server with `Host: evil.example`; only the allow-listed names are answered.
    runtime = open_runtime(trained_home)
    try:
        app = create_app(ModelCache(runtime.store, runtime.registry))
        auth.allow_hosts(app, auth.default_allowed_hosts("127.0.0.1"))
        with TestClient(app, base_url="http://127.0.0.1:8080") as local:
            assert local.get(f"/endpoints/{DEMO_DATASET}").status_code == 200
            for host in ("localhost:8080", "[::1]:8080", "127.0.0.1"):
                assert local.get("/ping", headers={"host": host}).status_code == 200, host
            for host in ("evil.example", "evil.example:8080", "127.0.0.1.evil.example"):
                answer = local.post(
                    f"/endpoints/{DEMO_DATASET}/invocations",
                    json=ROW,
                    headers={"host": host, "origin": f"http://{host}"},
                )
                assert answer.status_code == 400, host
                record(
                    "listeners",
                    {"listener": "serve", "request": f"Host: {host}", "status": answer.status_code},
                )
    finally:
        runtime.close()


def test_allowed_hosts_include_the_bind_host_and_loopback() -> None:
    assert auth.default_allowed_hosts("10.0.0.5") == ("127.0.0.1", "localhost", "[::1]", "10.0.0.5")
    assert auth.default_allowed_hosts("127.0.0.1") == ("127.0.0.1", "localhost", "[::1]")
    assert auth.default_allowed_hosts("::1") == ("127.0.0.1", "localhost", "[::1]")
    with pytest.raises(ValueError, match="host"):
        auth.parse_allowed_hosts("good.example, ,bad host")
    assert auth.parse_allowed_hosts("A.example,*.b.example") == ("a.example", "*.b.example")


@pytest.mark.parametrize("command", ["serve", "up"])
def test_a_malformed_allowed_hosts_option_is_refused(tmp_path: Path, command: str) -> None:
    result = CliRunner().invoke(
        cli, [command, "--allowed-hosts", "ok.example,bad host", "--home", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "'bad host' is not a host name" in result.output
