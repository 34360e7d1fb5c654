"""Poison inputs: every kind in poison_cases.py goes through one workspace with live workers.

One module-scoped run: a healthy upload before and after the poison, every poison case, and
workers that must survive all of it. Each case then has its own test of what became of it.
Nothing may appear outside the workspace, nor inside it outside the bucket folders.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from poison_cases import CASES, FORMULA, FORMULA_COLUMN, SCRIPT, PoisonCase
from reliability_support import fast_manifest, files_under, record, small_csv

from automlops import keys
from automlops.errors import PermanentError
from automlops.events import object_created
from automlops.local.runlog import RunRecord
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker, run_workers
from automlops.manifests import save_manifest

UPLOAD_LIMIT = 8 * 1024 * 1024
_WORKSPACE_FILES = re.compile(r"^(queue|runs)\.db(-wal|-shm|-journal)?$")


@dataclass
class Poisoned:
    """What the shared run left: the workspace and, per case, its key and runs."""

    home: Path
    runtime: LocalRuntime
    keys: dict[str, str]
    refused: dict[str, str]
    runs: list[RunRecord]
    worker_error: BaseException | None
    outside_before: set[Path]
    outside_after: set[Path]
    elapsed_s: float

    def runs_of(self, key: str) -> list[RunRecord]:
        return [r for r in self.runs if r.source == key]


def _dataset(index: int) -> str:
    return f"p{index:02d}"


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Poisoned]:
    root = tmp_path_factory.mktemp("poison")
    (root / "outside").mkdir()
    (root / "outside" / "sentinel.txt").write_text("must stay alone")
    home = root / "home"
    runtime = open_runtime(home)
    runtime.settings.max_upload_bytes = UPLOAD_LIMIT
    runtime.settings.retry_base_s = 0.05  # the one transient case retries quickly
    data_bucket = runtime.settings.buckets.data

    def put(dataset: str, filename: str, data: bytes, **manifest: object) -> str:
        save_manifest(runtime.store, data_bucket, fast_manifest(dataset, **manifest))
        key = keys.source_key(dataset, filename)
        runtime.store.put(data_bucket, key, data)
        return key

    put("control-before", "healthy.csv", small_csv(80, seed=11))
    case_keys: dict[str, str] = {}
    refused: dict[str, str] = {}
    for index, case in enumerate(CASES):
        if case.key is not None:
            event = object_created(
                data_bucket, case.key, size=0, etag="", configuration_id="forged"
            )
            runtime.queue.send(runtime.settings.queues.events, event.model_dump_json(by_alias=True))
            case_keys[case.kind] = case.key
            continue
        data = case.data
        if case.kind == "over the size limit":
            data = data + b"41,12.5,red,yes\n" * (UPLOAD_LIMIT // 16 + 1)
        try:
            case_keys[case.kind] = put(_dataset(index), case.filename, data, **case.manifest)
        except PermanentError as exc:
            refused[case.kind] = str(exc)
    put("control-after", "healthy.csv", small_csv(80, seed=12))

    outside_before = files_under(root) - files_under(home)
    started = time.monotonic()
    error: BaseException | None = None
    try:
        # Three workers: cases are independent, and training time is wall-clock budgeted.
        run_workers([Worker(runtime) for _ in range(3)], until_idle=True)
    except BaseException as exc:  # the assertion below reports it; the cases still run
        error = exc
    elapsed = time.monotonic() - started
    yield Poisoned(
        home=home,
        runtime=runtime,
        keys=case_keys,
        refused=refused,
        runs=runtime.runlog.list(),
        worker_error=error,
        outside_before=outside_before,
        outside_after=files_under(root) - files_under(home),
        elapsed_s=elapsed,
    )
    runtime.close()


def test_workers_survive_and_healthy_runs_are_unaffected(poisoned: Poisoned) -> None:
    assert poisoned.worker_error is None
    for dataset in ("control-before", "control-after"):
        [run] = [r for r in poisoned.runs if r.dataset == dataset]
        assert run.status == "succeeded", run
    assert not any(r.status == "running" for r in poisoned.runs)
    record(
        "poison_summary",
        {
            "kinds": len(CASES),
            "runs": len(poisoned.runs),
            "worker_crashes": 0,
            "controls_succeeded": 2,
            "elapsed_s": round(poisoned.elapsed_s, 1),
        },
    )


def test_nothing_escapes_the_bucket_folders(poisoned: Poisoned) -> None:
    assert poisoned.outside_after == poisoned.outside_before
    allowed = {*poisoned.runtime.settings.buckets.all(), ".meta"}
    for path in files_under(poisoned.home):
        relative = path.relative_to(poisoned.home)
        assert relative.parts[0] in allowed or _WORKSPACE_FILES.match(str(relative)), relative
        assert not path.is_symlink(), relative


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_poison_input(poisoned: Poisoned, case: PoisonCase) -> None:
    if case.expect == "refused":
        assert case.kind in poisoned.refused, "the store accepted the key"
        assert case.message is None or case.message in poisoned.refused[case.kind]
        _record(case, "refused by the store", poisoned.refused[case.kind], attempts=0)
        return
    assert case.kind not in poisoned.refused, poisoned.refused.get(case.kind)
    runs = poisoned.runs_of(poisoned.keys[case.kind])
    assert len(runs) == 1, runs
    [run] = runs
    assert run.status == case.expect, run.error
    attempts = max(s.attempts for s in run.stages)
    if case.expect == "failed":
        assert run.error is not None
        assert case.message is None or case.message in run.error, run.error
        # Permanent problems fail at once; only a transient one is retried.
        assert (attempts > 1) == case.retried, run.stages
        _record(case, "failed", run.error, attempts=attempts)
        return
    assert run.model_version is not None
    version = poisoned.runtime.registry.read(run.dataset).get(run.model_version)
    assert version.report_key is not None
    _record(case, "succeeded", f"v{run.model_version} {version.status.value}", attempts=attempts)


def test_dead_letter_queue_holds_only_the_transient_case(poisoned: Poisoned) -> None:
    runtime = poisoned.runtime
    dead = runtime.queue.dead_letters(runtime.settings.queues.events)
    retried = [c for c in CASES if c.retried]
    assert len(dead) == len(retried)
    for message in dead:
        assert any(poisoned.keys[c.kind].split("/")[-1] in message.body for c in retried)


FORMULA_CASE = next(c for c in CASES if c.kind == "Excel formula cells")
MARKUP_CASE = next(c for c in CASES if c.kind == "HTML in names and cells")
FORMULAS = (FORMULA, FORMULA_COLUMN, "=1+1", "@SUM(A1:A9)")


def test_report_html_escapes_markup(poisoned: Poisoned) -> None:
    page = _report(poisoned, MARKUP_CASE, "html")
    nodes = _html_text_nodes(page)
    shown = [n for n in nodes if SCRIPT in n or "<img src=x" in n]
    assert shown  # the hostile column and label are shown, as text...
    assert "<script>alert(1)" not in page and "<img src=x" not in page  # ...never as markup
    record("report_escaping", {"kind": MARKUP_CASE.kind, "file": "report.html", "ok": True})


def test_report_markdown_escapes_markup(poisoned: Poisoned) -> None:
    markdown = _report(poisoned, MARKUP_CASE, "markdown")
    assert "<script" not in markdown and "<img" not in markdown  # renderers may run raw HTML
    record("report_escaping", {"kind": MARKUP_CASE.kind, "file": "REPORT.md", "ok": True})


@pytest.mark.parametrize("kind", ["html", "markdown"])
def test_report_cells_never_start_with_a_formula(poisoned: Poisoned, kind: str) -> None:
    document = _report(poisoned, FORMULA_CASE, kind)
    if kind == "html":
        cells = _html_text_nodes(document)
    else:
        cells = [cell for line in document.splitlines() for cell in _markdown_cells(line)]
    # A spreadsheet opening the table runs a cell starting with = + - @. Shown neutralised
    # (quoted, code-spanned, escaped, or inside other text) is fine.
    for cell in cells:
        for formula in FORMULAS:
            assert not cell.startswith(formula.split("|")[0]), f"cell {cell[:80]!r}"
    file = "report.html" if kind == "html" else "REPORT.md"
    record("report_escaping", {"kind": FORMULA_CASE.kind, "file": file, "ok": True})


def _report(poisoned: Poisoned, case: PoisonCase, kind: str) -> str:
    """One report file (html, markdown) of the model a case's upload produced."""
    [run] = poisoned.runs_of(poisoned.keys[case.kind])
    assert run.model_version is not None, run.error
    version = poisoned.runtime.registry.read(run.dataset).get(run.model_version)
    assert version.report_key is not None
    key = keys.report_files(version.report_key)[kind]
    return poisoned.runtime.store.get(
        poisoned.runtime.settings.buckets.model_monitoring, key
    ).decode()


class _TextNodes(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.nodes: list[str] = []

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.nodes.append(data.strip())


def _html_text_nodes(page: str) -> list[str]:
    parser = _TextNodes()
    parser.feed(page)
    return parser.nodes


def _markdown_cells(line: str) -> list[str]:
    """Table cells (split on unescaped |) or the text of a list item or line."""
    stripped = line.strip()
    if stripped.startswith("|"):
        return [c.strip() for c in re.split(r"(?<!\\)\|", stripped.strip("|"))]
    return [stripped.removeprefix("- ").strip()]


def _record(case: PoisonCase, outcome: str, detail: str, *, attempts: int) -> None:
    record(
        "poison",
        {
            "kind": case.kind,
            "input": case.description,
            "expected": case.expect,
            "outcome": outcome,
            "detail": detail.replace("\x00", "\\x00")[:160],
            "attempts": attempts,
        },
    )
