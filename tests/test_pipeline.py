"""The four stages end to end on the embedded runtime."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from automlops import keys
from automlops.config import Manifest, Task
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker
from automlops.ml.artifact import ModelArtifact
from automlops.ml.predictor import Predictor
from automlops.registry import VersionStatus
from automlops.tabular.schema import DatasetSchema
from support import DEMO_DATASET, shared_file, upload

CANCER = Manifest(
    dataset="c", target="diagnosis", positive="malignant", task=Task.binary, time_budget_s=2
)


def run_all(runtime: LocalRuntime) -> list:
    finished: list = []
    Worker(runtime, on_run_end=finished.append).run_until_idle()
    return finished


def test_preprocess_writes_stratified_splits_and_a_schema(runtime: LocalRuntime) -> None:
    data = breast_cancer_csv()
    upload(runtime, CANCER, "c.csv", data)
    Worker(runtime).step()  # preprocess only
    [schema_key] = [k for k in runtime.store.list("automl-data") if k.endswith("schema.json")]
    schema = DatasetSchema.model_validate_json(runtime.store.get("automl-data", schema_key))
    rows = schema.rows
    assert rows.total == 569
    # 70/20/10 within one row per class (each class is cut separately).
    assert rows.train + rows.validation + rows.test == 569
    assert abs(rows.train - 398.3) <= 2 and abs(rows.validation - 113.8) <= 2
    parts = {
        name: pl.read_parquet(io.BytesIO(runtime.store.get("automl-data", key)))
        for name, key in schema.split_keys.items()
    }
    rates = [float((p["diagnosis"] == "malignant").mean()) for p in parts.values()]
    assert max(rates) - min(rates) < 0.02  # stratified: same class balance in every part
    assert schema.target.labels == ["benign", "malignant"]
    assert {c.decision for c in schema.columns} == {"feature: numeric", "target"}
    # The transform's imputation values come from the training rows only.
    transform = json.loads(runtime.store.get("automl-data", schema.transform_key))
    first = transform["columns"][0]
    assert first["fill"] == pytest.approx(float(parts["train"][first["name"]].median()))
    tags = runtime.store.get_tags("data", "data/c/c.csv")
    assert tags == {"automlops-processed-run": schema.run_id}


def test_demo_data_becomes_a_champion_with_correct_metrics(trained_home) -> None:
    runtime = open_runtime(trained_home)
    doc = runtime.registry.read(DEMO_DATASET)
    champion = doc.champion_version()
    assert champion is not None and champion.status is VersionStatus.champion
    report = json.loads(runtime.store.get("model-monitoring", champion.report_key))
    md_key = champion.report_key.replace("report.json", "REPORT.md")
    markdown = runtime.store.get("model-monitoring", md_key).decode()
    assert "Confusion matrix" in markdown
    # What a reader needs to judge it: the trivial baseline, why this threshold, the columns.
    assert "trivial baseline" in markdown
    assert "decision threshold on P(malignant)" in markdown
    assert "## Columns: what preprocessing decided" in markdown
    assert "## Most important features" in markdown

    # Recompute the report's metrics in-process with scikit-learn on the same test rows.
    artifact_bytes = runtime.store.get(champion.artifact_bucket, champion.artifact_key)
    predictor = Predictor.from_bytes(artifact_bytes)
    test = pl.read_parquet(io.BytesIO(runtime.store.get("automl-data", champion.test_key)))
    y = (test["diagnosis"] == "malignant").to_numpy().astype(int)
    p = predictor.predict(test.drop("diagnosis")).proba[:, 1]
    threshold = predictor.threshold
    metrics = report["metrics"]
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, p >= threshold))
    assert metrics["f1"] == pytest.approx(f1_score(y, p >= threshold))
    tn, _fp, _fn, tp = report["confusion_matrix"][0] + report["confusion_matrix"][1]
    assert metrics["accuracy"] == pytest.approx((tp + tn) / len(y))
    assert champion.metrics == metrics
    runtime.close()


def test_artifact_holds_only_data(trained_home) -> None:
    runtime = open_runtime(trained_home)
    entry = runtime.registry.read(DEMO_DATASET).get(1)
    import tarfile

    data = runtime.store.get(entry.artifact_bucket, entry.artifact_key)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(tar.getnames())
    meta = ModelArtifact.from_tar_gz(data).metadata
    # Each learner's own format; never a pickle.
    assert meta.model_file in ("model.ubj", "model.lgb.txt", "model.linear.json")
    assert names == sorted(["metadata.json", meta.model_file, "transform.json"])
    assert meta.trials and {t["learner"] for t in meta.trials} <= {"xgboost", "lightgbm", "linear"}
    assert meta.lineage.source_key == "data/cancer/cancer.csv"
    assert meta.lineage.split_keys["test"] == entry.test_key
    assert 0 < meta.threshold < 1
    runtime.close()


def test_a_garbage_file_fails_its_own_run_only(runtime: LocalRuntime) -> None:
    upload(runtime, Manifest(dataset="junk", time_budget_s=2), "junk.csv", bytes(range(256)) * 20)
    upload(runtime, CANCER, "c.csv", breast_cancer_csv())
    finished = run_all(runtime)
    by_dataset = {r.dataset: r for r in finished}
    assert by_dataset["junk"].status == "failed"
    assert "data/junk/junk.csv" in by_dataset["junk"].error
    assert by_dataset["c"].status == "succeeded"
    assert runtime.registry.read("c").champion == 1
    assert runtime.registry.read("junk").versions == []


@pytest.mark.parametrize(
    ("manifest", "data", "problem"),
    [
        (
            Manifest(dataset="m", target="nope"),
            b"a,b\n1,2\n3,4\n",
            "target column 'nope' not found",
        ),
        (
            Manifest(dataset="m", target="b"),
            b"a,b\n" + b"1,x\n" * 30,
            "single class",
        ),
        (Manifest(dataset="m", target="b"), b"a,b\n1,x\n2,y\n", "usable rows"),
    ],
)
def test_permanent_errors_name_the_problem(
    runtime: LocalRuntime, manifest: Manifest, data: bytes, problem: str
) -> None:
    upload(runtime, manifest, "m.csv", data)
    [run] = run_all(runtime)
    assert run.status == "failed"
    assert problem in run.error
    assert run.stages[0].attempts == 1  # permanent: not retried
    assert runtime.queue.counts("object-events") == (0, 0)


def test_duplicate_event_and_duplicate_bytes_make_one_version(runtime: LocalRuntime) -> None:
    data = breast_cancer_csv()
    upload(runtime, CANCER, "c.csv", data)
    # The same notification delivered twice (at-least-once delivery).
    [message] = runtime.queue.receive("object-events", visibility_timeout_s=0)
    runtime.queue.send("object-events", message.body)
    run_all(runtime)
    runtime.store.put("data", "data/c/copy-of-c.csv", data)  # same bytes, other name
    run_all(runtime)
    doc = runtime.registry.read("c")
    assert [v.version for v in doc.versions] == [1]
    # One run for the event delivered twice; the second upload is recorded as a duplicate.
    runs = runtime.runlog.list("c")
    [original] = [r for r in runs if r.duplicate_of is None]
    [duplicate] = [r for r in runs if r.duplicate_of is not None]
    assert duplicate.duplicate_of == original.id
    assert (duplicate.source, duplicate.status) == ("data/c/copy-of-c.csv", "succeeded")
    assert original.status == "succeeded"


def test_a_new_version_is_compared_with_the_champion(runtime: LocalRuntime) -> None:
    data = breast_cancer_csv()
    upload(runtime, CANCER, "c.csv", data)
    run_all(runtime)
    lines = data.decode().splitlines()
    upload(runtime, CANCER, "c2.csv", ("\n".join(lines[:450]) + "\n").encode())
    [second] = run_all(runtime)
    assert second.status == "succeeded"
    doc = runtime.registry.read("c")
    v2 = doc.get(2)
    assert v2.status in (VersionStatus.champion, VersionStatus.rejected)
    report = json.loads(runtime.store.get("model-monitoring", v2.report_key))
    assert report["champion"]["version"] == 1
    comparison = report["comparison"]
    assert comparison["metric"] == "roc_auc"
    assert comparison["lower"] <= comparison["difference"] <= comparison["upper"]
    recorded = v2.decisions[-1].details["comparisons"]["new_test"]
    assert recorded["candidate"] == pytest.approx(comparison["candidate"])


def test_transient_failures_retry_then_dead_letter(runtime: LocalRuntime, monkeypatch) -> None:
    from automlops import stages
    from automlops.routing import Stage
    from automlops.stages import StageSpec

    calls = {"n": 0}
    real = stages.STAGES[Stage.train]

    def flaky(record, ports):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk hiccup")
        return real.run(record, ports)

    runtime.settings.retry_base_s = 0.01
    monkeypatch.setitem(stages.STAGES, Stage.train, StageSpec(identify=real.identify, run=flaky))
    upload(runtime, CANCER, "c.csv", breast_cancer_csv())
    [run] = run_all(runtime)
    assert run.status == "succeeded"
    train = next(s for s in run.stages if s.name == "train")
    assert train.attempts == 2

    def broken(record, ports):  # type: ignore[no-untyped-def]
        raise OSError("disk gone")

    monkeypatch.setitem(stages.STAGES, Stage.train, StageSpec(identify=real.identify, run=broken))
    upload(runtime, CANCER, "other.csv", breast_cancer_csv().replace(b"\n", b"\r\n"))
    [failed] = run_all(runtime)
    assert failed.status == "failed"
    assert "disk gone" in failed.error and "gave up after 4 attempts" in failed.error
    [dead] = runtime.queue.dead_letters("object-events")
    assert "disk gone" in dead.error
    # Redrive once the cause is fixed: the run completes.
    monkeypatch.setitem(stages.STAGES, Stage.train, real)
    assert runtime.queue.redrive("object-events") == 1
    [redone] = run_all(runtime)
    assert redone.status == "succeeded"
    assert redone.id == failed.id


def test_bank_sample_beats_the_reference_recipe(tmp_path) -> None:
    path = shared_file("bank-additional-sample.csv")
    pytest.importorskip("pandas")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import reference_recipe

    runtime = open_runtime(tmp_path)
    manifest = Manifest(
        dataset="bank", target="y", positive="yes", drop=["duration"], time_budget_s=8
    )
    upload(runtime, manifest, path.name, path.read_bytes())
    [run] = run_all(runtime)
    assert run.status == "succeeded", run.error
    champion = runtime.registry.read("bank").champion_version()
    assert champion is not None
    split = {
        name: reference_recipe.read_parquet_bytes(
            runtime.store.get("automl-data", keys.split_key("bank", run.id, name))
        )
        for name in ("train", "test")
    }
    reference_auc = reference_recipe.auc_on_split(split["train"], split["test"])
    assert champion.metrics["roc_auc"] >= reference_auc - 0.01
    assert np.isfinite(champion.metrics["pr_auc"])
    runtime.close()


class _ReadCounting:
    """A store that counts the reads of one object (HEAD hashes a local file, so it counts)."""

    def __init__(self, store: object, key: str) -> None:
        self._store = store
        self._key = key
        self.reads: list[str] = []

    def __getattr__(self, name: str) -> object:
        method = getattr(self._store, name)
        if name not in ("get", "head", "local_file"):
            return method

        def counted(bucket: str, key: str) -> object:
            if key == self._key:
                self.reads.append(name)
            return method(bucket, key)

        return counted


def test_a_preprocess_run_is_named_without_reading_the_upload(runtime: LocalRuntime) -> None:
    from dataclasses import replace as with_store

    from automlops.events import S3Event
    from automlops.stages import preprocess

    key = upload(runtime, CANCER, "c.csv", breast_cancer_csv())
    [message] = runtime.queue.receive(runtime.settings.queues.events)
    [record] = S3Event.model_validate_json(message.body).records
    counting = _ReadCounting(runtime.store, key)
    ports = with_store(runtime.ports(), store=counting)
    run = preprocess.identify(record, ports)  # type: ignore[arg-type]  # a store stand-in
    assert counting.reads == []
    assert run.dataset == "c"
    # Named after the content and manifest: the same bytes under another name are that run.
    again = upload(runtime, CANCER, "copy.csv", breast_cancer_csv())
    [copy] = runtime.queue.receive(runtime.settings.queues.events)
    [copy_record] = S3Event.model_validate_json(copy.body).records
    assert copy_record.key == again
    assert preprocess.identify(copy_record, runtime.ports()) == run
    # Another manifest names another run.
    upload(runtime, CANCER.model_copy(update={"seed": 7}), "c.csv", breast_cancer_csv())
    assert preprocess.identify(record, runtime.ports()) != run


def test_an_upload_replaced_before_its_run_is_left_to_the_replacements_run(
    runtime: LocalRuntime,
) -> None:
    data = breast_cancer_csv()
    upload(runtime, CANCER, "c.csv", data)
    upload(runtime, CANCER, "c.csv", data + data.splitlines(keepends=True)[-1])  # replaced
    finished = run_all(runtime)
    by_status = sorted((r.status, r.error or "") for r in finished)
    assert [status for status, _ in by_status] == ["failed", "succeeded"], by_status
    assert "was replaced after this notification" in by_status[0][1]
    # The run that succeeded processed the bytes its name was made from: the replacement's.
    [schema_key] = [k for k in runtime.store.list("automl-data") if k.endswith("schema.json")]
    schema = DatasetSchema.model_validate_json(runtime.store.get("automl-data", schema_key))

    assert (
        schema.source_sha256
        == hashlib.sha256(runtime.store.get("data", "data/c/c.csv")).hexdigest()
    )


def test_the_worker_acknowledges_the_s3_test_event_as_lambda_does(runtime: LocalRuntime) -> None:
    events = runtime.settings.queues.events
    runtime.queue.send(events, json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}))
    assert Worker(runtime).step()
    assert runtime.queue.counts(events) == (0, 0)
    assert runtime.queue.dead_letters(events) == []
    assert runtime.runlog.list() == []
