"""The directory store: atomic writes, S3-shaped notifications, keys kept inside buckets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automlops.errors import ConflictError, NotFoundError, PermanentError
from automlops.local.runtime import open_runtime
from automlops.local.store import DirectoryStore
from automlops.ports import ObjectInfo


def test_put_get_head_list(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, ["b"])
    info = store.put("b", "x/y.txt", b"hi")
    assert info.size == 2
    assert store.get("b", "x/y.txt") == b"hi"
    assert store.head("b", "x/y.txt") == info
    assert store.head("b", "nope") is None
    assert store.list("b") == ["x/y.txt"]
    with pytest.raises(NotFoundError):
        store.get("b", "nope")


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", ".meta/x", "a/./b"])
def test_keys_cannot_escape_the_bucket(tmp_path: Path, key: str) -> None:
    store = DirectoryStore(tmp_path, ["b"])
    with pytest.raises(PermanentError):
        store.put("b", key, b"x")


def test_compare_and_swap(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, ["b"])
    first = store.put_if("b", "doc", b"1", if_match=None)
    with pytest.raises(ConflictError):
        store.put_if("b", "doc", b"2", if_match=None)
    second = store.put_if("b", "doc", b"2", if_match=first.etag)
    with pytest.raises(ConflictError):
        store.put_if("b", "doc", b"3", if_match=first.etag)
    assert store.get("b", "doc") == b"2"
    assert second.etag != first.etag


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


def test_tags(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, ["b"])
    store.put("b", "k", b"x")
    assert store.get_tags("b", "k") == {}
    store.put_tags("b", "k", {"a": "1"})
    assert store.get_tags("b", "k") == {"a": "1"}


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
