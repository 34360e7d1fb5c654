"""Every dashboard page over TestClient: empty states, populated pages, escaping, report files."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ui_support import DATASET, HOSTILE

from automlops.local.runtime import LocalRuntime

PAGES = ["/ui/", "/ui/runs", "/ui/models", "/ui/drift", "/ui/dlq", "/ui/upload"]


def _security_headers(response) -> None:  # type: ignore[no-untyped-def]
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_empty_workspace_pages_say_what_to_do(
    tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(tmp_path / "empty")
    expected = {
        "/ui/": "No datasets yet",
        "/ui/runs": "No runs yet",
        "/ui/models": "No models yet",
        "/ui/drift": "No datasets yet",
        "/ui/dlq": "Nothing here",
        "/ui/upload": "Upload a CSV",
        "/ui/models/nothing": "No versions yet",
        "/ui/drift/nothing": "Not measured yet",
    }
    for path, text in expected.items():
        response = client.get(path)
        assert response.status_code == 200, path
        assert text in response.text, path
        _security_headers(response)
    assert "/ui/upload" in client.get("/ui/").text  # the empty state links to the next step
    state = client.get("/ui/api/state").json()
    assert state["runs"] == [] and state["datasets"] == [] and state["dead_letters"] == 0
    assert client.get("/ui", follow_redirects=False).status_code == 307


def test_overview_shows_champion_metric_last_run_and_drift(
    ui_home: Path, client_for: Callable[..., TestClient]
) -> None:
    page = client_for(ui_home).get("/ui/").text
    assert "cancer" in page and "broken" in page
    assert re.search(r"v2\s*<span class=\"muted\">linear</span>", page)
    assert "roc_auc" in page
    assert "badge-failed" in page  # broken's last run
    assert "drift: " in page  # cancer's second upload drifted (mean_radius scaled)


def test_runs_timeline_and_run_detail(
    ui_home: Path, client_for: Callable[..., TestClient], open_home: Callable[[Path], LocalRuntime]
) -> None:
    client = client_for(ui_home)
    runtime = open_home(ui_home)
    runs = runtime.runlog.list()
    page = client.get("/ui/runs").text
    for run in runs:
        assert run.id in page
    assert page.count('class="seg seg-succeeded"') >= 8  # two runs of four stages
    assert "usable rows" in page  # the failed run's error, in full
    # Each run names its upload by the file's name, the full key on hover.
    assert '<code class="source" title="data/cancer/first.csv">first.csv</code>' in page

    done = next(r for r in runs if r.dataset == DATASET and r.model_version == 2)
    detail = client.get(f"/ui/runs/{done.id}").text
    for stage in ("preprocess", "train", "deploy", "evaluate"):
        assert stage in detail
    assert "Lineage of version 2" in detail
    assert f"/ui/models/{DATASET}/versions/2/report" in detail
    assert f"/ui/runs/{done.id}/files/schema.json" in detail
    schema = client.get(f"/ui/runs/{done.id}/files/schema.json")
    assert schema.status_code == 200 and "mean_radius" in schema.text
    assert client.get(f"/ui/runs/{done.id}/files/train.parquet").status_code == 404
    assert client.get("/ui/runs/nope").status_code == 404
    assert client.get("/ui/runs/..%2F..").status_code == 404
    filtered = client.get("/ui/runs", params={"dataset": "broken"}).text
    assert done.id not in filtered


def test_models_page_has_versions_gate_numbers_and_actions(
    ui_home: Path, client_for: Callable[..., TestClient]
) -> None:
    page = client_for(ui_home).get(f"/ui/models/{DATASET}").text
    assert 'id="v1"' in page and 'id="v2"' in page
    assert "badge-champion" in page
    assert "Roll back to version 1" in page
    assert f'action="/ui/models/{DATASET}/promote"' in page
    assert "Candidate vs champion" in page  # v2 was compared with v1 by the gate
    assert "roc_auc" in page


def test_report_page_and_files_come_from_the_monitoring_bucket_only(
    ui_home: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(ui_home)
    page = client.get(f"/ui/models/{DATASET}/versions/2/report").text
    images = re.findall(r'<img src="(/ui/files/[^"]+\.png)"', page)
    assert len(images) >= 4
    for src in images:
        image = client.get(src)
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/png"
        assert image.content.startswith(b"\x89PNG")
    html_link = re.search(r'href="(/ui/files/[^"]+/report\.html)"', page)
    assert html_link
    report = client.get(html_link.group(1))
    assert report.status_code == 200
    assert "default-src 'none'" in report.headers["content-security-policy"]
    assert client.get(html_link.group(1).replace("report.html", "REPORT.md")).status_code == 200
    for bad in (
        "/ui/files/../queue.db",
        "/ui/files/..%2Fqueue.db",
        "/ui/files/%2E%2E/%2E%2E/runs.db",
        "/ui/files/registry/cancer.json",
        "/ui/files/cancer/x.py",
        "/ui/files/",
    ):
        assert client.get(bad).status_code == 404, bad
    missing = client.get(f"/ui/models/{DATASET}/versions/9/report")
    assert missing.status_code == 404


def test_drift_page_lists_most_shifted_columns(
    ui_home: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(ui_home)
    page = client.get(f"/ui/drift/{DATASET}").text
    assert "mean_radius" in page
    assert "badge-drift" in page
    assert 'class="bar bar-current"' in page
    assert re.search(r'<img src="/ui/files/[^"]+drift[^"]*\.png"', page)
    assert '<code class="source" title="data/cancer/second.csv">second.csv</code>' in page
    assert "drift" in client.get("/ui/drift").text


def test_dead_letter_page_and_live_state(
    ui_home: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(ui_home)
    page = client.get("/ui/dlq").text
    assert "evaluate cancer v99" in page
    assert "Redrive all 1" in page
    state = client.get("/ui/api/state").json()
    assert state["dead_letters"] == 1
    assert {d["name"] for d in state["datasets"]} == {"cancer", "broken"}
    assert len(state["fingerprint"]) == 16
    assert client.get("/ui/api/state").json()["fingerprint"] == state["fingerprint"]


def test_every_user_string_is_escaped(
    ui_home: Path, tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    # The dead letter's error holds HTML; so does a run error we plant with a hostile source.
    from ui_support import copy_workspace

    from automlops.local.runtime import open_runtime

    home = copy_workspace(ui_home, tmp_path / "home")
    runtime = open_runtime(home)
    runtime.runlog.start_stage("evil1", "broken", f"data/broken/{HOSTILE}.csv", "preprocess")
    runtime.runlog.finish_stage(
        "evil1", "preprocess", status="failed", error=f"column {HOSTILE!r}", run_status="failed"
    )
    runtime.close()
    client = client_for(home)
    for path in [*PAGES, "/ui/runs/evil1", "/ui/models/broken"]:
        text = client.get(path).text
        assert HOSTILE not in text, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/ui/runs/evil1").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/ui/dlq").text


def test_unknown_names_are_404_not_errors(
    ui_home: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(ui_home)
    assert client.get("/ui/models/..%2Fetc").status_code == 404
    assert client.get("/ui/drift/a%20b").status_code == 404
    assert client.get("/ui/models/cancer/versions/x/report").status_code == 422
    assert client.get("/ui/drift/cancer", params={"run": "../x"}).status_code == 404
    json_refusal = client.get("/ui/runs/nope", headers={"accept": "application/json"})
    assert json_refusal.status_code == 404 and "error" in json_refusal.json()


@pytest.mark.parametrize("path", ["/ui/static/app.css", "/ui/static/app.js"])
def test_static_assets_are_served_locally(
    tmp_path: Path, client_for: Callable[..., TestClient], path: str
) -> None:
    response = client_for(tmp_path / "w").get(path)
    assert response.status_code == 200
    assert "http://" not in response.text and "https://" not in response.text
