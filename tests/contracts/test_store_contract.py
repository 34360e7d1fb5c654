"""One contract for the ObjectStore port: the directory store and S3 (moto) in full, and the
SageMaker channel store where it applies (reads: a training job writes only its model).

Where they differ, the contract says what all guarantee: a multipart upload's ETag (S3's
`put_file` of a big file) is not the MD5, and each store may refuse keys below S3's limit
(the directory store: file names over `MAX_NAME_BYTES`), always before writing anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from automlops.aws.container import ChannelStore
from automlops.aws.s3_store import S3ObjectStore
from automlops.errors import ConflictError, NotFoundError, PermanentError
from automlops.local.store import MAX_NAME_BYTES, DirectoryStore
from automlops.ports import MAX_KEY_BYTES, ObjectStore

B = "bucket"
Seed = Callable[[dict[str, bytes]], ObjectStore]


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture(params=["directory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """A writable store with one empty bucket."""
    if request.param == "directory":
        yield DirectoryStore(tmp_path / "store", [B])
    else:
        with mock_aws():
            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket=B)
            yield S3ObjectStore(client)


@pytest.fixture(params=["directory", "s3", "channels"])
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Seed]:
    """A store holding given objects (the channel store: as a training job's input files)."""
    if request.param == "channels":

        def channels(objects: dict[str, bytes]) -> ObjectStore:
            files = {}
            for i, (key, data) in enumerate(objects.items()):
                path = tmp_path / "input" / str(i) / "file"
                path.parent.mkdir(parents=True)
                path.write_bytes(data)
                files[(B, key)] = path
            return ChannelStore(files, tmp_path / "model", (B, "models/model.tar.gz"))

        yield channels
        return

    def writable(make: Callable[[], ObjectStore]) -> Seed:
        def seed(objects: dict[str, bytes]) -> ObjectStore:
            store = make()
            for key, data in objects.items():
                store.put(B, key, data)
            return store

        return seed

    if request.param == "directory":
        yield writable(lambda: DirectoryStore(tmp_path / "store", [B]))
    else:
        with mock_aws():
            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket=B)
            yield writable(lambda: S3ObjectStore(client))


# -- reads (every store) -------------------------------------------------------------------


def test_reads_see_the_objects(seeded: Seed) -> None:
    objects = {"data/a/x.csv": b"a,b\n1,2\n", "data/a/y.csv": b"", "data/ab/z.csv": b"z" * 999}
    store = seeded(objects)
    for key, data in objects.items():
        assert store.get(B, key) == data
        info = store.head(B, key)
        assert info is not None
        assert (info.bucket, info.key, info.size, info.etag) == (B, key, len(data), _md5(data))
        local = store.local_file(B, key)
        assert local is None or local.read_bytes() == data
    assert store.list(B) == sorted(objects)
    assert store.list(B, "data/a/") == ["data/a/x.csv", "data/a/y.csv"]
    assert store.list(B, "data/a") == sorted(objects)
    assert store.list(B, "nothing/") == []


def test_a_missing_object_is_not_found(seeded: Seed) -> None:
    store = seeded({"present": b"x"})
    assert store.head(B, "absent") is None
    with pytest.raises(NotFoundError):
        store.get(B, "absent")
    with pytest.raises(NotFoundError):
        store.get_tags(B, "absent")
    assert store.get_tags(B, "present") == {}
    # A bucket that does not exist (a misconfigured stage) is "not found" too, never a raw
    # library error.
    with pytest.raises(NotFoundError):
        store.get("no-such-bucket-here", "present")


def test_keys_of_any_text_round_trip(seeded: Seed) -> None:
    objects = {"données/é t+%20&=?.csv": b"1", "a b/c+d": b"2", "x/report.tmp": b"3"}
    store = seeded(objects)
    assert store.list(B) == sorted(objects)
    assert [store.get(B, k) for k in objects] == list(objects.values())


# -- writes (directory and S3) -------------------------------------------------------------


def test_put_then_read_back(store: ObjectStore) -> None:
    info = store.put(B, "k/one", b"first")
    assert (info.bucket, info.key, info.size, info.etag) == (B, "k/one", 5, _md5(b"first"))
    assert store.head(B, "k/one") == info
    again = store.put(B, "k/one", b"second!")
    assert store.get(B, "k/one") == b"second!"
    assert store.head(B, "k/one") == again != info
    assert store.list(B) == ["k/one"]


def test_put_if_is_compare_and_swap(store: ObjectStore) -> None:
    with pytest.raises(ConflictError):
        store.put_if(B, "doc", b"0", if_match=_md5(b"whatever"))  # absent: no ETag matches
    first = store.put_if(B, "doc", b"1", if_match=None)
    assert first.etag == _md5(b"1")
    with pytest.raises(ConflictError):
        store.put_if(B, "doc", b"2", if_match=None)  # exists now
    second = store.put_if(B, "doc", b"2", if_match=first.etag)
    with pytest.raises(ConflictError):
        store.put_if(B, "doc", b"3", if_match=first.etag)  # stale
    assert store.get(B, "doc") == b"2"
    assert store.head(B, "doc") == second


