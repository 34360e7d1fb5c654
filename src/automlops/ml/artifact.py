"""The model artifact: model.tar.gz holding only data, never code.

Members: metadata.json (schema, labels, metrics, lineage), transform.json (the fitted
preprocessing) and the model in its library's own format (XGBoost UBJSON).
"""

from __future__ import annotations

import io
import tarfile
import zlib
from typing import Any

from pydantic import BaseModel, Field

from automlops.config import Task
from automlops.errors import PermanentError
from automlops.ml.columns.target import TargetSpec
from automlops.ml.columns.transform import FittedTransform
from automlops.ml.tuning.outcome import Refit, Selection

METADATA = "metadata.json"
TRANSFORM = "transform.json"
_MAX_MEMBER_BYTES = 512 * 1024 * 1024  # the model file
_MAX_JSON_BYTES = 64 * 1024 * 1024  # metadata.json and transform.json, parsed whole in memory
_MAX_MEMBERS = 64  # ours have three


class InputColumn(BaseModel):
    """A raw column callers send: its name and how the model reads it."""

    name: str
    kind: str


class Lineage(BaseModel):
    source_bucket: str
    source_key: str
    source_sha256: str
    schema_key: str
    transform_key: str
    split_keys: dict[str, str]
    training_run: str


class ModelMetadata(BaseModel):
    format_version: int = 1
    dataset: str
    run_id: str
    created_at: str
    task: Task
    target: TargetSpec
    inputs: list[InputColumn]
    feature_names: list[str]
    learner: str
    model_file: str
    params: dict[str, Any] = Field(default_factory=dict)
    best_iteration: int | None = None
    threshold: float | None = None  # binary: P(positive) >= threshold -> positive label
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)  # per split
    trials: list[dict[str, Any]] = Field(default_factory=list)
    # How the configuration was chosen (an ensemble's members with their refits) and what a
    # single model was fitted on. Prose (str) in artifacts written before these were typed.
    selection: Selection | str | None = None
    refit: Refit | str | None = None
    lineage: Lineage


class ModelArtifact(BaseModel):
    metadata: ModelMetadata
    transform: FittedTransform
    model: bytes

    def to_tar_gz(self) -> bytes:
        """Pack into a gzip'd tarball (deterministic member order)."""
        buffer = io.BytesIO()
        members = {
            METADATA: self.metadata.model_dump_json(indent=1).encode(),
            TRANSFORM: self.transform.model_dump_json(indent=1).encode(),
            self.metadata.model_file: self.model,
        }
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, payload in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(payload))
        return buffer.getvalue()

    @classmethod
    def from_tar_gz(cls, data: bytes, source: str = "model.tar.gz") -> ModelArtifact:
        """Unpack in memory: nothing is extracted to disk and nothing in it is executed.

        Only regular-file members with plain relative names are considered (symlinks, hard
        links, devices, `../` and absolute names are ignored), and only the three members
        the metadata names are read, each within its size limit (checked on the header, before
        reading), from an archive of at most `_MAX_MEMBERS` members: a hostile archive cannot
        write outside anything, run code or exhaust memory.
        """
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                members: dict[str, tarfile.TarInfo] = {}
                for count, member in enumerate(tar, start=1):
                    if count > _MAX_MEMBERS:
                        raise PermanentError(
                            f"{source}: model archive has over {_MAX_MEMBERS} members"
                        )
                    name = member.name.removeprefix("./")
                    if member.isfile() and _plain(name):
                        members[name] = member

                def read(name: str, limit: int = _MAX_JSON_BYTES) -> bytes:
                    if members[name].size > limit:
                        raise PermanentError(
                            f"{source}: model archive member {name} is {members[name].size} "
                            f"bytes, over the limit of {limit}"
                        )
                    handle = tar.extractfile(members[name])
                    assert handle is not None  # regular files always have contents
                    return handle.read()

                try:
                    metadata = ModelMetadata.model_validate_json(read(METADATA))
                    transform = FittedTransform.model_validate_json(read(TRANSFORM))
                    model = read(metadata.model_file, _MAX_MEMBER_BYTES)
                except KeyError as exc:
                    raise PermanentError(f"{source}: model archive lacks {exc.args[0]}") from None
                except ValueError as exc:
                    raise PermanentError(f"{source}: invalid model metadata: {exc}") from None
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise PermanentError(f"{source}: not a readable model archive: {exc}") from None
        return cls(metadata=metadata, transform=transform, model=model)


def _plain(name: str) -> bool:
    """A relative member name without `..`, empty or absolute parts (as written by to_tar_gz)."""
    parts = name.split("/")
    return (
        not name.startswith("/")
        and "\\" not in name
        and all(p not in ("", ".", "..") for p in parts)
    )
