"""The dashboard's Score page (issue 17): a file submitted from the page is scored by a worker,
its run and predictions are shown and downloaded, and a row picked from the scored file or
pasted as JSON or CSV is explained, with contributions that add up to the model's score."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient
from ui_support import DATASET, HOSTILE, csrf_of

from automlops import keys
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker
from automlops.ml.explain.table import explanation_frame
from automlops.ml.predictor import Predictor
from automlops.ui.score import explain_rows, pasted_rows, score_filename, stored_explanation

ROWS = 30


def _sample() -> tuple[bytes, list[dict[str, str]]]:
    """The first demo rows without the target, the third row's radius unreadable."""
    frame = pl.read_csv(io.BytesIO(breast_cancer_csv()), n_rows=ROWS).drop("diagnosis")
    text = frame.cast(pl.String).with_columns(
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit("not-a-number"))
        .otherwise(pl.col("mean_radius"))
        .alias("mean_radius")
    )
    buffer = io.BytesIO()
    text.write_csv(buffer)
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue().decode())))
    return buffer.getvalue(), rows


def _submit(client: TestClient, data: bytes, **fields: str) -> TestClient:
    token = csrf_of(client, "/ui/score")
    return client.post(
        "/ui/score",
        data={"csrf_token": token, "dataset": DATASET, **fields},
        files={"file": ("../../month 1.csv", data, "text/csv")},
        follow_redirects=False,
    )


def test_a_file_submitted_on_the_score_page_is_scored_shown_and_downloaded(
    own_home: Path,
    client_for: Callable[..., TestClient],
    open_home: Callable[[Path], LocalRuntime],
) -> None:
    client = client_for(own_home)
    runtime = open_home(own_home)
    data, _ = _sample()
    response = _submit(client, data)
    assert response.status_code == 303, response.text
    page_url = response.headers["location"].split("?")[0]
    assert page_url.startswith(f"/ui/score/{DATASET}/")
    # The file went in under a safe name, with the champion pinned in its options.
    bucket = runtime.settings.buckets.data
    assert runtime.store.head(bucket, keys.score_key(DATASET, "month_1.csv")) is not None
    waiting = client.get(page_url)
    assert waiting.status_code == 200 and "Waiting for a worker" in waiting.text

    Worker(runtime).run_until_idle()
    page = client.get(page_url)
    assert page.status_code == 200
    assert f"{ROWS - 1} of {ROWS} rows with version 2" in page.text
    listed = client.get("/ui/score")
    assert page_url in listed.text and "month_1.csv" in listed.text

    download = client.get(f"{page_url}/predictions")
    assert download.status_code == 200
    assert "attachment" in download.headers["content-disposition"]
    scored = pl.read_csv(io.BytesIO(download.content))
    assert scored.height == ROWS - 1
    assert {"prediction", "probability_benign", "probability_malignant"} <= set(scored.columns)
    errors = client.get(f"{page_url}/errors.csv")
    assert errors.status_code == 200
    assert errors.text.splitlines()[1:] == [  # the third data row, and why
        "3,mean_radius,cannot read 'not-a-number' as a number"
    ]

    # A row picked from the preview is explained by the version that scored the file.
    picked = client.get(f"{page_url}?row=0")
    assert picked.status_code == 200
    assert "Why row 1" in picked.text and "Every column, by version 2" in picked.text
    assert "mean_radius" in picked.text
    assert client.get(f"{page_url}?row=999").status_code == 404
    assert client.get(f"/ui/score/{DATASET}/no-such-run/predictions").status_code == 404
    assert 'id="missing-columns"' not in page.text  # the file has every model column

    # A file without one of the model's columns: scored, and the page says which is missing.
    lacking = pl.read_csv(io.BytesIO(data)).drop("worst_area").write_csv().encode()
    response = _submit(client, lacking)
    Worker(runtime).run_until_idle()
    page = client.get(response.headers["location"].split("?")[0])
    assert "scored as missing values: <code>worst_area</code>" in page.text


