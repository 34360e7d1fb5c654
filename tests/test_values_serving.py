"""A messy European upload trains, and its endpoint serves the file's own rows as the file wrote
them, plain numbers alike, with column names and CSV bodies read as in training."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from matplotlib.figure import Figure

from automlops import keys
from automlops.config import Manifest, Task
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker
from automlops.ml.columns.transform import NumericColumn
from automlops.serving import wire
from automlops.serving.columns import ColumnMatchError, match_columns
from automlops.serving.models import ModelCache
from automlops.tabular.schema import DatasetSchema
from support import upload
from test_values_spelling import european, european_csv, messy_rows

INVOKE = "/endpoints/euro/invocations"
JSON = {"content-type": "application/json"}
CSV = {"content-type": "text/csv"}
COLUMNS = ["amount", "rate", "active", "member", "score", "region"]


def _blank_png(figure: Figure, fname: Any, *args: Any, **kwargs: Any) -> None:
    fname.write(b"")  # report plots are not under test here


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    runtime = open_runtime(tmp_path_factory.mktemp("euro"))
    manifest = Manifest(
        dataset="euro",
        target="y",
        task=Task.binary,
        positive="good",
        time_budget_s=1,
        learners=["linear"],
    )
    upload(runtime, manifest, "export.csv", european_csv(messy_rows()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", _blank_png)
        Worker(runtime).run_until_idle()
    assert runtime.registry.read("euro").champion == 1
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def client(runtime: LocalRuntime) -> TestClient:
    return TestClient(runtime.create_app(), raise_server_exceptions=False)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in COLUMNS}


def _as_written(row: dict[str, Any], i: int) -> dict[str, Any]:
    """A row as the uploaded file wrote it (all text)."""
    return {
        "amount": european(row["amount"], currency=True),
        "rate": f"{row['rate']}".replace(".", ",") + " %",
        "active": "TRUE" if row["active"] else "FALSE",
        "member": ("YES" if i % 2 else "Yes") if row["member"] else "no",
        "score": "NA" if row["score"] is None else f"{row['score']}".replace(".", ","),
        "region": row["region"],
    }


def _probabilities(response: Any) -> list[float]:
    assert response.status_code == 200, response.text
    return wire.read_response(response.content).probability("good").tolist()


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return messy_rows()[:12]


@pytest.fixture(scope="module")
def expected(client: TestClient, rows: list[dict[str, Any]]) -> list[float]:
    """P(good) of the rows sent as plain JSON numbers."""
    return _probabilities(client.post(INVOKE, content=wire.json_body(map(_plain, rows))))


def test_schema_and_transform_remember_how_the_file_was_written(runtime: LocalRuntime) -> None:
    run = runtime.registry.read("euro").get(1).run_id
    schema = DatasetSchema.model_validate_json(
        runtime.store.get(runtime.settings.buckets.automl_data, keys.schema_key("euro", run))
    )
    records = {c.name: c.record for c in schema.columns}
    assert all(records[c].action == "feature" for c in COLUMNS)
    assert records["amount"].parse == "decimal comma, '.' thousands separator, currency €"
    assert records["rate"].parse == "decimal comma, percent (12% -> 12)"
    assert records["active"].parse == "booleans (true/false in any case -> 1/0)"
    assert records["member"].parse == "booleans (yes/no in any case -> 1/0)"
    assert records["region"].kind == "categorical" and records["y"].action == "target"
    assert {"NA", "N/A", "-", "?", "null", ""} <= set(schema.missing_values)
    document = json.loads(schema.model_dump_json())
    assert set(document["columns"][0]["record"]) == {"action", "kind", "parse", "reason"}

    predictor = ModelCache(runtime.store, runtime.registry).version("euro", 1)
    amount = next(c for c in predictor.transform.columns if c.name == "amount")
    assert isinstance(amount, NumericColumn) and amount.spelling is not None


def test_file_spellings_and_plain_numbers_predict_alike(
    client: TestClient, rows: list[dict[str, Any]], expected: list[float]
) -> None:
    written = [_as_written(r, i) for i, r in enumerate(rows)]
    got = _probabilities(client.post(INVOKE, content=wire.json_body(written)))
    assert got == pytest.approx(expected, abs=1e-9)
    # The file's own lines as a `;` CSV body, CRLF or old-Mac CR line ends alike.
    lines = european_csv(messy_rows()).decode().splitlines()[: len(rows) + 1]
    body = "\n".join(line.rsplit(";", 1)[0] for line in lines) + "\n"
    for ending in ("\n", "\r\n", "\r"):
        response = client.post(INVOKE, content=body.replace("\n", ending).encode(), headers=CSV)
        got = _probabilities(response)
        assert got == pytest.approx(expected, abs=1e-9), repr(ending)
    # The features matter: the answers are not all one imputed row.
    assert max(expected) - min(expected) > 0.1


def test_booleans_and_missing_spellings_any_case(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    row = _plain(rows[0])
    trues = [True, 1, "TRUE", "true", "True", "YES", "yes", " Yes "]
    falses = [False, 0, "FALSE", "No", "NO"]
    variants = [{**row, "active": v} for v in trues + falses]
    got = _probabilities(client.post(INVOKE, content=wire.json_body(variants)))
    assert got[: len(trues)] == pytest.approx([got[0]] * len(trues))
    assert got[len(trues) :] == pytest.approx([got[len(trues)]] * len(falses))
    missing = [{**row, "score": v} for v in (None, "", "NA", "N/A", "-", "?", "null")]
    got = _probabilities(client.post(INVOKE, content=wire.json_body(missing)))
    assert got == pytest.approx([got[0]] * len(missing))


def test_column_names_match_as_in_training(
    client: TestClient, rows: list[dict[str, Any]], expected: list[float]
) -> None:
    cased = [
        {k.upper() if k != "rate" else " Rate ": v for k, v in _plain(r).items()} for r in rows
    ]
    got = _probabilities(client.post(INVOKE, content=wire.json_body(cased)))
    assert got == pytest.approx(expected, abs=1e-9)
    # Unknown extra columns are used by nothing and said so.
    extra = [{**_plain(r), "colour": "red", "Zip": 1} for r in rows]
    response = client.post(INVOKE, content=wire.json_body(extra))
    assert _probabilities(response) == pytest.approx(expected, abs=1e-9)
    assert response.json()["unknown_columns"] == ["Zip", "colour"]
    assert "unknown_columns" not in client.post(INVOKE, content=wire.json_body(rows[:1])).json()
    # Two names for one column, or a row of unknown columns only: refused, naming the columns.
    both = [{**_plain(rows[0]), "AMOUNT": 3}]
    response = client.post(INVOKE, content=wire.json_body(both))
    assert response.status_code == 400 and "AMOUNT" in response.json()["error"]
    response = client.post(INVOKE, content=wire.json_body([_plain(rows[0]), {"colour": "red"}]))
    assert response.status_code == 400
    assert response.json()["row"] == 1 and "amount" in response.json()["error"]


def test_csv_bodies_need_a_header(client: TestClient, rows: list[dict[str, Any]]) -> None:
    lines = european_csv(messy_rows()).decode().splitlines()
    headerless = "\n".join(line.rsplit(";", 1)[0] for line in lines[1:4]) + "\n"
    response = client.post(INVOKE, content=headerless.encode(), headers=CSV)
    assert response.status_code == 400
    assert "no header" in response.json()["error"] and "amount" in response.json()["error"]
    numbers = b"1,2,3,4,5,north\n6,7,8,9,10,south\n"
    response = client.post(INVOKE, content=numbers, headers=CSV)
    assert response.status_code == 400 and "no header" in response.json()["error"]
    unknown = b"colour,size\nred,3\n"
    response = client.post(INVOKE, content=unknown, headers=CSV)
    assert response.status_code == 400 and "amount" in response.json()["error"]
    # A comma-separated body of plain numbers, with an extra column: read, and reported.
    plain = "amount,rate,active,member,score,region,note\n" + "".join(
        f"{r['amount']},{r['rate']},{int(r['active'])},{int(r['member'])},"
        f"{'' if r['score'] is None else r['score']},{r['region']},x\n"
        for r in rows
    )
    response = client.post(INVOKE, content=plain.encode(), headers=CSV)
    assert response.status_code == 200 and response.json()["unknown_columns"] == ["note"]


def test_description_names_each_spelling(client: TestClient) -> None:
    features = {f["name"]: f for f in client.get("/endpoints/euro").json()["features"]}
    assert features["rate"]["spelling"] == "decimal comma, percent (12% -> 12)"
    assert features["region"]["spelling"] is None


def test_openapi_declares_unknown_columns(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "unknown_columns" in schemas["InvocationResponse"]["properties"]


@pytest.mark.parametrize(
    ("names", "renames", "unknown"),
    [
        (["amount", "rate"], {}, []),
        (["Amount", " RATE "], {"Amount": "amount", " RATE ": "rate"}, []),
        (["mean radius", "x"], {"mean radius": "mean_radius"}, ["x"]),
    ],
)
def test_match_columns(names: list[str], renames: dict[str, str], unknown: list[str]) -> None:
    inputs = ["amount", "rate", "mean_radius"]
    match = match_columns(names, inputs, frozenset(inputs))
    assert (match.renames, match.unknown) == (renames, unknown)


@pytest.mark.parametrize(
    ("names", "inputs"),
    [
        (["AGE"], ["age", "Age"]),  # fits two inputs
        (["Age", "AGE"], ["age"]),  # two names for one input
        (["Age", "age"], ["age"]),  # the input sent under its own name as well
    ],
)
def test_ambiguous_names_are_refused(names: list[str], inputs: list[str]) -> None:
    with pytest.raises(ColumnMatchError):
        match_columns(names, inputs, frozenset(inputs))


@pytest.mark.parametrize(
    "body", [b"\r\r\n", b"a\rb\n1\r2\n", b'"x\r\n', b"\r\x00\n", b"q\r,r\n1,2\n"]
)
def test_stray_carriage_returns_in_a_csv_header_are_a_400(client: TestClient, body: bytes) -> None:
    """Found by the fuzzer: a CR inside the header line broke the delimiter guess (a 500)."""
    response = client.post(INVOKE, content=body, headers={"content-type": "text/csv"})
    assert response.status_code == 400, response.text[:300]
