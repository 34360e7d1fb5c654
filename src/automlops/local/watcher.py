"""Notice CSVs copied straight into the data bucket folder and notify them as a put would.

`automlops upload` and the dashboard put files through the store, which sends the ObjectCreated
notification (each at a key of its own, `data/<dataset>/<upload>/<file>.csv`); a file copied
with `cp` into `<home>/data/data/<dataset>/` bypasses the store. Such a file is at a key the
person chose: copying another file over it before a worker ran replaces the first, whose run
then fails saying so (preprocess checks the ETag its notification announced), and the new
file's own notification runs the new bytes.
The watcher polls the bucket folder and sends the same S3-shaped event (through
`LocalRuntime.notify_created`) for every upload key the routing table names that nobody has
notified yet.

A file is looked at once it is settled: the same size and modification time as at the previous
poll, or untouched for `settle_s` seconds, so a copy in progress is never read half-written.
It counts as already notified when

- it is unchanged since the watcher last handled it (state kept in `<home>/watched.json`, so a
  restart does not notify old files again);
- a message on the event queue or its dead-letter queue names the same key and ETag (a put by
  another process, e.g. `automlops upload`, whose run has not started yet);
- the run log holds the run these bytes and the dataset's manifest make (it ran, or runs now).

On a workspace's first poll (no state file yet) a file that a recorded run came from, or that
preprocess tagged as processed, is taken as handled too: starting `up` on an old workspace
must not re-run old uploads just because their manifest changed since.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from automlops import keys
from automlops.errors import AutomlopsError
from automlops.events import S3Event
from automlops.local.runtime import LocalRuntime
from automlops.local.sqlite_queue import dlq_name
from automlops.manifests import load_manifest

log = logging.getLogger(__name__)

STATE_FILE = "watched.json"
Token = tuple[int, int]  # (mtime_ns, size): DirectoryStore.version_token


class DataWatcher:
    """Polls the data bucket folder for upload files that no notification announced."""

    def __init__(
        self,
        runtime: LocalRuntime,
        *,
        settle_s: float = 2.0,
        state_path: Path | None = None,
    ) -> None:
        self.runtime = runtime
        self.bucket = runtime.settings.buckets.data
        self.settle_s = settle_s
        self.state_path = state_path or runtime.home / STATE_FILE
        self._bootstrap = not self.state_path.exists()
        self._handled: dict[str, Token] = self._load()
        self._seen: dict[str, Token] = {}  # unhandled keys and their token at the last poll

    # -- polling -----------------------------------------------------------------------------

    def poll(self) -> list[str]:
        """Look at the bucket folder once; returns the keys notified by this poll."""
        store = self.runtime.store
        now_ns = time.time_ns()
        current: dict[str, Token] = {}
        notified: list[str] = []
        changed = self._bootstrap
        for key in store.list(self.bucket, "data/"):
            if self.runtime.router.match_object(self.bucket, key) is None:
                continue
            token = store.version_token(self.bucket, key)
            if token is None:  # removed between the listing and now
                continue
            current[key] = token
            if self._handled.get(key) == token:
                continue
            settled = (
                self._seen.get(key) == token or now_ns - token[0] >= self.settle_s * 1_000_000_000
            )
            if not settled:
                continue
            try:
                if not self._already_notified(key):
                    self.runtime.notify_created(self.bucket, key)
                    notified.append(key)
                    log.info("noticed %s/%s copied into the bucket folder", self.bucket, key)
            except AutomlopsError as exc:  # vanished or unreadable: look again next time
                log.warning("could not check %s/%s: %s", self.bucket, key, exc)
                continue
            self._handled[key] = token
            changed = True
        self._seen = {k: t for k, t in current.items() if self._handled.get(k) != t}
        gone = [k for k in self._handled if k not in current]
        for key in gone:
            del self._handled[key]
        if changed or gone:
            self._save()
        self._bootstrap = False
        return notified

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Poll every `interval_s` until `stop` is set; errors are logged, never fatal."""
        while not stop.is_set():
            try:
                self.poll()
            except Exception:  # the watcher must outlive a bad file or a busy database
                log.exception("data folder watcher: poll failed")
            stop.wait(interval_s)

    # -- was it notified? --------------------------------------------------------------------

    def _already_notified(self, key: str) -> bool:
        info = self.runtime.store.head(self.bucket, key)
        if info is None:
            return True  # gone: nothing to notify
        if self._queued(key, info.etag):
            return True
        runlog = self.runtime.runlog
        dataset = keys.parse_source_key(key).dataset
        # Imported here: the stage module pulls in the ML stack, which `up` loads anyway.
        from automlops.stages.preprocess import PROCESSED_TAG, run_identity

        with contextlib.suppress(AutomlopsError):  # an invalid manifest: let the run say so
            manifest = load_manifest(self.runtime.store, self.bucket, dataset)
            run_id = run_identity(dataset, info.etag, info.size, manifest)
            if runlog.get(run_id) is not None:
                return True
        if self._bootstrap:
            if PROCESSED_TAG in self.runtime.store.get_tags(self.bucket, key):
                return True
            return any(run.source == key for run in runlog.list(dataset))
        return False

    def _queued(self, key: str, etag: str) -> bool:
        """A notification of exactly these bytes waits (or dead-lettered) on the event queue."""
        queue = self.runtime.settings.queues.events
        for name in (queue, dlq_name(queue)):
            for message in self.runtime.queue.list_messages(name):
                try:
                    records = S3Event.model_validate_json(message.body).records
                except ValueError:
                    continue
                for record in records:
                    if (
                        record.bucket == self.bucket
                        and record.key == key
                        and record.s3.object.e_tag == etag
                    ):
                        return True
        return False

    # -- state -------------------------------------------------------------------------------

    def _load(self) -> dict[str, Token]:
        try:
            raw = json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): (int(v[0]), int(v[1])) for k, v in raw.get("handled", {}).items()}

    def _save(self) -> None:
        # Temp file + rename: a crash never leaves a half-written state behind.
        payload = json.dumps({"handled": {k: list(v) for k, v in sorted(self._handled.items())}})
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".watched.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(payload)
            os.replace(tmp, self.state_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