def test_a_pasted_row_is_explained_the_same_as_json_or_csv_and_adds_up(
    ui_home: Path,
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(ui_home)
    _, rows = _sample()
    row = rows[0]
    as_csv = ",".join(row) + "\n" + ",".join(row.values())
    as_json = "{" + ", ".join(f'"{k}": {v}' for k, v in row.items()) + f', "{HOSTILE}": 1' + "}"
    token = csrf_of(client, "/ui/score")
    answers = []
    for text in (as_json, as_csv):
        page = client.post(
            "/ui/score/explain", data={"csrf_token": token, "dataset": DATASET, "row": text}
        )
        assert page.status_code == 200, page.text
        assert "Answered by version 2" in page.text
        answers.append(re.findall(r'class="num">([+-][0-9.]+)<', page.text))
    assert answers[0] and answers[0] == answers[1]
    assert HOSTILE not in page.text  # the unknown column named in the JSON is shown escaped
    bad = client.post(
        "/ui/score/explain", data={"csrf_token": token, "dataset": DATASET, "row": "{oops"}
    )
    assert bad.status_code == 400 and "not valid JSON" in bad.text

    # The numbers behind the page: base + contributions = the log-odds of P(malignant).
    models = client.app.state.models  # type: ignore[attr-defined]  # FastAPI's app.state
    explained = explain_rows(models, DATASET, None, pasted_rows(as_csv))
    (answer,) = explained["rows"]
    (output,) = answer["outputs"]
    p = answer["prediction"]["probabilities"]["malignant"]
    total = output["base"] + sum(c["value"] for c in output["contributions"])
    assert math.isclose(total, math.log(p / (1 - p)), abs_tol=1e-4)
    assert {c["column"] for c in output["contributions"]} == set(row)


def test_scoring_from_the_page_needs_the_form_token_and_a_scorable_file(
    own_home: Path,
    client_for: Callable[..., TestClient],
    open_home: Callable[[Path], LocalRuntime],
) -> None:
    client = client_for(own_home)
    runtime = open_home(own_home)
    data, _ = _sample()
    refused = client.post(
        "/ui/score",
        data={"dataset": DATASET},
        files={"file": ("a.csv", data, "text/csv")},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    token = csrf_of(client, "/ui/score")
    for fields, message in (
        ({"dataset": "broken"}, "broken"),  # no champion
        ({"dataset": DATASET, "version": "x"}, "whole number"),
    ):
        page = client.post(
            "/ui/score",
            data={"csrf_token": token, **fields},
            files={"file": ("b.csv", data, "text/csv")},
        )
        assert page.status_code == 400 and message in page.text
    page = client.post(
        "/ui/score",
        data={"csrf_token": token, "dataset": DATASET},
        files={"file": ("b.txt", data, "text/plain")},
    )
    assert page.status_code == 400 and "only .csv and .parquet" in page.text
    stored = runtime.store.list(runtime.settings.buckets.data, "score/")
    assert all("b." not in key for key in stored)


def test_score_file_names_are_made_safe() -> None:
    assert score_filename("C:\\Users\\me\\jan 2026.parquet") == "jan_2026.parquet"
    assert score_filename("../../.hidden.csv") == "hidden.csv"
    assert score_filename("x" * 300 + ".csv").endswith(".csv")


def test_contribution_columns_of_a_scored_file_are_read_back_per_output(ui_home: Path) -> None:
    """The columns batch scoring writes with --explain K (ml/explain/table.py) are shown for a
    picked row: base, then each column and its contribution, largest first."""
    runtime = open_runtime(ui_home)
    try:
        entry = runtime.registry.read(DATASET).get(2)
        artifact = runtime.store.get(entry.artifact_bucket, entry.artifact_key)
    finally:
        runtime.close()
    predictor = Predictor.from_bytes(artifact)
    _, rows = _sample()
    explanation = predictor.explain_rows(rows[:2], k=3).explanation
    written = explanation_frame(explanation).cast(pl.String)
    columns = ["mean_radius", "prediction", *written.columns]
    row = {"mean_radius": "17.99", "prediction": "malignant", **written.row(1, named=True)}
    (output,) = stored_explanation(columns, row)
    order, kept = explanation.top()
    assert output["base"] == written["base"][1]
    assert [c["column"] for c in output["contributions"]] == [
        explanation.columns[i] for i in order[1, 0]
    ]
    assert [float(c["value"]) for c in output["contributions"]] == pytest.approx(kept[1, 0])
    # Several outputs (multiclass) are told apart by their [label] suffix.
    several = stored_explanation(
        [
            "base[a]",
            "column_1[a]",
            "contribution_1[a]",
            "base[b]",
            "column_1[b]",
            "contribution_1[b]",
        ],
        {
            "base[a]": "0.1",
            "column_1[a]": "x",
            "contribution_1[a]": "0.5",
            "base[b]": "0.2",
            "column_1[b]": "y",
            "contribution_1[b]": "-0.5",
        },
    )
    assert [(o["name"], o["base"], o["contributions"]) for o in several] == [
        ("a", "0.1", [{"column": "x", "value": "0.5"}]),
        ("b", "0.2", [{"column": "y", "value": "-0.5"}]),
    ]


def test_a_file_scored_with_an_id_column_only_is_not_explained_from_its_output(
    own_home: Path,
    client_for: Callable[..., TestClient],
    open_home: Callable[[Path], LocalRuntime],
) -> None:
    client = client_for(own_home)
    data, _ = _sample()
    response = _submit(client, data, id_column="mean_texture")
    assert response.status_code == 303, response.text
    page_url = response.headers["location"].split("?")[0]
    Worker(open_home(own_home)).run_until_idle()
    picked = client.get(f"{page_url}?row=0")
    assert picked.status_code == 200
    assert "keeping only &#39;mean_texture&#39;" in picked.text
    assert "Every column, by version" not in picked.text  # no explanation of imputed values


def test_the_score_page_reads_and_acts_with_the_key_as_the_others(
    ui_home: Path, client_for: Callable[..., TestClient]
) -> None:
    key = "s3cret-key-for-tests"
    protected = client_for(ui_home, api_key=key, protect_ui=True)
    for path in ("/ui/score", f"/ui/score/{DATASET}/0123456789abcdef/predictions"):
        response = protected.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/ui/login?next=")
    # Reading is open without --protect-ui; scoring and explaining need the key.
    keyed = client_for(ui_home, api_key=key)
    token = csrf_of(keyed, "/ui/score")
    data, rows = _sample()
    refused = keyed.post(
        "/ui/score",
        data={"csrf_token": token, "dataset": DATASET},
        files={"file": ("a.csv", data, "text/csv")},
    )
    assert refused.status_code == 401
    row = ",".join(rows[0]) + "\n" + ",".join(rows[0].values())
    explain = {"dataset": DATASET, "row": row}
    assert keyed.post("/ui/score/explain", data={"csrf_token": token, **explain}).status_code == 401
    answered = keyed.post("/ui/score/explain", data=explain, headers={"x-api-key": key})
    assert answered.status_code == 200 and "Answered by version 2" in answered.text