def test_put_file_streams_a_file(store: ObjectStore, tmp_path: Path) -> None:
    # Over boto3's 8 MiB multipart threshold, and not a multiple of any chunk size.
    data = bytes(range(256)) * (9 * 4096 + 17)
    source = tmp_path / "upload.csv"
    source.write_bytes(data)
    info = store.put_file(B, "data/d/upload.csv", source)
    assert store.get(B, "data/d/upload.csv") == data
    assert info.size == len(data)
    assert store.head(B, "data/d/upload.csv") == info
    small = tmp_path / "small.csv"
    small.write_bytes(b"a,b\n")
    assert store.put_file(B, "data/d/small.csv", small).etag == _md5(b"a,b\n")
    assert store.list(B, "data/") == ["data/d/small.csv", "data/d/upload.csv"]


def test_writer_stores_what_is_written_when_the_block_ends(store: ObjectStore) -> None:
    pieces = [b"a,b\n", bytes(range(256)) * 4099, memoryview(b"tail\n")]
    store.put(B, "out/p.csv", b"old")
    store.put_tags(B, "out/p.csv", {"processed": "run-1"})
    with store.writer(B, "out/p.csv") as out:
        for piece in pieces:
            out.write(piece)
        assert store.get(B, "out/p.csv") == b"old"  # nothing shows before the end
    data = b"".join(bytes(p) for p in pieces)
    assert store.get(B, "out/p.csv") == data
    info = store.head(B, "out/p.csv")
    assert info is not None and info.size == len(data)
    assert store.get_tags(B, "out/p.csv") == {}  # a new object, as after `put`

    with pytest.raises(RuntimeError), store.writer(B, "out/q.csv") as out:
        out.write(b"half a file")
        raise RuntimeError("the run failed")
    assert store.head(B, "out/q.csv") is None  # nothing of a failed write is stored
    assert store.list(B) == ["out/p.csv"]
    with pytest.raises(PermanentError), store.writer(B, "k" * (MAX_KEY_BYTES + 1)):
        pass


def test_tags_round_trip_and_replace(store: ObjectStore) -> None:
    store.put(B, "k", b"x")
    assert store.get_tags(B, "k") == {}
    ten = {f"t{i}": f"v {i}" for i in range(10)}  # S3's most per object
    store.put_tags(B, "k", ten)
    assert store.get_tags(B, "k") == ten
    store.put_tags(B, "k", {"processed": "run-1"})
    assert store.get_tags(B, "k") == {"processed": "run-1"}
    # A write makes a new object, without the old one's tags (S3's PUT).
    store.put(B, "k", b"new bytes")
    assert store.get_tags(B, "k") == {}
    store.put_tags(B, "k", {"processed": "run-2"})
    store.put_if(B, "k", b"newer", if_match=_md5(b"new bytes"))
    assert store.get_tags(B, "k") == {}
    with pytest.raises(NotFoundError):
        store.put_tags(B, "absent", {"a": "1"})


def test_keys_at_the_limit_are_held_and_over_it_refused(store: ObjectStore, tmp_path: Path) -> None:
    name = "n" * MAX_NAME_BYTES
    longest = "/".join([name] * 4)
    longest += "/" + "é" * ((MAX_KEY_BYTES - len(longest.encode()) - 1) // 2)
    longest += "x" * (MAX_KEY_BYTES - len(longest.encode()))
    assert len(longest.encode()) == MAX_KEY_BYTES
    store.put(B, longest, b"deep")
    store.put_tags(B, longest, {"a": "1"})
    assert (store.get(B, longest), store.get_tags(B, longest)) == (b"deep", {"a": "1"})
    store.put_if(B, longest, b"deeper", if_match=_md5(b"deep"))
    # The longest name as a file's (the directory store's temp and tags files live beside it).
    name = "m" * MAX_NAME_BYTES
    store.put(B, name, b"wide")
    store.put_if(B, name, b"wider", if_match=_md5(b"wide"))
    store.put_tags(B, name, {"b": "2"})
    assert (store.get(B, name), store.get_tags(B, name)) == (b"wider", {"b": "2"})
    assert store.list(B) == sorted([longest, name])

    source = tmp_path / "f"
    source.write_bytes(b"f")
    too_long = longest + "x"
    for write in (
        lambda: store.put(B, too_long, b"x"),
        lambda: store.put_if(B, too_long, b"x", if_match=None),
        lambda: store.put_file(B, too_long, source),
        lambda: store.put(B, "", b"x"),
    ):
        with pytest.raises(PermanentError):
            write()
    assert store.list(B) == sorted([longest, name])
