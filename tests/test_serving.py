"""The inference API's HTTP contract, over models trained by the real pipeline."""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from sklearn.datasets import load_diabetes, load_iris

from automlops.config import Manifest, Task
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker
from automlops.ml.predictor import Predictor
from automlops.serving import wire
from automlops.serving.app import create_app
from automlops.serving.models import ModelCache
from automlops.serving.sagemaker import create_sagemaker_app
from support import DEMO_DATASET, upload

CANCER = f"/endpoints/{DEMO_DATASET}"
CANCER_INVOKE = f"{CANCER}/invocations"
JSON = {"content-type": "application/json"}
CSV = {"content-type": "text/csv"}
SITES = ["north", "south", "east"]
# The shortest search; the linear model's defaults finish first even on a busy machine, and
# XGBoost wins the rest of the second when it can.
QUICK: dict[str, Any] = {"time_budget_s": 1, "learners": ["linear", "xgboost"]}
TINY_PNG = base64.b64decode(  # a valid 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


# -- helpers ---------------------------------------------------------------------------------


def csv_bytes(frame: pl.DataFrame) -> bytes:
    """A CSV file to upload (invocation bodies are built with `wire.csv_body`)."""
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()


def post_json(client: TestClient, path: str, payload: Any, **headers: str) -> Any:
    """POST a JSON document (stdlib-encoded, so big ints and NaN go through as written)."""
    return client.post(path, content=json.dumps(payload).encode(), headers={**JSON, **headers})


def predict(client: TestClient, path: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The prediction items for `rows` as sent, asserting a 200 with the declared shape."""
    response = post_json(client, path, {"instances": rows})
    assert response.status_code == 200, response.text
    assert len(wire.read_response(response.content).predictions) == len(rows)
    return response.json()["predictions"]


def assert_same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Same labels and (to rounding) the same numbers: batches of other sizes may differ in
    the last bits of a matrix product."""
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys()
        assert a.get("label") == b.get("label")
        for key in ("value", "probabilities"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12)


def assert_ok(client: TestClient) -> None:
    """The server still answers a good request."""
    assert client.get("/ping").status_code == 200
    assert len(predict(client, CANCER_INVOKE, [{}])) == 1


def assert_client_error(response: Any, status: int = 400) -> dict[str, Any]:
    """A JSON error with the given 4xx status; returns the error document."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    return body


def visit_date(i: int) -> str:
    """A date column for the iris data: 2024-01-01 plus `i` days."""
    return (date(2024, 1, 1) + timedelta(days=i)).isoformat()


def _blank_png(figure: Figure, fname: Any, *args: Any, **kwargs: Any) -> None:
    fname.write(TINY_PNG)


def train(runtime: LocalRuntime, manifest: Manifest, filename: str, data: bytes) -> None:
    """Upload a CSV and run the whole pipeline until it is idle.

    Report plots come out blank: rendering them takes most of a run's time and serving never
    reads them.
    """
    upload(runtime, manifest, filename, data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", _blank_png)
        Worker(runtime).run_until_idle()


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cancer_runtime(trained_home: Path) -> Iterator[LocalRuntime]:
    runtime = open_runtime(trained_home)
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def client(cancer_runtime: LocalRuntime) -> TestClient:
    """The app as `open_runtime(home).create_app()` builds it (default body limit)."""
    return TestClient(cancer_runtime.create_app(), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def cancer_rows() -> list[dict[str, Any]]:
    """Twenty raw demo rows (both classes) as a caller would send them, target removed."""
    frame = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    picked = pl.concat(
        [
            frame.filter(pl.col("diagnosis") == "benign").head(10),
            frame.filter(pl.col("diagnosis") == "malignant").head(10),
        ]
    )
    return picked.drop("diagnosis").to_dicts()


@pytest.fixture(scope="module")
def description(client: TestClient) -> dict[str, Any]:
    response = client.get(CANCER)
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A workspace serving `iris` (multiclass, one categorical column) and `diabetes`."""
    runtime = open_runtime(tmp_path_factory.mktemp("zoo"))
    iris = load_iris()
    names = [n.removesuffix(" (cm)").replace(" ", "_") for n in iris.feature_names]
    frame = pl.DataFrame(iris.data, schema=names).with_columns(
        pl.Series("site", [SITES[i % 3] for i in range(len(iris.target))]),
        pl.Series("visited", [visit_date(i) for i in range(len(iris.target))]),
        pl.Series("species", [str(iris.target_names[t]) for t in iris.target]),
    )
    train(
        runtime,
        Manifest(dataset="iris", target="species", task=Task.multiclass, **QUICK),
        "iris.csv",
        csv_bytes(frame),
    )
    diabetes = load_diabetes()
    frame = pl.DataFrame(diabetes.data, schema=list(diabetes.feature_names)).with_columns(
        pl.Series("progression", diabetes.target)
    )
    train(
        runtime,
        Manifest(dataset="diabetes", target="progression", task=Task.regression, **QUICK),
        "diabetes.csv",
        csv_bytes(frame),
    )
    assert runtime.registry.read("iris").champion == 1
    assert runtime.registry.read("diabetes").champion == 1
    yield TestClient(runtime.create_app(), raise_server_exceptions=False)
    runtime.close()


@pytest.fixture(scope="module")
def iris_rows() -> list[dict[str, Any]]:
    iris = load_iris()
    names = [n.removesuffix(" (cm)").replace(" ", "_") for n in iris.feature_names]
    rows = [dict(zip(names, map(float, x), strict=True)) for x in iris.data[::10]]
    return [
        {**row, "site": SITES[i % 3], "visited": visit_date(10 * i)} for i, row in enumerate(rows)
    ]


@pytest.fixture(scope="module")
def diabetes_rows() -> list[dict[str, Any]]:
    diabetes = load_diabetes()
    return [
        dict(zip(diabetes.feature_names, map(float, x), strict=True)) for x in diabetes.data[:15]
    ]


# -- describe and basics ---------------------------------------------------------------------


def test_ping(client: TestClient) -> None:
    """Liveness answers 200."""
    assert client.get("/ping").status_code == 200


def test_describe_binary(description: dict[str, Any], cancer_rows: list[dict[str, Any]]) -> None:
    """The champion's version, task, every feature column with its type, and the labels."""
    assert description["version"] == 1
    assert description["task"] == "binary"
    assert description["features"] == [
        {"name": c, "type": "numeric", "spelling": None} for c in cancer_rows[0]
    ]
    assert description["labels"] == ["benign", "malignant"]
    threshold = description["threshold"]
    assert threshold is None or 0.0 < threshold < 1.0


def test_unknown_dataset_is_404(client: TestClient) -> None:
    """Unknown or malformed dataset names are 404 on every route."""
    for name in ("nope", ".hidden", "a b", "x" * 200):
        assert_client_error(client.get(f"/endpoints/{name}"), 404)
        assert_client_error(post_json(client, f"/endpoints/{name}/invocations", {}), 404)
        path = f"/endpoints/{name}/versions/1/invocations"
        assert_client_error(post_json(client, path, {"instances": [{}]}), 404)
    assert_ok(client)


# -- binary predictions ----------------------------------------------------------------------


def test_binary_predictions_follow_threshold(
    client: TestClient, description: dict[str, Any], cancer_rows: list[dict[str, Any]]
) -> None:
    """Probabilities over both labels sum to 1; the label is the positive one iff P >= threshold."""
    response = post_json(client, CANCER_INVOKE, {"instances": cancer_rows})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "1"
    threshold = description["threshold"] if description["threshold"] is not None else 0.5
    items = body["predictions"]
    assert len(items) == len(cancer_rows)
    for item in items:
        assert set(item["probabilities"]) == {"benign", "malignant"}
        assert sum(item["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
        p = item["probabilities"]["malignant"]
        assert item["label"] == ("malignant" if p >= threshold else "benign")
    labels = [item["label"] for item in items]
    # A working model tells the two halves apart (first ten benign, last ten malignant).
    assert labels[:10].count("benign") >= 8 and labels[10:].count("malignant") >= 8


def test_json_and_csv_bodies_agree(client: TestClient, cancer_rows: list[dict[str, Any]]) -> None:
    """The same rows as JSON and as CSV give the same predictions, in both response formats."""
    csv_body = wire.csv_body(pl.DataFrame(cancer_rows))
    from_json = predict(client, CANCER_INVOKE, cancer_rows)
    response = client.post(CANCER_INVOKE, content=csv_body, headers=CSV)
    assert response.status_code == 200
    assert response.json()["predictions"] == from_json
    # A byte-order mark and CRLF line ends (spreadsheet exports) change nothing.
    excel = b"\xef\xbb\xbf" + csv_body.replace(b"\n", b"\r\n")
    response = client.post(CANCER_INVOKE, content=excel, headers={"content-type": "text/csv"})
    assert response.status_code == 200
    assert response.json()["predictions"] == from_json

    expected = wire.read_response(response.content).probability("malignant")
    for content, headers in (
        (wire.json_body(cancer_rows), JSON),
        (csv_body, CSV),
    ):
        response = client.post(
            CANCER_INVOKE, content=content, headers={**headers, "accept": "text/csv"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        lines = wire.read_csv_response(response.content)
        assert [float(x) for x in lines] == pytest.approx(expected.tolist(), abs=1e-12)


def test_strings_for_numbers(client: TestClient, cancer_rows: list[dict[str, Any]]) -> None:
    """Numbers sent as strings ("12.5", with spaces) predict exactly like the numbers."""
    as_text = [{k: f" {v!r} " for k, v in row.items()} for row in cancer_rows]
    assert_same(
        predict(client, CANCER_INVOKE, as_text), predict(client, CANCER_INVOKE, cancer_rows)
    )
    mixed = [
        {k: (str(v) if i % 2 else v) for k, v in row.items()} for i, row in enumerate(cancer_rows)
    ]
    assert_same(predict(client, CANCER_INVOKE, mixed), predict(client, CANCER_INVOKE, cancer_rows))


def test_missing_and_null_values_are_imputed(
    client: TestClient, cancer_runtime: LocalRuntime, cancer_rows: list[dict[str, Any]]
) -> None:
    """An empty row, nulls, empty strings, NaN and the file's missing spellings (NA, N/A, -, ?)
    all mean "missing": the training fill. A row of unknown columns only is refused."""
    predictor = ModelCache(cancer_runtime.store, cancer_runtime.registry).version(DEMO_DATASET, 1)
    fills = {c.name: c.fill for c in predictor.transform.columns}  # type: ignore[union-attr]
    columns = list(cancer_rows[0])
    missing = [
        {},
        dict.fromkeys(columns),
        dict.fromkeys(columns, ""),
        dict.fromkeys(columns, "NaN"),
        dict.fromkeys(columns, "NA"),
        dict.fromkeys(columns, " n/a "),
        dict.fromkeys(columns, "-"),
        dict.fromkeys(columns, "?"),
        {**dict.fromkeys(columns), "not_a_column": 3},
    ]
    (filled,) = predict(client, CANCER_INVOKE, [fills])
    assert_same(predict(client, CANCER_INVOKE, missing), [filled] * len(missing))
    body = assert_client_error(
        post_json(client, CANCER_INVOKE, {"instances": [{}, {"not_a_column": 3}]})
    )
    assert body["row"] == 1 and "not_a_column" in body["error"] and columns[0] in body["error"]
    # One missing column in a real row: as if that column held its fill.
    row = cancer_rows[15]
    partial = [{k: v for k, v in row.items() if k != c} for c in columns]
    refilled = [{**row, c: fills[c]} for c in columns]
    assert_same(predict(client, CANCER_INVOKE, partial), predict(client, CANCER_INVOKE, refilled))
    # The features matter: imputing everything changes some predictions.
    probabilities = [p["probabilities"] for p in predict(client, CANCER_INVOKE, cancer_rows)]
    assert any(p != pytest.approx(filled["probabilities"], abs=1e-6) for p in probabilities)


def test_booleans_huge_numbers_and_empty_list(
    client: TestClient, cancer_rows: list[dict[str, Any]]
) -> None:
    """Booleans read as 1/0; numbers beyond float32 are refused by name; [] gives []."""
    columns = list(cancer_rows[0])

    def same(value: Any) -> dict[str, Any]:
        return dict.fromkeys(columns, value)

    got = predict(client, CANCER_INVOKE, [same(True), same(False), same("true"), same("no")])
    want = predict(client, CANCER_INVOKE, [same(1), same(0), same(1), same(0)])
    assert_same(got, want)
    # Large but representable: a finite answer (no NaN from overflowing features).
    for item in predict(client, CANCER_INVOKE, [same(10**30), same(-3e38), same(str(10**38))]):
        assert sum(item["probabilities"].values()) == pytest.approx(1.0)
    # Beyond float32 the model would see infinities: 400 naming the first such value.
    column = columns[4]
    for value in (1e308, -1e39, 10**300, "1e999", "inf", "-Infinity"):
        rows = [cancer_rows[0], {**cancer_rows[1], column: value}]
        body = assert_client_error(post_json(client, CANCER_INVOKE, {"instances": rows}))
        assert (body["row"], body["column"]) == (1, column)
        assert "out of range" in body["error"]

    response = post_json(client, CANCER_INVOKE, {"instances": []})
    assert response.status_code == 200
    assert response.json() == {"model_version": "1", "predictions": []}
    response = post_json(client, CANCER_INVOKE, {"instances": []}, accept="text/csv")
    assert response.status_code == 200
    assert response.text.splitlines() == []
    response = client.post(CANCER_INVOKE, content=",".join(columns).encode() + b"\n", headers=CSV)
    assert response.status_code == 200
    assert response.json()["predictions"] == []


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "12,5", "1.2.3", [1], {"a": 1}])
def test_unparseable_value_names_row_and_column(
    client: TestClient, cancer_rows: list[dict[str, Any]], value: Any
) -> None:
    """A value that is not a number gives 400 naming its row and column."""
    column = list(cancer_rows[0])[3]
    rows = [*cancer_rows[:2], {**cancer_rows[2], column: value}, *cancer_rows[3:5]]
    body = assert_client_error(post_json(client, CANCER_INVOKE, {"instances": rows}))
    assert body["row"] == 2
    assert body["column"] == column
    assert "row 2" in body["error"] and column in body["error"]
    assert_ok(client)


def test_unparseable_csv_value_names_row_and_column(
    client: TestClient, cancer_rows: list[dict[str, Any]]
) -> None:
    """The same for a CSV body: rows count from 0 after the header."""
    column = list(cancer_rows[0])[7]
    frame = pl.DataFrame(cancer_rows[:4]).cast(pl.String)
    frame = frame.with_columns(pl.Series(column, ["1", "2", "3", "oops"]))
    body = assert_client_error(
        client.post(CANCER_INVOKE, content=wire.csv_body(frame), headers=CSV)
    )
    assert (body["row"], body["column"]) == (3, column)
    assert "row 3" in body["error"] and column in body["error"] and "oops" in body["error"]
    assert_ok(client)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "JSON"),
        (b"not json", "JSON"),
        (b'{"instances": [{}]', "JSON"),
        (b'{"instances": [{"mean_radius": 1e999}]}', "JSON"),
        (b'{"instances": [{"mean_radius": NaN}]}', "JSON"),
        (b'{"instances": [{"mean_radius": "\xff"}]}', "JSON"),
        (b"\xff\xfe\x00\x01", "JSON"),
        (b"[]", "instances"),
        (b'[{"mean_radius": 1}]', "instances"),
        (b"null", "instances"),
        (b'"instances"', "instances"),
        (b"{}", "instances"),
        (b'{"rows": []}', "instances"),
        (b'{"instances": {}}', "instances"),
        (b'{"instances": null}', "instances"),
        (b'{"instances": "abc"}', "instances"),
        (b'{"instances": [{}, 1]}', "row 1"),
        (b'{"instances": [[1, 2]]}', "row 0"),
        (b'{"instances": [null]}', "row 0"),
        (b'{"instances": [{"mean_radius": {"v": 1}}]}', "nested"),
        (b'{"instances": [{}, {"mean_radius": [1, 2]}]}', "nested"),
    ],
)
def test_bad_json_is_400(client: TestClient, content: bytes, message: str) -> None:
    """Malformed or misshapen JSON bodies are 400 with a helpful message."""
    body = assert_client_error(client.post(CANCER_INVOKE, content=content, headers=JSON))
    assert message in body["error"]
    assert_ok(client)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n\n  \n",
        b"mean_radius,mean_texture\n1,2,3\n",
        b'mean_radius\n"12\n',
        b"mean_radius\n\xff\n",
        b"\xffmean_radius\n1\n",
        b"mean_radius\nabc\n",
    ],
)
def test_bad_csv_is_400(client: TestClient, content: bytes) -> None:
    """Empty, ragged, unterminated, non-UTF-8 or unreadable CSV bodies are 400."""
    assert_client_error(client.post(CANCER_INVOKE, content=content, headers=CSV))
    assert_ok(client)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data"])
