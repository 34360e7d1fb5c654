"""Loaded models for serving: each version loaded once, the champion followed without restarts."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from automlops import keys
from automlops.errors import AutomlopsError, NotFoundError
from automlops.ml.predictor import Predictor
from automlops.ports import ObjectStore
from automlops.registry import Registry


@dataclass
class _Champion:
    version: int | None
    token: str | None
    checked_at: float


class ModelCache:
    """Predictors keyed by (dataset, version), and each dataset's champion.

    The champion pointer is re-read from the registry at most every `refresh_s` seconds, so a
    promotion or rollback takes effect without a restart and requests never wait on disk. A new
    version is fully loaded before the pointer moves: requests see the old or the new model.
    """

    def __init__(self, store: ObjectStore, registry: Registry, *, refresh_s: float = 1.0) -> None:
        self.store = store
        self.registry = registry
        self.refresh_s = refresh_s
        self._predictors: dict[tuple[str, int], Predictor] = {}
        self._champions: dict[str, _Champion] = {}
        self._lock = threading.Lock()

    def version(self, dataset: str, version: int) -> Predictor:
        """The predictor of one version (loaded on first use)."""
        cached = self._predictors.get((dataset, version))
        if cached is not None:
            return cached
        with self._lock:
            cached = self._predictors.get((dataset, version))
            if cached is None:
                entry = self.registry.read(dataset).get(version)
                data = self.store.get(entry.artifact_bucket, entry.artifact_key)
                cached = Predictor.from_bytes(data, entry.artifact_key)
                self._predictors[(dataset, version)] = cached
        return cached

    def preload(self) -> list[str]:
        """Load every dataset's champion now, so that no request waits for a model to load;
        the datasets loaded. One that cannot be loaded is left to answer its own requests."""
        loaded = []
        for dataset in self.registry.datasets():
            try:
                self.champion(dataset)
            except (AutomlopsError, ValueError, OSError):
                continue
            loaded.append(dataset)
        return loaded

    def champion(self, dataset: str) -> tuple[int, Predictor]:
        """The dataset's current champion; NotFoundError when it has none."""
        now = time.monotonic()
        state = self._champions.get(dataset)
        if state is None or now - state.checked_at >= self.refresh_s:
            state = self._refresh(dataset, state, now)
        if state.version is None:
            raise NotFoundError(f"no model serves dataset {dataset!r}")
        return state.version, self.version(dataset, state.version)

    def _refresh(self, dataset: str, state: _Champion | None, now: float) -> _Champion:
        info = self.store.head(self.registry.bucket, keys.registry_key(dataset))
        token = None if info is None else info.etag
        if state is not None and token == state.token:
            state.checked_at = now
            return state
        version = None if info is None else self.registry.read(dataset).champion
        if version is not None:
            self.version(dataset, version)  # load before switching the pointer
        new_state = _Champion(version=version, token=token, checked_at=now)
        self._champions[dataset] = new_state
        return new_state
