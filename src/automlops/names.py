"""The one name rule for datasets and uploaded files: what upload accepts, what the manifest
validates, what serving and the dashboard route.

A dataset name becomes part of object keys, file names in the local store and AWS resource
names, so it is ASCII letters, digits, '_', '-' and '.', starts with a letter, digit or '_',
and is at most `DATASET_MAX` characters. It is none of `RESERVED` (in any case): a bucket's
top-level folders. The monitoring bucket keeps a dataset's reports at `<dataset>/...` beside
`capture/`, `labels/` and `monitoring/`, so a dataset of such a name would mix its reports into
another dataset's captured traffic or labels (and `capture/<date>/...` is a listing of both);
the data bucket's `feedback/` and `score/` and the model bucket's `registry/` are kept out for
the same reason. Case is ignored because a local store on a case-insensitive file system (macOS)
holds `Labels` and `labels` in one folder.

An uploaded file's name is sanitised (`object_filename`) rather than refused: unsafe characters
become '_' and it is cut to `FILE_MAX` characters, ending in `.csv` (the pipeline's trigger).
Each upload is stored in a folder of its own, named by `new_upload_id` (`UPLOAD_ID_LEN`
characters), so two uploads of one file name are two objects (see `keys.source_key`).

Why these bounds fit every store (names are ASCII, so characters are bytes):
- the local store (`local/store.py`) takes names of at most `MAX_NAME_BYTES` (245: its tags
  sidecar `<name>.tags.json` must fit the file system's 255) and keys of 1024 bytes; its temp
  files have short names of their own. A 200-byte file name and a 128-byte dataset (in
  `registry/<dataset>.json`: + 5) and a 24-byte upload id stay within that; the longest key,
  `data/<dataset>/<upload>/<file>`, is 359 bytes.
- S3 keys may be 1024 bytes.
- SageMaker resource names (`aws/sagemaker.py: resource_name`, 63 characters) are built from a
  dataset name by cutting it and adding a hash, so any name of this rule maps to a distinct one;
  run ids are content hashes of 16 characters, whatever the upload's key.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

DATASET_MAX = 128
FILE_MAX = 200  # characters of an uploaded file's name in its key, `.csv` included
UPLOAD_ID_LEN = 24  # characters of an upload's folder name: see `new_upload_id`
CSV_SUFFIX = ".csv"

# Top-level folders of the buckets (see keys.py): never a dataset's name.
RESERVED = frozenset({"capture", "labels", "monitoring", "feedback", "score", "registry"})

_DATASET = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{DATASET_MAX - 1}}}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class InvalidName(ValueError):
    """A name breaks the rule; the message says which rule."""


def is_dataset_name(name: str) -> bool:
    """True when `name` may name a dataset (no exception: for routes that answer 404)."""
    return _DATASET.fullmatch(name) is not None and name.lower() not in RESERVED


def check_dataset_name(name: str) -> str:
    """`name` when it may name a dataset, else InvalidName saying why."""
    if name.lower() in RESERVED:
        raise InvalidName(
            f"dataset name {name!r} is reserved: the buckets use "
            f"{', '.join(sorted(RESERVED))} as top-level folders; choose another name"
        )
    if not is_dataset_name(name):
        raise InvalidName(
            f"dataset name {name[:80]!r} must be 1 to {DATASET_MAX} ASCII letters, digits, "
            "'_', '-' or '.', starting with a letter, digit or '_'"
        )
    return name


def _basename(filename: str) -> str:
    """The last part of a path from any operating system (browsers may send a full path)."""
    return filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]


def dataset_from_filename(filename: str) -> str:
    """The default dataset name of an upload: the file's stem, unsafe characters replaced by
    '-', cut to `DATASET_MAX`, with `-data` after a reserved name (`labels.csv` makes
    `labels-data`); always a valid dataset name."""
    stem = _basename(filename)
    if stem.lower().endswith(CSV_SUFFIX):
        stem = stem[: -len(CSV_SUFFIX)]
    name = _UNSAFE.sub("-", stem)[:DATASET_MAX].strip("-.")
    if name.lower() in RESERVED:
        name = f"{name}-data"
    return name if is_dataset_name(name) else "dataset"


def object_filename(filename: str) -> str:
    """An uploaded file's name inside the bucket: safe characters, at most `FILE_MAX` of them,
    ending in `.csv` (the suffix the pipeline's trigger listens for)."""
    name = _UNSAFE.sub("_", _basename(filename)).lstrip(".")
    if name.lower().endswith(CSV_SUFFIX):
        name = name[: -len(CSV_SUFFIX)]
    name = name[: FILE_MAX - len(CSV_SUFFIX)] or "upload"
    return f"{name}{CSV_SUFFIX}"


def new_upload_id(now: datetime | None = None) -> str:
    """The name of a new upload's folder: its UTC time (so a listing is in upload order) and
    32 random bits (so uploads in the same second differ), e.g. `20261130-125517-3fa2c1d4`."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(4)}"
