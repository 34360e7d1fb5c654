"""The data-folder watcher: a CSV copied into the bucket folder is notified once, as S3 would."""

from __future__ import annotations

import os
import time
from pathlib import Path

from automlops import keys
from automlops.config import Manifest
from automlops.events import S3Event
from automlops.local.runtime import LocalRuntime
from automlops.local.watcher import STATE_FILE, DataWatcher
from automlops.manifests import save_manifest
from automlops.stages.preprocess import PROCESSED_TAG, run_identity


def _folder(runtime: LocalRuntime, dataset: str) -> Path:
    folder = runtime.home / runtime.settings.buckets.data / "data" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _events(runtime: LocalRuntime) -> list[tuple[str, str]]:
    found = []
    for message in runtime.queue.list_messages(runtime.settings.queues.events):
        for record in S3Event.model_validate_json(message.body).records:
            found.append((record.key, record.s3.object.e_tag))
    return found


def _age(path: Path, seconds: float) -> None:
    past = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(past, past))


def test_copied_file_is_notified_once_after_it_settles(runtime: LocalRuntime) -> None:
    watcher = DataWatcher(runtime, settle_s=3600)  # only "unchanged since last poll" settles
    path = _folder(runtime, "ds") / "a.csv"
    path.write_bytes(b"x,y\n1,0\n")
    (path.parent / "notes.txt").write_text("not a trigger")
    assert watcher.poll() == []  # first sight: a copy may still be in progress
    assert watcher.poll() == ["data/ds/a.csv"]
    etag = runtime.store.head("data", "data/ds/a.csv").etag  # type: ignore[union-attr]
    assert _events(runtime) == [("data/ds/a.csv", etag)]
    assert watcher.poll() == []
    assert len(_events(runtime)) == 1

    path.write_bytes(b"x,y\n1,0\n2,1\n")  # changed bytes: a new upload
    assert watcher.poll() == []
    assert watcher.poll() == ["data/ds/a.csv"]
    assert len(_events(runtime)) == 2


def test_old_file_settles_at_once_and_a_restart_does_not_notify_again(
    runtime: LocalRuntime,
) -> None:
    path = _folder(runtime, "ds") / "old.csv"
    path.write_bytes(b"x,y\n1,0\n")
    _age(path, 60)
    assert DataWatcher(runtime, settle_s=2).poll() == ["data/ds/old.csv"]
    assert (runtime.home / STATE_FILE).exists()
    assert DataWatcher(runtime, settle_s=2).poll() == []  # state survives the restart
    assert len(_events(runtime)) == 1


def test_put_through_the_store_is_not_notified_twice(runtime: LocalRuntime) -> None:
    manifest = Manifest(dataset="ds", target="y")
    save_manifest(runtime.store, "data", manifest)
    data = b"x,y\n1,0\n"
    runtime.store.put("data", keys.source_key("ds", "p.csv"), data)  # notifies by itself
    watcher = DataWatcher(runtime, settle_s=0)
    assert watcher.poll() == []  # its notification waits on the queue
    assert len(_events(runtime)) == 1

    # Once processed (message gone, run recorded) the file is still known.
    (message,) = runtime.queue.receive(runtime.settings.queues.events)
    runtime.queue.delete(runtime.settings.queues.events, message.receipt_handle)
    info = runtime.store.head("data", keys.source_key("ds", "p.csv"))
    assert info is not None
    run_id = run_identity("ds", info.etag, info.size, manifest)
    runtime.runlog.start_stage(run_id, "ds", "data/ds/q.csv", "preprocess")
    (runtime.home / STATE_FILE).unlink()
    runtime.store.put("data", keys.source_key("ds", "q.csv"), data)
    runtime.queue.delete(
        runtime.settings.queues.events,
        runtime.queue.receive(runtime.settings.queues.events)[0].receipt_handle,
    )
    assert DataWatcher(runtime, settle_s=0).poll() == []
    assert _events(runtime) == []


def test_first_start_on_an_old_workspace_skips_processed_uploads(runtime: LocalRuntime) -> None:
    # An upload processed long ago under another manifest: tagged by preprocess, no state file.
    path = _folder(runtime, "ds") / "done.csv"
    path.write_bytes(b"x,y\n1,0\n")
    runtime.store.put_tags("data", "data/ds/done.csv", {PROCESSED_TAG: "r1"})
    fresh = _folder(runtime, "ds") / "new.csv"
    fresh.write_bytes(b"x,y\n2,1\n")
    _age(path, 60)
    _age(fresh, 60)
    assert DataWatcher(runtime, settle_s=2).poll() == ["data/ds/new.csv"]
