"""Screenshots of the dashboard for the README: `make screenshots` (or run this file).

Builds a throw-away workspace with the real pipeline (the demo data, a drifted second upload, a
failed upload and a dead letter), serves it as `automlops up` does and photographs the main
pages with Playwright driving Debian's chromium, at laptop and phone sizes.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from playwright.sync_api import sync_playwright

from automlops import keys
from automlops.config import Manifest, Task
from automlops.demo import breast_cancer_csv
from automlops.local.model_host import EmbeddedServer
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker
from automlops.manifests import save_manifest
from automlops.ui import LiveProgress
from automlops.ui.up import Background, build_app

DATASET = "breast-cancer"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Lazy plots below the fold load only when scrolled to: a full-page photo needs them all now.
EAGER_IMAGES = """async () => {
  await Promise.all(Array.from(document.images).map((i) => {
    i.loading = "eager";
    return i.complete ? null : new Promise((done) => {
      i.addEventListener("load", done);
      i.addEventListener("error", done);
    });
  }));
}"""


def _shifted(data: bytes) -> bytes:
    frame = pl.read_csv(io.BytesIO(data)).with_columns(pl.col("mean_radius") * 1.6)
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()


def _put(runtime: LocalRuntime, manifest: Manifest, filename: str, data: bytes) -> None:
    save_manifest(runtime.store, runtime.settings.buckets.data, manifest)
    runtime.store.put(
        runtime.settings.buckets.data, keys.source_key(manifest.dataset, filename), data
    )


def build(home: Path) -> LocalRuntime:
    """Two versions (the second drifted), a failed upload and a dead letter."""
    runtime = open_runtime(home)
    manifest = Manifest(
        dataset=DATASET,
        target="diagnosis",
        positive="malignant",
        task=Task.binary,
        time_budget_s=3,
        learners=["linear", "xgboost"],
    )
    _put(runtime, manifest, "cancer-2024-01.csv", breast_cancer_csv())
    Worker(runtime).run_until_idle()
    _put(runtime, manifest, "cancer-2024-02.csv", _shifted(breast_cancer_csv()))
    Worker(runtime).run_until_idle()
    if runtime.registry.read(DATASET).champion != 2:
        runtime.registry.promote(DATASET, 2, "promoted by operator")
    _put(runtime, Manifest(dataset="churn", target="churned"), "churn.csv", b"plan,churned\n")
    Worker(runtime).run_until_idle()
    queue = runtime.settings.queues.evaluation
    runtime.queue.send(queue, json.dumps({"dataset": DATASET, "version": 3}))
    (message,) = runtime.queue.receive(queue)
    runtime.queue.dead_letter(
        queue,
        message.receipt_handle,
        "ConnectError: endpoint breast-cancer/versions/3 did not answer (gave up after 4 attempts)",
    )
    return runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="automlops-shots-"))
    runtime = build(home)
    progress = LiveProgress()
    server = EmbeddedServer(build_app(runtime, progress=progress))
    background = Background(runtime, workers=1, progress=progress, watch_interval_s=0.5)
    server.start()
    background.start()
    shots: list[Path] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=LAUNCH_ARGS)
            laptop = browser.new_page(base_url=server.url, viewport={"width": 1280, "height": 860})

            def shoot(page, path: str, name: str, full: bool = True) -> None:  # type: ignore[no-untyped-def]
                page.goto(path)
                page.evaluate(EAGER_IMAGES)
                page.wait_for_load_state("networkidle")
                target = args.out / f"dashboard-{name}.png"
                page.screenshot(path=str(target), full_page=full)
                shots.append(target)

            entry = runtime.registry.read(DATASET).get(2)
            shoot(laptop, "/ui/", "overview")
            shoot(laptop, f"/ui/models/{DATASET}", "models")
            shoot(laptop, f"/ui/models/{DATASET}/versions/2/report", "report")
            shoot(laptop, f"/ui/drift/{DATASET}", "drift", full=False)
            shoot(laptop, f"/ui/runs/{entry.run_id}", "run")
            shoot(laptop, "/ui/dlq", "dead-letters")
            laptop.goto("/ui/upload")
            sample = home / "cancer-2024-03.csv"
            sample.write_bytes(breast_cancer_csv())
            laptop.get_by_label("Dataset").fill(DATASET)
            laptop.get_by_label("CSV file").set_input_files(str(sample))
            laptop.wait_for_timeout(300)
            laptop.screenshot(path=str(args.out / "dashboard-upload.png"), full_page=True)
            shots.append(args.out / "dashboard-upload.png")
            # A run in progress: upload, then photograph the runs page while it trains.
            laptop.get_by_role("button", name="Upload and start").click()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                runs = runtime.runlog.list(DATASET)
                if any(s.name == "train" and s.status == "running" for s in runs[0].stages):
                    break
                time.sleep(0.2)
            laptop.wait_for_timeout(2500)  # one live update with the trial progress
            laptop.screenshot(path=str(args.out / "dashboard-runs.png"), full_page=False)
            shots.append(args.out / "dashboard-runs.png")

            phone = browser.new_page(
                base_url=server.url,
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
            )
            shoot(phone, "/ui/", "phone-overview", full=False)
            browser.close()
    finally:
        background.stop(grace_s=10)
        server.stop()
        runtime.close()
        shutil.rmtree(home, ignore_errors=True)
    for shot in shots:
        print(f"wrote {shot} ({shot.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
