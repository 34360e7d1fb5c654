"""Columns of an invocation body the model does not know are reported in the
`X-Automlops-Unknown-Columns` header of CSV and JSON answers alike (a CSV answer has no field
for them), on the champion route with capture on or off and on a version route."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from automlops.config import CaptureSettings, Settings
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import open_runtime
from automlops.serving import wire
from automlops.serving.app import create_app
from automlops.serving.models import ModelCache
from support import DEMO_DATASET, private_copy

CHAMPION = f"/endpoints/{DEMO_DATASET}/invocations"
VERSION = f"/endpoints/{DEMO_DATASET}/versions/1/invocations"
AS_CSV = {"content-type": wire.CSV, "accept": wire.CSV}
# Odd names on purpose: a comma, a space, non-ASCII, a leading `+` (and a quote in JSON; polars
# 2.1 keeps a CSV header's doubled quotes doubled, so the name would not be this one).
EXTRAS = {"note": "x", "zip, code": "12", "café": "z", "+1": "0"}
JSON_EXTRAS = {**EXTRAS, 'say "hi"': "y"}


@pytest.fixture(scope="module", params=[True, False], ids=["capture-on", "capture-off"])
def client(
    request: pytest.FixtureRequest, trained_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    home = private_copy(trained_home, tmp_path_factory.mktemp("unknown") / "home")
    runtime = open_runtime(home)
    settings = Settings(capture=CaptureSettings(enabled=request.param, flush_interval_s=3600))
    app = create_app(ModelCache(runtime.store, runtime.registry), settings=settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    runtime.close()


@pytest.fixture(scope="module")
def rows() -> pl.DataFrame:
    return pl.read_csv(io.BytesIO(breast_cancer_csv())).drop("diagnosis").head(4)


def _csv(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_csv(out)
    return out.getvalue()


def _unknown(response: Any) -> tuple[list[str], int]:
    return wire.read_unknown_columns_header(response.headers[wire.UNKNOWN_COLUMNS_HEADER])


@pytest.mark.parametrize("path", [CHAMPION, VERSION])
def test_a_csv_answer_names_the_columns_it_ignored(
    client: TestClient, rows: pl.DataFrame, path: str
) -> None:
    plain = client.post(path, content=_csv(rows), headers=AS_CSV)
    assert plain.status_code == 200 and wire.UNKNOWN_COLUMNS_HEADER not in plain.headers
    extra = rows.with_columns(pl.lit(v).alias(k) for k, v in EXTRAS.items())
    answer = client.post(path, content=_csv(extra), headers=AS_CSV)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(wire.CSV)
    # The same predictions, one line a row, and every extra column named, sorted.
    assert answer.content == plain.content and answer.content.count(b"\n") == rows.height
    assert _unknown(answer) == (sorted(EXTRAS), 0)
    assert answer.headers[wire.UNKNOWN_COLUMNS_HEADER].isascii()


def test_a_json_answer_carries_the_header_beside_its_field(
    client: TestClient, rows: pl.DataFrame
) -> None:
    extra = [{**row, **JSON_EXTRAS} for row in rows.to_dicts()]
    answer = client.post(CHAMPION, content=wire.json_body(extra))
    assert answer.status_code == 200
    assert answer.json()["unknown_columns"] == sorted(JSON_EXTRAS)
    assert _unknown(answer) == (sorted(JSON_EXTRAS), 0)
    assert wire.INFERENCE_ID_HEADER in answer.headers  # beside the other headers, not instead
    plain = client.post(CHAMPION, content=wire.json_body(rows.to_dicts()))
    assert wire.UNKNOWN_COLUMNS_HEADER not in plain.headers
    assert wire.INFERENCE_ID_HEADER in plain.headers


def test_many_unknown_columns_are_bounded_and_counted(
    client: TestClient, rows: pl.DataFrame
) -> None:
    names = [f"unused_column_number_{i:04d}" for i in range(200)]
    extra = rows.with_columns(pl.lit(1).alias(name) for name in names)
    answer = client.post(CHAMPION, content=_csv(extra), headers=AS_CSV)
    assert answer.status_code == 200
    value = answer.headers[wire.UNKNOWN_COLUMNS_HEADER]
    assert len(value) <= wire.UNKNOWN_COLUMNS_MAX_CHARS
    shown, more = wire.read_unknown_columns_header(value)
    assert shown == names[: len(shown)] and more == len(names) - len(shown) > 0
    assert value.endswith(f",+{more} more")


@pytest.mark.parametrize(
    "names",
    [
        [],
        ["a"],
        ["a b", "x,y", "é", "+1", "50%", "1 more"],
        ["x" * 2000],
        ["a", "y" * 1100],
        [f"c{i}" for i in range(1000)],
    ],
    ids=["none", "one", "odd", "one-too-long", "second-too-long", "a-thousand"],
)
def test_the_header_value_reads_back(names: list[str]) -> None:
    value = wire.unknown_columns_header(names)
    assert len(value) <= wire.UNKNOWN_COLUMNS_MAX_CHARS and value.isascii()
    shown, more = wire.read_unknown_columns_header(value)
    assert shown == names[: len(shown)] and len(shown) + more == len(names)
    if len(",".join(names)) < wire.UNKNOWN_COLUMNS_MAX_CHARS // 3:  # room for every name
        assert (shown, more) == (names, 0)


def test_openapi_declares_the_header(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (CHAMPION, VERSION):
        route = path.replace(DEMO_DATASET, "{dataset}").replace("/1/", "/{version}/")
        headers = paths[route]["post"]["responses"]["200"]["headers"]
        assert "CSV" in headers[wire.UNKNOWN_COLUMNS_HEADER]["description"]
