"""The directory store beyond the ObjectStore contract (tests/contracts/test_store_contract.py):
atomic writes, S3-shaped notifications, keys kept inside buckets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automlops.errors import PermanentError
from automlops.local.runtime import open_runtime
from automlops.local.store import DirectoryStore
from automlops.ports import ObjectInfo


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", ".meta/x", "a/./b"])
def test_keys_cannot_escape_the_bucket(tmp_path: Path, key: str) -> None:
    store = DirectoryStore(tmp_path, ["b"])
    with pytest.raises(PermanentError):
        store.put("b", key, b"x")


def test_no_temp_files_left_behind(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, ["b"])
    for i in range(5):
        store.put("b", "k", str(i).encode())
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["k"]


def test_notifications_follow_the_routing_table(tmp_path: Path) -> None:
    seen: list[ObjectInfo] = []
    store = DirectoryStore(tmp_path, ["b"], on_created=seen.append)
    store.put("b", "k", b"x")
    assert [i.key for i in seen] == ["k"]

    runtime = open_runtime(tmp_path / "ws")
    runtime.store.put("data", "data/my ds/file one.csv", b"a,b\n1,2\n")
    runtime.store.put("data", "data/ds/manifest.json", b"{}")  # not routed
    [msg] = runtime.queue.receive(runtime.settings.queues.events)
    event = json.loads(msg.body)
    [record] = event["Records"]
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == "data"
    assert record["s3"]["object"]["key"] == "data/my+ds/file+one.csv"  # URL-encoded like S3
    assert runtime.queue.receive(runtime.settings.queues.events) == []


def test_put_file_is_put_of_the_files_bytes_in_chunks(tmp_path: Path) -> None:
    """Streamed from disk (over several 1 MiB chunks): same bytes, ETag, notification and
    atomicity as `put`; a key outside the bucket is refused before anything is written."""
    data = bytes(range(256)) * (5 * 4096 + 17)  # about 5 MiB, not a multiple of the chunk
    source = tmp_path / "upload.csv"
    source.write_bytes(data)
    seen: list[ObjectInfo] = []
    store = DirectoryStore(tmp_path / "s", ["b", "c"], on_created=seen.append)
    info = store.put_file("b", "d/upload.csv", source)
    assert store.get("b", "d/upload.csv") == data
    assert info == store.head("b", "d/upload.csv")
    same = store.put("c", "d/upload.csv", data)
    assert info.size == len(data)
    assert (info.size, info.etag) == (same.size, same.etag)
    assert seen == [info, same]
    assert [p.name for p in (tmp_path / "s" / "b" / "d").iterdir()] == ["upload.csv"]
    with pytest.raises(PermanentError):
        store.put_file("b", "../escape.csv", source)
    assert not (tmp_path / "s" / "escape.csv").exists()


def test_writer_hashes_as_it_writes_and_notifies_once_done(tmp_path: Path) -> None:
    """The streamed object has `put`'s MD5 ETag and notification, sent only at the end; a
    failed write leaves no temp file; a key that is a prefix is refused before writing."""
    seen: list[ObjectInfo] = []
    store = DirectoryStore(tmp_path / "s", ["b"], on_created=seen.append)
    with store.writer("b", "p/joined.csv") as out:
        out.write(b"a,b\n")
        out.write(b"1,2\n")
        assert seen == []
    assert seen == [store.head("b", "p/joined.csv")] and seen[0].size == 8
    same = store.put("b", "p/same.csv", b"a,b\n1,2\n")
    assert (seen[0].size, seen[0].etag) == (same.size, same.etag)
    with pytest.raises(OSError), store.writer("b", "p/failed.csv") as out:
        out.write(b"x")
        raise OSError("disk went away")
    assert sorted(p.name for p in (tmp_path / "s" / "b" / "p").iterdir()) == [
        "joined.csv",
        "same.csv",
    ]
    store.put("b", "a/b", b"1")
    for prefix_clash in ("a", "p/joined.csv/x"):
        with pytest.raises(PermanentError), store.writer("b", prefix_clash) as out:
            out.write(b"x")
    assert len(seen) == 3  # joined, same, a/b


def test_a_key_cannot_be_an_object_and_a_prefix(tmp_path: Path) -> None:
    """S3 holds "a" beside "a/b", directories cannot: refused as permanent, not retried."""
    store = DirectoryStore(tmp_path, ["b"])
    store.put("b", "a/b", b"1")
    with pytest.raises(PermanentError):
        store.put("b", "a", b"2")
    store.put("b", "c", b"3")
    with pytest.raises(PermanentError):
        store.put("b", "c/d", b"4")
    assert store.list("b") == ["a/b", "c"]


def test_links_out_of_a_bucket_are_never_followed(tmp_path: Path) -> None:
    # A link placed in the bucket folder (by hand, or by a crafted archive someone unpacked
    # there) must not make the store read, list or notify a file outside it.
    secret = tmp_path / "secret.csv"
    secret.write_text("password,y\nhunter2,1\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "inner.csv").write_text("a,y\n1,0\n")
    runtime = open_runtime(tmp_path / "home")
    folder = runtime.home / "data" / "data" / "ds"
    folder.mkdir(parents=True)
    (folder / "passwd.csv").symlink_to(secret)
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    store = runtime.store
    assert store.list("data", "data/") == []
    for key in ("data/ds/passwd.csv", "data/ds/linked/inner.csv"):
        for read in (store.get, store.head, store.local_file, store.get_tags):
            with pytest.raises(PermanentError, match="symbolic link"):
                read("data", key)
    from automlops.local.watcher import DataWatcher

    assert DataWatcher(runtime, settle_s=0).poll() == []
    runtime.close()
