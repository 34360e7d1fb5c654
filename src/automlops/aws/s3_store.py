"""ObjectStore on Amazon S3 (boto3)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import ClientError

from automlops.errors import ConflictError, NotFoundError, PermanentError
from automlops.ports import MAX_KEY_BYTES, ObjectInfo

# S3 answers a failed If-Match / If-None-Match with 412, and a concurrent conditional write
# racing ours with 409; both mean "somebody else wrote first".
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _existing(bucket: str, key: str) -> Iterator[None]:
    """Around a call on one object: S3's "no such key" becomes NotFoundError, other errors
    pass unchanged."""
    try:
        yield
    except ClientError as exc:
        if _code(exc) in _MISSING_CODES:
            raise NotFoundError(f"no such object: s3://{bucket}/{key}") from None
        if _code(exc) == "NoSuchBucket":
            raise NotFoundError(f"no such bucket: s3://{bucket} (for {key})") from None
        raise


def _etag(raw: str) -> str:
    # S3 quotes ETags; the local store and the registry compare bare hex.
    return raw.strip('"')


def _writable(bucket: str, key: str) -> str:
    """`key`, when S3 can hold it; else PermanentError (S3 would answer KeyTooLongError after
    the body was sent)."""
    size = len(key.encode())
    if not key or size > MAX_KEY_BYTES:
        raise PermanentError(
            f"object key of {size} bytes {key[:60]!r} for s3://{bucket}: "
            f"1 to {MAX_KEY_BYTES} bytes are allowed"
        )
    return key


class S3ObjectStore:
    """Buckets on S3. Single PUTs are atomic; registry updates use conditional writes."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        """Write an object (one PUT: readers see the old or the new bytes)."""
        response = self.client.put_object(Bucket=bucket, Key=_writable(bucket, key), Body=data)
        return ObjectInfo(bucket=bucket, key=key, size=len(data), etag=_etag(response["ETag"]))

    def put_file(self, bucket: str, key: str, source: Path) -> ObjectInfo:
        """Upload a local file, streamed by boto3's managed transfer (in parts when big: then
        the ETag is S3's multipart ETag, not the MD5). The object appears whole or not at all.
        """
        self.client.upload_file(str(source), bucket, _writable(bucket, key))
        info = self.head(bucket, key)
        if info is None:  # S3 is read-after-write consistent: only a concurrent delete
            raise NotFoundError(f"s3://{bucket}/{key} vanished right after its upload")
        return info

    @contextmanager
    def writer(self, bucket: str, key: str) -> Iterator[BinaryIO]:
        """A new object written to a local temp file, uploaded by `put_file` when the block
        ends cleanly (S3 has no atomic streaming write; a multipart upload is `put_file`'s)."""
        _writable(bucket, key)
        with tempfile.TemporaryDirectory(prefix="automlops-s3-") as scratch:
            path = Path(scratch) / "object"
            with open(path, "wb") as handle:
                yield handle
            self.put_file(bucket, key, path)

    def put_if(self, bucket: str, key: str, data: bytes, *, if_match: str | None) -> ObjectInfo:
        """Compare-and-swap with S3 conditional writes (If-Match / If-None-Match: *)."""
        condition = {"IfNoneMatch": "*"} if if_match is None else {"IfMatch": f'"{if_match}"'}
        _writable(bucket, key)
        try:
            response = self.client.put_object(Bucket=bucket, Key=key, Body=data, **condition)
        except ClientError as exc:
            code = _code(exc)
            # If-Match on an object deleted meanwhile answers NoSuchKey: also a lost race.
            if code in _CONFLICT_CODES or (if_match is not None and code in _MISSING_CODES):
                raise ConflictError(
                    f"s3://{bucket}/{key} changed (expected {if_match or 'no object'}): {code}"
                ) from None
            raise
        return ObjectInfo(bucket=bucket, key=key, size=len(data), etag=_etag(response["ETag"]))

    def get(self, bucket: str, key: str) -> bytes:
        """Read an object; NotFoundError when absent."""
        with _existing(bucket, key):
            response = self.client.get_object(Bucket=bucket, Key=key)
        return response["Body"].read()

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """Size and ETag, or None when absent.

        Needs s3:ListBucket on the bucket: without it S3 answers 403 for a missing key, which
        is never mistaken for "absent": it is a PermanentError naming the missing grant
        (retrying cannot change a policy).
        """
        try:
            response = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES:
                return None
            if _code(exc) in ("403", "Forbidden", "AccessDenied"):
                raise PermanentError(
                    f"HEAD s3://{bucket}/{key} was refused (403): the object is missing or "
                    "unreadable, and S3 tells which only to a role with s3:GetObject on it and "
                    "s3:ListBucket on the bucket"
                ) from None
            raise
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=int(response["ContentLength"]),
            etag=_etag(response["ETag"]),
        )

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys under a prefix, sorted."""
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)

    def get_tags(self, bucket: str, key: str) -> dict[str, str]:
        """The object's tags; NotFoundError when the object is absent."""
        with _existing(bucket, key):
            response = self.client.get_object_tagging(Bucket=bucket, Key=key)
        return {tag["Key"]: tag["Value"] for tag in response.get("TagSet", [])}

    def local_file(self, bucket: str, key: str) -> Path | None:
        """S3 objects are not local files."""
        return None

    def put_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        """Replace the object's tags (S3 allows at most 10 per object)."""
        tag_set = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
        with _existing(bucket, key):
            self.client.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": tag_set})
