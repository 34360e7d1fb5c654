"""report.html: escaped, self-contained, and its plots load in a real browser (headless Chromium).

Chromium is Debian's `chromium` package (`make browser` installs it); without it the browser
tests skip and say so.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from automlops.config import Task
from automlops.local.runtime import open_runtime
from automlops.ml.evaluation import drift
from automlops.ml.evaluation.gate import compare, decide
from automlops.ml.tuning.outcome import (
    EnsembleMember,
    Refit,
    RefitStatus,
    SearchRows,
    Selection,
    SelectionData,
)
from automlops.reports.bundle import report_bundle
from automlops.reports.report import (
    ChampionSummary,
    DecisionSummary,
    EvaluationReport,
    render_markdown,
)
from support import DEMO_DATASET

HOSTILE = '<img src=x onerror="window.pwned=1">'
SCRIPT = "<script>window.pwned=1</script>"

# Appended to a copy of the page: after load, list images that did not decode.
CHECKER = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const result = {
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    scripts: document.scripts.length,
    pwned: Boolean(window.pwned),
  };
  const out = document.createElement("pre");
  out.id = "checked";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium on PATH: install Debian's chromium package (`make browser`)")


def _load_in_browser(folder: Path) -> dict:
    """Open folder/report.html in headless Chromium; what the page's images did."""
    page = folder / "report.html"
    checked = folder / "checked.html"
    checked.write_text(page.read_text().replace("</body>", CHECKER + "</body>"))
    result = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",  # tests may run as root in containers
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
            checked.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    found = re.search(r'<pre id="checked">(.*?)</pre>', result.stdout, re.S)
    assert found, f"chromium printed no result: {result.returncode} {result.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def _synthetic_report() -> tuple[EvaluationReport, np.ndarray, np.ndarray, np.ndarray]:
    """A report with every section and user strings that try to inject markup."""
    r = np.random.default_rng(0)
    y = r.integers(0, 2, 200)
    cand = np.clip(0.3 * y + 0.7 * r.random(200), 0, 1)
    champ = np.clip(0.2 * y + 0.8 * r.random(200), 0, 1)
    comparisons = {
        "new_test": compare(Task.binary, y, cand, champ),
        "champion_test": compare(Task.binary, y[:120], cand[:120], champ[:120]),
    }
    gate = decide({}, {"min_roc_auc": 0.5}, comparisons, champion_version=1)
    details = gate.details(
        {
            "new_test": {"title": "the new upload's test split", "key": f"k/{HOSTILE}"},
            "champion_test": {"title": "the champion's own test split", "key": "k/t.parquet"},
        }
    )
    base = pl.DataFrame({"x": r.normal(0, 1, 500), SCRIPT: r.choice(["a", HOSTILE], 500)})
    now = pl.DataFrame({"x": r.normal(2, 1, 300), SCRIPT: r.choice(["a", "b"], 300)})
    columns, new, vanished, _ = drift.compare_frames(
        base, now, {"x": "numeric", SCRIPT: "categorical"}
    )
    drift_report = drift.DriftReport(
        dataset="d",
        run_id="r",
        source_key="data/d/x.csv",
        created_at="now",
        action="warn",
        baseline=drift.BaselineRef(version=1, run_id="r0", train_key="t", rows=500),
        rows=300,
        columns=columns,
        new_columns=new,
        vanished_columns=vanished,
        drifted=[c.name for c in columns if c.drifted],
    )
    report = EvaluationReport(
        dataset="d",
        version=2,
        run_id="r",
        created_at="now",
        task="binary",
        learner="xgboost",
        endpoint="d/versions/2",
        test_key="automl/d/r/test.parquet",
        rows=200,
        labels=[HOSTILE, SCRIPT],
        threshold=0.5,
        metrics={"roc_auc": 0.8, "n": 200.0},
        confusion_matrix=[[80, 20], [30, 70]],
        champion=ChampionSummary(version=1, metrics={"roc_auc": 0.7}),
        comparisons=list(details["comparisons"].values()),
        floors=details["floors"],
        decision=DecisionSummary(status="champion", reason=f"{gate.reason} {SCRIPT}"),
        importances={SCRIPT: 0.6, "x": 0.4, "$\\alpha$ rate": 0.1},
        drift={"key": "automl/d/r/drift.json", **drift_report.model_dump()},
        lineage={"source": f"data/d/{HOSTILE}.csv"},
    )
    return report, y, cand, champ


