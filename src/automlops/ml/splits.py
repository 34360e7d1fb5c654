"""Seeded train/validation/test splits, stratified by class for classification."""

from __future__ import annotations

import numpy as np


def split_indices(
    n: int,
    fractions: tuple[float, float, float],
    *,
    seed: int,
    strata: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of the three parts, each sorted.

    With `strata` every class is cut in the same proportions, so each part keeps the class
    balance (a class of one or two rows lands in train first, then validation).
    """
    rng = np.random.default_rng(seed)
    # 32-bit row numbers where they fit: the same indices in half the memory on big uploads.
    index_type = np.int32 if n < 2**31 else np.int64
    classes = [None] if strata is None else np.unique(strata)
    parts: list[list[np.ndarray]] = [[], [], []]
    for value in classes:
        if strata is None:
            group = np.arange(n, dtype=index_type)
        else:
            group = np.flatnonzero(strata == value).astype(index_type)
        shuffled = rng.permutation(group)
        del group  # one class's row numbers at a time: big uploads have millions
        size = len(shuffled)
        n_train = round(size * fractions[0])
        n_valid = round(size * fractions[1])
        n_train = min(max(n_train, 1), size)
        n_valid = min(n_valid, size - n_train)
        parts[0].append(shuffled[:n_train])
        parts[1].append(shuffled[n_train : n_train + n_valid])
        parts[2].append(shuffled[n_train + n_valid :])
    train, validation, test = (_sorted_concatenation(p) for p in parts)
    return train, validation, test


def _sorted_concatenation(pieces: list[np.ndarray]) -> np.ndarray:
    if not pieces:
        return np.array([], dtype=np.int64)
    joined = np.concatenate(pieces)
    joined.sort()  # in place: no second copy
    return joined


def sample_indices(n: int, size: int, *, seed: int, strata: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of `size` of `n` rows drawn without replacement (all rows if n <= size).

    With `strata` each class keeps its share (rounded, at least one row of every class).
    """
    if n <= size:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if strata is None:
        return np.sort(rng.choice(n, size=size, replace=False))
    picked = []
    for value in np.unique(strata):
        group = np.flatnonzero(strata == value)
        take = min(len(group), max(1, round(size * len(group) / n)))
        picked.append(rng.choice(group, size=take, replace=False))
    return np.sort(np.concatenate(picked))
