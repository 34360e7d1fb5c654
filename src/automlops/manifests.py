"""Reading and writing dataset manifests in the data bucket."""

from __future__ import annotations

from automlops import keys, names
from automlops.config import Manifest
from automlops.errors import PermanentError
from automlops.ports import ObjectStore


def load_manifest(store: ObjectStore, bucket: str, dataset: str) -> Manifest:
    """The stored manifest of a dataset, or the defaults when none was stored.

    PermanentError for a dataset whose name the name rule refuses (a file put by hand into
    such a folder): no retry can make that name valid.
    """
    if store.head(bucket, keys.manifest_key(dataset)) is None:
        try:
            names.check_dataset_name(dataset)
        except ValueError as exc:
            raise PermanentError(f"data/{dataset}/ is not a dataset folder: {exc}") from None
        return Manifest(dataset=dataset)
    raw = store.get(bucket, keys.manifest_key(dataset))
    try:
        return Manifest.model_validate_json(raw)
    except ValueError as exc:
        raise PermanentError(f"{keys.manifest_key(dataset)}: invalid manifest: {exc}") from None


def save_manifest(store: ObjectStore, bucket: str, manifest: Manifest) -> None:
    store.put(
        bucket, keys.manifest_key(manifest.dataset), manifest.model_dump_json(indent=2).encode()
    )