def test_user_strings_are_escaped_and_every_section_renders(tmp_path: Path) -> None:
    report, y, cand, champ = _synthetic_report()
    files = report_bundle(report, y, cand, champ)
    page = files["report.html"].decode()
    assert SCRIPT not in page and HOSTILE not in page
    assert html.escape(SCRIPT, quote=False) in page
    assert "<script" not in page  # the page itself runs no code
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    expected = {
        "roc.png",
        "pr.png",
        "confusion.png",
        "calibration.png",
        "importance.png",
        "comparison.png",
        "drift.png",
    }
    assert expected <= set(files)
    for name in expected:
        assert files[name].startswith(b"\x89PNG") and f'src="{name}"' in page
    assert list(files)[-1] == "report.json"  # written last


def test_synthetic_report_loads_its_images_in_chromium(tmp_path: Path) -> None:
    report, y, cand, champ = _synthetic_report()
    for name, data in report_bundle(report, y, cand, champ).items():
        (tmp_path / name).write_bytes(data)
    result = _load_in_browser(tmp_path)
    assert result["images"] >= 9
    assert result["broken"] == []
    assert result["pwned"] is False
    assert result["scripts"] == 1  # only the checker the test appended


def test_pipeline_report_loads_its_images_in_chromium(trained_home: Path, tmp_path: Path) -> None:
    runtime = open_runtime(trained_home)
    champion = runtime.registry.read(DEMO_DATASET).champion_version()
    runtime.close()
    assert champion is not None and champion.report_key
    folder = trained_home / "model-monitoring" / champion.report_key.removesuffix("report.json")
    shutil.copytree(folder, tmp_path / "report")
    result = _load_in_browser(tmp_path / "report")
    assert result["images"] >= 5  # ROC, PR, confusion, calibration, importance
    assert result["broken"] == []


def test_typed_selection_and_refit_are_rendered_as_sentences() -> None:
    def report(selection: Selection | str | None, refit: Refit | str | None) -> str:
        return render_markdown(
            EvaluationReport(
                dataset="d",
                version=1,
                run_id="r",
                created_at="now",
                task="binary",
                selection=selection,
                refit=refit,
                endpoint="e",
                test_key="k",
                rows=2,
                metrics={},
                decision=DecisionSummary(status="champion", reason="first"),
            )
        )

    rows = SearchRows(train=900, validation=300)
    cv = Selection(
        data=SelectionData.cross_validation, folds=5, search_rows=rows, metric="roc_auc", score=0.9
    )
    stopped = Refit(status=RefitStatus.time_limit, rows=1200, rounds=40, wanted_rounds=90)
    text = report(cv, stopped)
    assert "- chosen by: 5-fold cross-validation\n" in text
    assert "- fitted on: all 1200 training and validation rows; stopped at 40 of 90 rounds" in text

    def member(learner: str, trial: int, weight: float, status: RefitStatus) -> EnsembleMember:
        refit = Refit(status=status, rows=1200 if status is RefitStatus.all_rows else 900)
        return EnsembleMember(
            trial=trial, learner=learner, weight=weight, params={}, rounds=None, refit=refit
        )

    ensemble = Selection(
        data=SelectionData.validation_split,
        search_rows=rows,
        metric="roc_auc",
        score=0.9,
        members=[
            member("linear", 0, 0.75, RefitStatus.all_rows),
            member("lightgbm", 4, 0.25, RefitStatus.no_time),
        ],
    )
    text = report(ensemble, None)
    assert "- chosen by: validation split; ensemble of linear \\#0 0.75, lightgbm \\#4 0.25" in text
    assert (
        "- fitted on: each member on all 1200 training and validation rows except lightgbm "
        "\\#4 on the training rows only (no time left to refit)"
    ) in text
    # Artifacts written before the fields were typed carry prose: shown as it is.
    text = report("validation split", "all 10 rows")
    assert "- chosen by: validation split\n- fitted on: all 10 rows\n" in text