def test_unsupported_content_type_is_415(client: TestClient, content_type: str) -> None:
    """Only JSON and CSV bodies are understood."""
    response = client.post(CANCER_INVOKE, content=b"{}", headers={"content-type": content_type})
    body = assert_client_error(response, 415)
    assert content_type in body["error"]
    assert_ok(client)


def test_body_limit_is_413(cancer_runtime: LocalRuntime) -> None:
    """Bodies over `max_body_bytes` are refused, declared or streamed without a length."""
    app = create_app(ModelCache(cancer_runtime.store, cancer_runtime.registry), max_body_bytes=512)
    small = TestClient(app, raise_server_exceptions=False)
    fits = json.dumps({"instances": [{}] * 100}).encode()
    assert len(fits) <= 512
    assert len(predict(small, CANCER_INVOKE, [{}] * 100)) == 100
    too_big = json.dumps({"instances": [{}] * 200}).encode()
    assert len(too_big) > 512
    assert_client_error(small.post(CANCER_INVOKE, content=too_big, headers=JSON), 413)
    assert_client_error(small.post(CANCER_INVOKE, content=b"a\n" + b"1\n" * 300, headers=CSV), 413)

    def chunks() -> Iterator[bytes]:
        yield b'{"instances": ['
        yield b"{}," * 300
        yield b"{}]}"

    response = small.post(CANCER_INVOKE, content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_client_error(response, 413)
    assert len(predict(small, CANCER_INVOKE, [{}])) == 1


def test_default_body_limit_is_10_mb(client: TestClient) -> None:
    """The app built by the runtime refuses a body just over 10 MB."""
    content = b'{"instances": [' + b" " * (10 * 1024 * 1024) + b"]}"
    assert_client_error(client.post(CANCER_INVOKE, content=content, headers=JSON), 413)
    assert_ok(client)


def test_instances_over_the_cap_are_413_naming_it(cancer_runtime: LocalRuntime) -> None:
    """A body may hold at most `max_instances` rows, JSON or CSV; more is a 413 naming the cap."""
    app = create_app(ModelCache(cancer_runtime.store, cancer_runtime.registry), max_instances=100)
    small = TestClient(app, raise_server_exceptions=False)
    assert len(predict(small, CANCER_INVOKE, [{}] * 100)) == 100
    body = assert_client_error(post_json(small, CANCER_INVOKE, {"instances": [{}] * 101}), 413)
    assert "100" in body["error"] and "instances" in body["error"]
    csv_rows = b"mean_radius\n" + b"14.1\n" * 101
    body = assert_client_error(small.post(CANCER_INVOKE, content=csv_rows, headers=CSV), 413)
    assert "100" in body["error"]
    assert len(predict(small, CANCER_INVOKE, [{}])) == 1


def test_default_cap_refuses_three_million_instances(client: TestClient) -> None:
    """9 MB of `{}` (under the body limit) is refused by the default 100,000-instance cap."""
    content = b'{"instances": [' + b"{}," * 3_000_000 + b"{}]}"
    assert len(content) < 10 * 1024 * 1024
    body = assert_client_error(client.post(CANCER_INVOKE, content=content, headers=JSON), 413)
    assert "100000" in body["error"].replace(",", "")
    assert_ok(client)


def test_instance_cap_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """$AUTOMLOPS_MAX_INSTANCES sets the cap of the runtime's app and the container's."""
    from automlops.config import Settings

    assert Settings().max_instances == 100_000
    monkeypatch.setenv("AUTOMLOPS_MAX_INSTANCES", "7")
    assert Settings().max_instances == 7


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` behind a real uvicorn server on a free loopback port, in a thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_ping_answers_while_a_big_batch_is_predicted(
    cancer_runtime: LocalRuntime, cancer_rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big batch is parsed and predicted off the event loop: while one is held inside the
    model, `/ping` and a single-row request still answer (ordering, not a timing)."""
    models = ModelCache(cancer_runtime.store, cancer_runtime.registry)
    _, predictor = models.champion(DEMO_DATASET)
    inside, release = threading.Event(), threading.Event()
    real_predict_rows = predictor.predict_rows

    def held(rows: list[dict[str, Any]]) -> Any:
        if len(rows) > 1:  # the big batch waits in the model until the test lets it go
            inside.set()
            release.wait(60)
        return real_predict_rows(rows)

    monkeypatch.setattr(predictor, "predict_rows", held)
    rows = (cancer_rows * (5_000 // len(cancer_rows) + 1))[:5_000]
    big = wire.json_body(rows)
    answers: dict[str, httpx.Response] = {}
    with serving(create_app(models)) as url:

        def send_big() -> None:
            answers["big"] = httpx.post(url + CANCER_INVOKE, content=big, headers=JSON, timeout=90)

        sender = threading.Thread(target=send_big)
        sender.start()
        try:
            assert inside.wait(60), "the big batch never reached the model"
            ping = httpx.get(url + "/ping", timeout=20)
            one = httpx.post(url + CANCER_INVOKE, json={"instances": rows[:1]}, timeout=20)
            assert sender.is_alive() and "big" not in answers  # still in flight meanwhile
        finally:
            release.set()
            sender.join(90)
    assert ping.status_code == 200 and ping.json() == {"status": "ok"}
    assert one.status_code == 200 and len(one.json()["predictions"]) == 1
    assert answers["big"].status_code == 200, answers["big"].text[:300]
    assert len(answers["big"].json()["predictions"]) == 5_000


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
COLUMNS = st.sampled_from(["mean_radius", "worst_area", "site", "visited", "sepal_length", "x"])
ROWS = st.lists(st.dictionaries(COLUMNS | st.text(max_size=8), JSON_VALUES, max_size=6), max_size=5)
BODIES = (
    JSON_VALUES
    | st.builds(lambda v: {"instances": v}, JSON_VALUES)
    | ROWS.map(lambda rows: {"instances": rows})
)


@settings(max_examples=50, deadline=None)
@given(body=BODIES, path=st.sampled_from([CANCER_INVOKE, "/endpoints/iris/invocations"]))
def test_arbitrary_json_never_5xx(
    client: TestClient, zoo: TestClient, body: Any, path: str
) -> None:
    """Whatever JSON arrives, the answer is a prediction or a 4xx, never a server error."""
    target = client if path == CANCER_INVOKE else zoo
    response = post_json(target, path, body)
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        items = response.json()["predictions"]
        assert len(items) == len(body["instances"])
        for item in items:  # no NaN (sent as null) in a successful answer
            assert sum(item["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    else:
        assert 400 <= response.status_code < 500
        assert "error" in response.json()


def test_server_answers_after_bad_requests(client: TestClient) -> None:
    """A burst of bad requests leaves the server healthy."""
    for content, headers in [
        (b"\x00" * 100, JSON),
        (b"{", JSON),
        (b"\xff\xfe", CSV),
        (b"a,b\n1,2,3,4\n", CSV),
        (b"<xml/>", {"content-type": "application/xml"}),
    ]:
        assert 400 <= client.post(CANCER_INVOKE, content=content, headers=headers).status_code < 500
    assert_ok(client)


# -- multiclass and regression ---------------------------------------------------------------


def test_multiclass_endpoint(zoo: TestClient, iris_rows: list[dict[str, Any]]) -> None:
    """Labels, probabilities over all classes, argmax labels; CSV answers give the labels."""
    description = zoo.get("/endpoints/iris").json()
    assert description["task"] == "multiclass"
    assert sorted(description["labels"]) == ["setosa", "versicolor", "virginica"]
    features = {f["name"]: f["type"] for f in description["features"]}
    numeric = dict.fromkeys(list(iris_rows[0])[:4], "numeric")
    assert features == {**numeric, "site": "categorical", "visited": "datetime"}

    items = predict(zoo, "/endpoints/iris/invocations", iris_rows)
    for item in items:
        probabilities = item["probabilities"]
        assert set(probabilities) == set(description["labels"])
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert item["label"] == max(probabilities, key=probabilities.__getitem__)
    labels = [item["label"] for item in items]
    truth = [str(load_iris().target_names[t]) for t in load_iris().target[::10]]
    assert sum(a == b for a, b in zip(labels, truth, strict=True)) >= 13

    csv_body = wire.csv_body(pl.DataFrame(iris_rows))
    response = zoo.post(
        "/endpoints/iris/invocations", content=csv_body, headers={**CSV, "accept": "text/csv"}
    )
    assert response.status_code == 200
    assert wire.read_csv_response(response.content) == labels
    response = zoo.post("/endpoints/iris/invocations", content=csv_body, headers=CSV)
    assert response.json()["predictions"] == items


def test_unseen_categories(zoo: TestClient, iris_rows: list[dict[str, Any]]) -> None:
    """An unseen category (or a number in a text column) predicts like a missing one."""
    path = "/endpoints/iris/invocations"
    row = {k: v for k, v in iris_rows[7].items() if k != "site"}
    variants = [{**row, "site": s} for s in ("mars", 12, 1.5, True, " ", None)]
    (missing,) = predict(zoo, path, [row])
    assert_same(predict(zoo, path, variants), [missing] * len(variants))
    # Known categories are still read (surrounding spaces do not matter).
    known = predict(zoo, path, [{**row, "site": s} for s in SITES])
    assert_same(predict(zoo, path, [{**row, "site": f" {s} "} for s in SITES]), known)


def test_datetime_column(zoo: TestClient, iris_rows: list[dict[str, Any]]) -> None:
    """Dates read in the training format; a missing date is imputed, a bad one named."""
    path = "/endpoints/iris/invocations"
    row = {k: v for k, v in iris_rows[3].items() if k != "visited"}
    (missing,) = predict(zoo, path, [row])
    assert_same(
        predict(zoo, path, [{**row, "visited": None}, {**row, "visited": ""}]), [missing] * 2
    )
    assert len(predict(zoo, path, [{**row, "visited": " 2024-02-29 "}])) == 1
    for value in ("not a date", "2024-13-01", "29/02/2024", 20240101, True):
        rows = [iris_rows[0], iris_rows[1], {**row, "visited": value}]
        body = assert_client_error(post_json(zoo, path, {"instances": rows}))
        assert (body["row"], body["column"]) == (2, "visited")
        assert "row 2" in body["error"] and "visited" in body["error"]


def test_regression_endpoint(zoo: TestClient, diabetes_rows: list[dict[str, Any]]) -> None:
    """Regression items are {"value": x}; CSV answers give the values."""
    description = zoo.get("/endpoints/diabetes").json()
    assert description["task"] == "regression"
    assert not description["labels"]
    items = predict(zoo, "/endpoints/diabetes/invocations", diabetes_rows)
    values = [item["value"] for item in items]
    assert all(set(item) == {"value"} for item in items)
    assert all(isinstance(v, float) and math.isfinite(v) and 0 < v < 400 for v in values)
    assert len(set(values)) > 1

    csv_body = wire.csv_body(pl.DataFrame(diabetes_rows))
    response = zoo.post(
        "/endpoints/diabetes/invocations", content=csv_body, headers={**CSV, "accept": "text/csv"}
    )
    assert response.status_code == 200
    assert [float(x) for x in response.text.splitlines()] == pytest.approx(values, abs=1e-9)
    assert predict(zoo, "/endpoints/diabetes/invocations", [{}])[0]["value"] > 0


@pytest.mark.parametrize("dataset", ["iris", "diabetes"])
def test_empty_list_every_task(zoo: TestClient, dataset: str) -> None:
    """An empty instance list answers 200 with no predictions, for every task and format."""
    path = f"/endpoints/{dataset}/invocations"
    response = post_json(zoo, path, {"instances": []})
    assert response.status_code == 200
    assert response.json() == {"model_version": "1", "predictions": []}
    response = post_json(zoo, path, {"instances": []}, accept="text/csv")
    assert response.status_code == 200
    assert response.text == ""


# -- versions and champions ------------------------------------------------------------------


@pytest.fixture
def two_versions(trained_home: Path, tmp_path: Path) -> Iterator[LocalRuntime]:
    """A copy of the trained workspace (v1: all demo rows) plus v2 from another upload."""
    home = tmp_path / "home"
    shutil.copytree(trained_home, home)
    runtime = open_runtime(home)
    demo = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    manifest = Manifest(
        dataset=DEMO_DATASET,
        target="diagnosis",
        positive="malignant",
        task=Task.binary,
        **QUICK,
    )
    train(runtime, manifest, "second.csv", csv_bytes(demo.tail(400)))
    yield runtime
    runtime.close()


def test_served_model_follows_champion(two_versions: LocalRuntime) -> None:
    """Promotions and rollbacks change the serving version without rebuilding the app."""
    runtime = two_versions
    demo = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    doc = runtime.registry.read(DEMO_DATASET)
    assert [v.version for v in doc.versions] == [1, 2]

    app = create_app(ModelCache(runtime.store, runtime.registry, refresh_s=0))
    client = TestClient(app, raise_server_exceptions=False)
    rows = demo.drop("diagnosis").head(40).to_dicts()

    def serving(version: int, predictions: list[dict[str, Any]]) -> None:
        """The champion endpoint answers as `version` (its predictions, its description)."""
        response = post_json(client, CANCER_INVOKE, {"instances": rows})
        assert response.status_code == 200
        assert response.json()["model_version"] == str(version)
        assert_same(response.json()["predictions"], predictions)
        assert client.get(CANCER).json()["version"] == version

    def pinned(version: int) -> list[dict[str, Any]]:
        path = f"{CANCER}/versions/{version}/invocations"
        response = post_json(client, path, {"instances": rows})
        assert response.status_code == 200
        assert response.json()["model_version"] == str(version)
        return response.json()["predictions"]

    v1, v2 = pinned(1), pinned(2)
    assert v1 != v2, "two models trained on different rows should differ somewhere"
    assert doc.champion in (1, 2)
    serving(doc.champion, v1 if doc.champion == 1 else v2)

    runtime.registry.promote(DEMO_DATASET, 1, "test")
    serving(1, v1)
    runtime.registry.promote(DEMO_DATASET, 2, "test")
    serving(2, v2)
    runtime.registry.rollback(DEMO_DATASET)
    serving(1, v1)
    runtime.registry.promote(DEMO_DATASET, 2, "test")
    serving(2, v2)

    assert client.get(f"{CANCER}/versions/1").json()["version"] == 1
    for missing in (0, 3, 99):
        assert_client_error(client.get(f"{CANCER}/versions/{missing}"), 404)
        path = f"{CANCER}/versions/{missing}/invocations"
        assert_client_error(post_json(client, path, {"instances": [{}]}), 404)
    serving(2, v2)


def test_dataset_without_champion_is_404(runtime: LocalRuntime) -> None:
    """A workspace with no model answers 404, not 500."""
    client = TestClient(runtime.create_app(), raise_server_exceptions=False)
    assert_client_error(client.get(CANCER), 404)
    assert_client_error(post_json(client, CANCER_INVOKE, {"instances": [{}]}), 404)
    assert client.get("/ping").status_code == 200


def test_csv_answer_keeps_labels_with_commas_quotes_and_line_breaks() -> None:
    """One CSV record per row whatever the labels hold; read back, each label is exact."""
    import csv
    from types import SimpleNamespace

    from automlops.ml.predictor import Predictions
    from automlops.serving.invocation import _as_csv

    labels = ["plain", "a,b", 'say "hi"', "two\nlines", "=1+1", "cr\r"]
    predictions = Predictions(task=Task.multiclass, label_index=np.array([1, 0, 2, 3, 4, 5, 1]))
    body = _as_csv(predictions, SimpleNamespace(labels=labels))  # type: ignore[arg-type]
    got = [row[0] for row in csv.reader(io.StringIO(body.decode(), newline=""))]
    assert wire.read_csv_response(body) == got
    assert got == [labels[i] for i in (1, 0, 2, 3, 4, 5, 1)]


def test_model_cache_keeps_champions_and_a_few_others(two_versions: LocalRuntime) -> None:
    """Superseded versions are dropped beyond `keep_others`; the champion never is, and a
    dropped version loads again when called by number."""
    runtime = two_versions
    runtime.registry.promote(DEMO_DATASET, 1, "test")
    cache = ModelCache(runtime.store, runtime.registry, refresh_s=0, keep_others=0)
    assert cache.champion(DEMO_DATASET)[0] == 1
    cache.version(DEMO_DATASET, 2)  # a candidate called by number: the newest load stays
    assert cache.loaded() == [(DEMO_DATASET, 1), (DEMO_DATASET, 2)]
    runtime.registry.promote(DEMO_DATASET, 2, "test")
    version, predictor = cache.champion(DEMO_DATASET)
    assert version == 2
    assert cache.loaded() == [(DEMO_DATASET, 2)]  # v1, superseded, is gone
    cache.version(DEMO_DATASET, 1)
    assert cache.loaded() == [(DEMO_DATASET, 2), (DEMO_DATASET, 1)]
    assert cache.champion(DEMO_DATASET) == (2, predictor)  # the champion stayed loaded


# -- the declared API ------------------------------------------------------------------------


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its `$ref` (if any) followed into the document's components."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return document["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def _assert_declared_invocation(document: dict[str, Any], path: str) -> None:
    """The invocation route at `path` declares JSON and CSV bodies in and out, and 4xx errors."""
    operation = document["paths"][path]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    request = _resolve(document, body["content"]["application/json"]["schema"])
    assert request["required"] == ["instances"]
    instances = request["properties"]["instances"]
    assert instances["type"] == "array" and instances["items"]["type"] == "object"
    assert body["content"]["text/csv"]["schema"]["type"] == "string"

    answers = operation["responses"]
    assert answers["200"]["content"]["text/csv"]["schema"]["type"] == "string"
    response = _resolve(document, answers["200"]["content"]["application/json"]["schema"])
    assert set(response["required"]) == {"model_version", "predictions"}
    assert response["properties"]["model_version"]["type"] == "string"
    items = response["properties"]["predictions"]["items"]["anyOf"]
    kinds = {frozenset(_resolve(document, item)["required"]) for item in items}
    assert kinds == {frozenset({"label", "probabilities"}), frozenset({"value"})}
    for status in ("400", "404", "413", "415"):
        error = _resolve(document, answers[status]["content"]["application/json"]["schema"])
        assert "error" in error["required"]


def test_openapi_declares_the_invocation_bodies(
    client: TestClient, cancer_runtime: LocalRuntime, tmp_path: Path
) -> None:
    """/openapi.json shows the request and answer of every invocation route, in both apps."""
    document = client.get("/openapi.json").json()
    invocations = [p for p in document["paths"] if p.endswith("/invocations")]
    assert sorted(invocations) == [
        "/endpoints/{dataset}/invocations",
        "/endpoints/{dataset}/versions/{version}/invocations",
    ]
    for path in invocations:
        _assert_declared_invocation(document, path)
    described = _resolve(
        document,
        document["paths"]["/endpoints/{dataset}"]["get"]["responses"]["200"]["content"][
            "application/json"
        ]["schema"],
    )
    assert set(client.get(CANCER).json()) == set(described["properties"])

    entry = cancer_runtime.registry.read(DEMO_DATASET).get(1)
    model = tmp_path / "model.tar.gz"
    model.write_bytes(cancer_runtime.store.get(entry.artifact_bucket, entry.artifact_key))
    container = TestClient(create_sagemaker_app(tmp_path, version=1))
    _assert_declared_invocation(container.get("/openapi.json").json(), "/invocations")


def test_wire_reads_answers_as_typed_records() -> None:
    """The client reads both kinds of answer, orders probabilities by the caller's labels and
    refuses an answer of another shape."""
    classified = wire.read_response(
        b'{"model_version": "3", "predictions": ['
        b'{"label": "b", "probabilities": {"a": 0.25, "b": 0.75}},'
        b'{"label": "a", "probabilities": {"a": 0.5, "b": 0.5}}]}'
    )
    assert classified.model_version == "3"
    assert classified.labels() == ["b", "a"]
    assert classified.probability("b").tolist() == [0.75, 0.5]
    assert classified.probabilities(["b", "c", "a"]).tolist() == [[0.75, 0, 0.25], [0.5, 0, 0.5]]
    with pytest.raises(wire.WireError, match="'c'"):
        classified.probability("c")
    with pytest.raises(wire.WireError):
        classified.values()
    regression = wire.read_response(b'{"model_version": "1", "predictions": [{"value": 2.5}]}')
    assert regression.values().tolist() == [2.5]
    with pytest.raises(wire.WireError):
        regression.labels()
    empty = wire.read_response(b'{"model_version": "1", "predictions": []}')
    assert empty.probabilities(["a", "b"]).shape == (0, 2)
    for bad in (b"{}", b'{"error": "no"}', b'{"model_version": "1", "predictions": [{}]}', b"["):
        with pytest.raises(wire.WireError):
            wire.read_response(bad)
    body = wire.json_body([{"x": np.float32(1.5), "when": date(2024, 1, 2)}])
    assert wire.InvocationRequest.model_validate_json(body).instances == [
        {"x": 1.5, "when": "2024-01-02"}
    ]


def test_a_transform_jobs_mini_batches_are_read_with_the_files_header(
    cancer_runtime: LocalRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Batch Transform job splits a file into mini-batches; only the first holds the header,
    which the job passes in the container's environment."""
    entry = cancer_runtime.registry.read(DEMO_DATASET).get(1)
    model = tmp_path / "model.tar.gz"
    model.write_bytes(cancer_runtime.store.get(entry.artifact_bucket, entry.artifact_key))
    columns = Predictor.from_bytes(model.read_bytes()).input_columns
    header = ",".join(columns)
    rows = "\n".join(",".join(["1"] * len(columns)) for _ in range(3)) + "\n"
    monkeypatch.setenv("AUTOMLOPS_CSV_HEADER", header)
    container = TestClient(create_sagemaker_app(tmp_path, version=1))
    first = container.post("/invocations", content=f"{header}\n{rows}", headers=CSV)
    later = container.post("/invocations", content=rows, headers=CSV)
    assert first.status_code == later.status_code == 200
    assert len(later.json()["predictions"]) == 3 and later.json() == first.json()
    monkeypatch.delenv("AUTOMLOPS_CSV_HEADER")
    alone = TestClient(create_sagemaker_app(tmp_path, version=1))
    assert alone.post("/invocations", content=rows, headers=CSV).status_code == 400
