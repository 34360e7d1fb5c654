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


class UnservableVersion(AutomlopsError):
    """A registered version whose artifact cannot be loaded; the message says why."""


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

    Champions stay loaded; of the other versions (candidates being evaluated, superseded
    champions, versions called by number) only the `keep_others` most recently loaded do, so
    a server that lives through many promotions does not grow without bound.
    """

    def __init__(
        self,
        store: ObjectStore,
        registry: Registry,
        *,
        refresh_s: float = 1.0,
        keep_others: int = 4,
    ) -> None:
        self.store = store
        self.registry = registry
        self.refresh_s = refresh_s
        self.keep_others = keep_others
        self._predictors: dict[tuple[str, int], Predictor] = {}
        self._champions: dict[str, _Champion] = {}
        self._unservable: dict[tuple[str, int], str] = {}  # why each one failed to load
        self._lock = threading.Lock()

    def version(self, dataset: str, version: int) -> Predictor:
        """The predictor of one version (loaded on first use); NotFoundError when the registry
        has no such version, UnservableVersion when its artifact cannot be loaded."""
        cached = self._predictors.get((dataset, version))
        if cached is not None:
            return cached
        with self._lock:
            cached = self._predictors.get((dataset, version))
            if cached is None:
                cached = self._load(dataset, version)
                self._predictors[(dataset, version)] = cached
                self._evict(keep=(dataset, version))
        return cached

    def _load(self, dataset: str, version: int) -> Predictor:
        """Load one version. Called under the lock. An artifact that fails to load is
        remembered (artifacts are immutable) so it is not parsed again on every request."""
        reason = self._unservable.get((dataset, version))
        if reason is not None:
            raise UnservableVersion(reason)
        entry = self.registry.read(dataset).get(version)
        try:
            data = self.store.get(entry.artifact_bucket, entry.artifact_key)
        except (AutomlopsError, OSError) as exc:  # missing or unreadable now; maybe not later
            raise UnservableVersion(
                f"version {version} of {dataset!r} cannot be loaded: {exc}"
            ) from None
        try:
            return Predictor.from_bytes(data, entry.artifact_key)
        except Exception as exc:
            reason = f"version {version} of {dataset!r} cannot be loaded: {exc}"[:1000]
            self._unservable[(dataset, version)] = reason
            raise UnservableVersion(reason) from None

    def loaded(self) -> list[tuple[str, int]]:
        """The (dataset, version) pairs in memory, oldest load first."""
        return list(self._predictors)

    def _evict(self, keep: tuple[str, int] | None = None) -> None:
        """Drop the oldest versions beyond `keep_others` that are neither a champion nor
        `keep` (the one just loaded, maybe a champion-to-be). Called under the lock.

        A request already holding a dropped predictor finishes with it; a later request for
        that version loads it again."""
        kept = {(d, s.version) for d, s in self._champions.items()} | {keep}
        others = [key for key in self._predictors if key not in kept]
        for key in others[: max(0, len(others) - self.keep_others)]:
            del self._predictors[key]

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
        with self._lock:
            self._evict()  # the superseded champion is now one of the others
        return new_state
