"""A CSV put by hand into a folder no dataset may be named fails its run at once, clearly."""

from __future__ import annotations

from automlops.demo import breast_cancer_csv
from automlops.local.runtime import LocalRuntime
from automlops.local.worker import Worker


def test_a_file_in_a_reserved_folder_fails_its_run_on_the_first_attempt(
    runtime: LocalRuntime,
) -> None:
    # What copying a file into the watched data folder does: the object, then its event.
    runtime.store.put("data", "data/labels/cancer.csv", breast_cancer_csv())
    Worker(runtime).run_until_idle()
    [run] = runtime.runlog.list()
    assert run.status == "failed"
    assert run.error is not None and "reserved" in run.error and "data/labels/" in run.error
    assert not runtime.queue.dead_letters("preprocess")  # permanent: not retried into the DLQ
