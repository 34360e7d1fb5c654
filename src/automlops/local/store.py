"""Object store on the local file system: one directory per bucket under the workspace."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast

from automlops.errors import ConflictError, NotFoundError, PermanentError
from automlops.ports import MAX_KEY_BYTES, ObjectInfo

OnCreated = Callable[[ObjectInfo], None]

# Sidecar state (tags, locks) lives beside the buckets, never inside them.
_META_DIR = ".meta"
# The usual file-name limit of a file system (ext4, APFS, NTFS) is 255 bytes; a segment of a
# key (a file or directory name) leaves room for the longest sidecar suffix (its tags file).
# Temp files have short names of their own, whatever the key.
_TAGS_SUFFIX = ".tags.json"
MAX_NAME_BYTES = 255 - len(_TAGS_SUFFIX)


_COPY_CHUNK = 1 << 20  # put_file copies and hashes 1 MiB at a time


class DirectoryStore:
    """Buckets as directories; atomic writes by temp file + rename; S3-like notifications."""

    def __init__(self, root: Path, buckets: list[str], on_created: OnCreated | None = None) -> None:
        self.root = root
        self.buckets = set(buckets)
        self.on_created = on_created
        # Called between a write becoming durable and its notification (a seam for crash tests).
        for bucket in buckets:
            (root / bucket).mkdir(parents=True, exist_ok=True)
        (root / _META_DIR).mkdir(parents=True, exist_ok=True)

    # -- paths -------------------------------------------------------------------------------

    def path(self, bucket: str, key: str) -> Path:
        """The file behind bucket/key; refuses keys that would leave the bucket."""
        if bucket not in self.buckets:
            raise NotFoundError(f"no such bucket: {bucket!r}")
        parts = key.split("/")
        if (
            not key
            or key.startswith("/")
            or "\\" in key
            or "\x00" in key
            or any(p in ("", ".", "..") for p in parts)
            or any(_is_temp(p) for p in parts)
            or parts[0] == _META_DIR
        ):
            raise PermanentError(f"invalid object key {key!r}")
        # Refused here, not by the OS: ENAMETOOLONG would surface as a retried I/O error.
        if len(key.encode()) > MAX_KEY_BYTES:
            raise PermanentError(
                f"object key of {len(key.encode())} bytes {key[:60]!r}...: "
                f"at most {MAX_KEY_BYTES} bytes are allowed"
            )
        if any(len(p.encode()) > MAX_NAME_BYTES for p in parts):
            raise PermanentError(
                f"object key {key[:60]!r}... has a name over {MAX_NAME_BYTES} bytes"
            )
        path = self.root / bucket / key
        if _through_link(self.root / bucket, path):
            raise PermanentError(
                f"object key {key[:60]!r} passes through a symbolic link: the store never "
                "follows links out of a bucket"
            )
        return path

    def _meta_path(self, bucket: str, key: str, suffix: str) -> Path:
        self.path(bucket, key)  # validates
        return self.root / _META_DIR / bucket / f"{key}{suffix}"

    # -- writes ------------------------------------------------------------------------------

    def _write_atomic(self, path: Path, data: bytes | Iterable[bytes]) -> tuple[int, str]:
        """Write bytes (or chunks of them) to a temp file, fsync, rename over `path`; returns
        the size and the MD5 (S3's ETag of a single-part PUT)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # Named apart from `path`: `.<name>.<random>.tmp` would outgrow the name limit.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in [data] if isinstance(data, bytes) else data:
                    digest.update(chunk)
                    handle.write(chunk)
                    size += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size, digest.hexdigest()

    def _created(self, bucket: str, key: str, size: int, etag: str) -> ObjectInfo:
        info = ObjectInfo(bucket=bucket, key=key, size=size, etag=etag)
        if self.on_created is not None:
            self.on_created(info)
        return info

    def _write_object(self, bucket: str, key: str, data: bytes | Iterable[bytes]) -> ObjectInfo:
        path = self.path(bucket, key)
        # A new object has no tags, as on S3. Dropped first: a crash in between leaves the old
        # bytes untagged (processed again, idempotently), never new bytes with old tags.
        self._meta_path(bucket, key, _TAGS_SUFFIX).unlink(missing_ok=True)
        try:
            size, etag = self._write_atomic(path, data)
        except (IsADirectoryError, NotADirectoryError, FileExistsError):
            raise _key_is_prefix(bucket, key) from None
        return self._created(bucket, key, size, etag)

    def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        return self._write_object(bucket, key, data)

    def put_file(self, bucket: str, key: str, source: Path) -> ObjectInfo:
        """`put` of a file's bytes, copied and hashed in chunks: a large upload is never
        held in memory. Atomic like `put`."""
        self.path(bucket, key)  # an invalid key is refused before the file is opened
        with open(source, "rb") as reader:
            return self._write_object(bucket, key, iter(lambda: reader.read(_COPY_CHUNK), b""))

    @contextmanager
    def writer(self, bucket: str, key: str) -> Iterator[BinaryIO]:
        """A new object written as a stream into a temp file beside it, hashed as it is
        written; synced and renamed into place (then announced) when the block ends cleanly,
        removed when it raises."""
        path = self.path(bucket, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (NotADirectoryError, FileExistsError):
            raise _key_is_prefix(bucket, key) from None
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                hashing = _HashingWriter(handle)
                yield cast(BinaryIO, hashing)
                handle.flush()
                os.fsync(handle.fileno())
            self._meta_path(bucket, key, _TAGS_SUFFIX).unlink(missing_ok=True)  # as `put`
            os.replace(tmp, path)
        except (IsADirectoryError, NotADirectoryError):
            Path(tmp).unlink(missing_ok=True)
            raise _key_is_prefix(bucket, key) from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._created(bucket, key, hashing.size, hashing.digest.hexdigest())

    def renotify(self, bucket: str, key: str) -> bool:
        """Send an existing object's ObjectCreated notification again; False if it is absent.

        A crash between a write and its notification loses the event (S3 never does); a stage
        that finds its output already written calls this so the next stage still hears of it.
        """
        info = self.head(bucket, key)
        if info is None:
            return False
        if self.on_created is not None:
            self.on_created(info)
        return True

    @contextmanager
    def _locked(self, bucket: str, key: str) -> Iterator[None]:
        lock_path = self._meta_path(bucket, key, ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def put_if(self, bucket: str, key: str, data: bytes, *, if_match: str | None) -> ObjectInfo:
        with self._locked(bucket, key):
            current = self.head(bucket, key)
            current_etag = current.etag if current else None
            if current_etag != if_match:
                raise ConflictError(
                    f"{bucket}/{key} changed (expected {if_match}, found {current_etag})"
                )
            return self.put(bucket, key, data)

    # -- reads -------------------------------------------------------------------------------

    def get(self, bucket: str, key: str) -> bytes:
        try:
            return self.path(bucket, key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"no such object: {bucket}/{key}") from None

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        # Hashed in chunks, so sizing up a huge upload never holds it in memory.
        try:
            with open(self.path(bucket, key), "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                digest = hashlib.file_digest(
                    handle, lambda: hashlib.md5(usedforsecurity=False)
                ).hexdigest()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return ObjectInfo(bucket=bucket, key=key, size=size, etag=digest)

    def local_file(self, bucket: str, key: str) -> Path | None:
        path = self.path(bucket, key)
        return path if path.is_file() else None

    def version_token(self, bucket: str, key: str) -> tuple[int, int] | None:
        """A cheap change detector (mtime, size) for pollers; None when absent."""
        try:
            stat = self.path(bucket, key).stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        base = self.root / bucket
        if bucket not in self.buckets:
            raise NotFoundError(f"no such bucket: {bucket!r}")
        keys = []
        for path in base.rglob("*"):
            if path.is_file() and not _is_temp(path.name) and not _through_link(base, path):
                key = path.relative_to(base).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    # -- tags --------------------------------------------------------------------------------

    # Tags check the object exists by its file: `head` would hash the whole object for its
    # ETag (a second of a big upload's time, for nothing).
    def get_tags(self, bucket: str, key: str) -> dict[str, str]:
        if self.local_file(bucket, key) is None:
            raise NotFoundError(f"no such object: {bucket}/{key}")
        try:
            return json.loads(self._meta_path(bucket, key, _TAGS_SUFFIX).read_bytes())
        except FileNotFoundError:
            return {}

    def put_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        if self.local_file(bucket, key) is None:
            raise NotFoundError(f"no such object: {bucket}/{key}")
        self._write_atomic(
            self._meta_path(bucket, key, _TAGS_SUFFIX), json.dumps(tags, sort_keys=True).encode()
        )


class _HashingWriter(io.RawIOBase):
    """Writes through to a file, keeping the MD5 (the ETag) and size of what went by."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.digest.update(data)  # releases the GIL for big buffers: hashed beside other work
        written = self.out.write(data)
        self.size += written
        return written


def _key_is_prefix(bucket: str, key: str) -> PermanentError:
    # S3 holds "a" beside "a/b"; directories cannot. Retrying would not help.
    return PermanentError(
        f"{bucket}/{key}: in the directory store a key cannot also be a prefix "
        "(a directory) of other keys"
    )


def _is_temp(name: str) -> bool:
    """A temp file of an unfinished write (never an object: keys cannot name one)."""
    return name.startswith(".") and name.endswith(".tmp")


def _through_link(base: Path, path: Path) -> bool:
    """Whether `path` (below `base`) or a folder between them is a symbolic link."""
    while path != base:
        if path.is_symlink():
            return True
        path = path.parent
    return False
