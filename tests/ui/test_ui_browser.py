"""The dashboard in a real browser: Playwright driving Debian's chromium (never a downloaded
one) against what `automlops up` runs, with workers processing the uploads for real.

Skips, saying why, when the playwright package or chromium is missing (`make browser`).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_support import DATASET, HOSTILE, LiveServer, hostile_csv, shifted_csv

from automlops import keys
from automlops.demo import breast_cancer_csv

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install -e .[test])"
)
expect = sync_api.expect

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # tests may run as root in containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RUN_TIMEOUT_MS = 120_000  # one pipeline run on a busy 2-core machine, with a margin


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium on PATH: install Debian's chromium package (`make browser`)")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`up` in this process on a fresh workspace: the app, one worker and the watcher."""
    with LiveServer(tmp_path_factory.mktemp("browser-home")) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    """A fresh page that records any dialog (an alert() would mean injected script ran) and
    fails the test on a script error or console error (a CSP violation shows up there)."""
    context = browser.new_context(base_url=live.url, viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.dialogs = []
    errors: list[str] = []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    tab.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    tab.on(
        "response",
        lambda response: (
            errors.append(f"{response.status} {response.url}") if response.status >= 400 else None
        ),
    )
    tab.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    yield tab
    context.close()
    assert errors == []


def _upload_through_form(
    page: Any, path: Path, *, target: str, positive: str = "", dataset: str = ""
) -> None:
    page.goto("/ui/upload")
    if dataset:
        page.get_by_label("Dataset").fill(dataset)
    page.get_by_label("CSV file").set_input_files(str(path))
    # The target list is read from the file's own header by the page's script.
    expect(page.locator("#target option", has_text=target)).to_have_count(1)
    page.get_by_label("Target column").select_option(target)
    if positive:
        page.get_by_label("Positive label").fill(positive)
    page.get_by_label("Time budget (seconds)").fill("1")
    for learner in ("xgboost", "lightgbm"):
        page.get_by_label(learner).uncheck()
    page.get_by_role("button", name="Upload and start").click()
    expect(page).to_have_url(re.compile(r"/ui/runs\?done=uploaded"))


def _wait_for_runs(live: LiveServer, dataset: str, count: int) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        runs = [r for r in live.runtime.runlog.list(dataset) if r.status != "running"]
        if len(runs) >= count:
            return
        time.sleep(0.3)
    raise AssertionError(f"{dataset}: {count} run(s) did not finish in time")


def _images_loaded(page: Any) -> dict[str, Any]:
    page.wait_for_load_state("load")
    # Lazy images below the fold load only when needed: ask for them all, then wait.
    return page.evaluate(
        """async () => {
          const images = Array.from(document.images);
          await Promise.all(images.map((i) => {
            i.loading = "eager";
            if (i.complete) return null;
            return new Promise((done) => {
              i.addEventListener("load", done);
              i.addEventListener("error", done);
            });
          }));
          return {
            count: images.length,
            broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
          };
        }"""
    )


def test_upload_through_the_form_ends_with_a_served_champion_and_its_report(
    page: Any, live: LiveServer, tmp_path: Path
) -> None:
    source = tmp_path / f"{DATASET}.csv"
    source.write_bytes(breast_cancer_csv())
    _upload_through_form(page, source, target="diagnosis", positive="malignant")

    # The run is on the page at once (queued or running) and completes without a reload.
    # ... named by the file's name (its key, in the upload's own folder, on hover).
    expect(page.locator("code.source", has_text=f"{DATASET}.csv").first).to_be_visible()
    finished = page.locator("li.run .run-head .badge-succeeded")
    assert finished.count() == 0  # four stages take seconds: the page came before the end
    expect(finished).to_have_count(1, timeout=RUN_TIMEOUT_MS)  # ... and then updated itself
    expect(page.locator("li.run .seg-succeeded")).to_have_count(4)
    assert page.url.endswith(f"done=uploaded&key={DATASET}.csv&dataset={DATASET}")

    page.get_by_role("link", name="Models", exact=True).click()
    page.get_by_role("link", name=DATASET, exact=True).click()
    expect(page.locator("#v1 .badge-champion")).to_be_visible()
    expect(page.get_by_text("Serving version 1")).to_be_visible()

    page.locator("#v1").get_by_role("link", name="Report").click()
    expect(page.get_by_role("heading", name=f"Evaluation of {DATASET} v1")).to_be_visible()
    loaded = _images_loaded(page)
    assert loaded["count"] >= 4 and loaded["broken"] == [], loaded
    # The full report.html, served from the monitoring bucket, loads its plots too.
    page.get_by_role("link", name="report.html").click()
    loaded = _images_loaded(page)
    assert loaded["count"] >= 4 and loaded["broken"] == [], loaded
    assert page.dialogs == []


def test_rollback_from_the_models_page(page: Any, live: LiveServer, tmp_path: Path) -> None:
    registry = live.runtime.registry
    if registry.read(DATASET).champion is None:  # run alone: make version 1 first
        live.runtime.store.put("data", keys.source_key(DATASET, "a.csv"), breast_cancer_csv())
        _wait_for_runs(live, DATASET, 1)
    runs_before = len(live.runtime.runlog.list(DATASET))
    second = tmp_path / "second.csv"
    second.write_bytes(shifted_csv())
    _upload_through_form(page, second, target="diagnosis", dataset=DATASET)
    _wait_for_runs(live, DATASET, runs_before + 1)

    page.goto(f"/ui/models/{DATASET}")
    if registry.read(DATASET).champion != 2:  # the gate may keep v1; promote by hand then
        page.get_by_role("button", name="Promote version 2 to champion").click()
        expect(page.get_by_text("Version 2 of cancer is now the champion.")).to_be_visible()
    expect(page.locator("#v2 .badge-champion")).to_be_visible()

    rollback = page.get_by_role("button", name="Roll back to version 1")
    rollback.focus()
    page.keyboard.press("Enter")  # keyboard works as well as a click
    expect(page.get_by_text("Rolled back: version 1 of cancer serves again.")).to_be_visible()
    expect(page.locator("#v1 .badge-champion")).to_be_visible()
    expect(page.locator("#v2 .badge-archived")).to_be_visible()
    assert registry.read(DATASET).champion == 1
    assert page.dialogs == []


def test_hostile_column_name_renders_as_text(page: Any, live: LiveServer, tmp_path: Path) -> None:
    source = tmp_path / "hostile.csv"
    source.write_bytes(hostile_csv())
    page.goto("/ui/upload")
    page.get_by_label("CSV file").set_input_files(str(source))
    option = page.locator("#target option").nth(1)
    expect(option).to_have_text(HOSTILE)  # text of an <option>, not markup
    # The drop checkbox label: the name as text.
    expect(page.locator("#drop-choices").get_by_text(HOSTILE, exact=True)).to_be_visible()
    page.get_by_label("Target column").select_option("y")
    page.get_by_label("Time budget (seconds)").fill("1")
    for learner in ("xgboost", "lightgbm"):
        page.get_by_label(learner).uncheck()
    page.get_by_role("button", name="Upload and start").click()
    _wait_for_runs(live, "hostile", 1)

    (run,) = live.runtime.runlog.list("hostile")
    assert run.status == "succeeded", run.error
    page.goto(f"/ui/runs/{run.id}/files/schema.json")
    expect(page.locator("pre.file")).to_contain_text(HOSTILE)
    page.goto("/ui/models/hostile")
    page.get_by_role("link", name="Report").click()
    for path in ("/ui/", "/ui/runs", "/ui/drift/hostile", "/ui/upload", page.url):
        page.goto(path)
        # Only our own script is on the page; nothing injected ran.
        scripts = page.evaluate(
            "() => Array.from(document.scripts).filter(s => s.type !== 'application/json')"
            ".map(s => s.src)"
        )
        assert [s.split("?")[0].rsplit("/", 1)[-1] for s in scripts] == ["app.js"], path
    assert page.dialogs == []
