"""Exact path-dependent TreeSHAP over a `Forest`, compiled with numba, a leaf at a time.

The values are those of Lundberg et al.'s TreeSHAP (what XGBoost's `pred_contribs`, LightGBM's
`pred_contrib` and shap's TreeExplainer compute), reached another way so that a row costs
about leaves x depth per tree instead of leaves x depth^2 (the idea of Yang's Fast TreeSHAP
v2: what a leaf gives each feature depends on the row only through which of its path's
features the row follows, so it can be tabled per leaf ahead of time).

One leaf l with value v, its path's distinct features P (d of them) and, per feature j in P,
the share z_j of the training cover that followed the path's splits on j. A row follows the
path on the features Q of P whose every split on the path it passes. With
g(S) = v * prod_{j in P - S} z_j, w(s) = s! (d - s - 1)! / d! (Shapley weights) and

    H(Q) = sum over S in Q of w(|S|) g(S),   K(Q) = sum over nonempty S in Q of w(|S| - 1) g(S),

the leaf gives feature i: K(Q) - K(Q - i) - H(Q - i) when i is in Q, and -H(Q) when it is
not. Both sums reduce to the elementary symmetric polynomials of Q's z (`_symmetric`), so a
leaf's gifts to its d features for each of the 2^d patterns Q cost 2^d x d once and are
tabled side by side; a row then reads d consecutive numbers per leaf. Leaves with too many
distinct features for a table (or past the table budget) compute the gifts for the row's Q
directly, d^2 per leaf: the classic cost, still exact.

What a tree gives a row depends only on which way the row goes at each of the tree's splits:
rows that agree on all of them get the same values. So, tree by tree, the rows of a call are
grouped by that pattern (a key of one bit per split, 63 to a 64-bit word), each group's values
are computed once, and each row adds its group's values for the tree's features. Groups are
visited in key order, each from the one before by walking again only the subtrees under the
splits whose direction changed and updating only the leaves there whose pattern changed (the
same values up to float64 rounding). On the bank data a depth-5 XGBoost tree sees about 3% as
many patterns as rows, a 31-leaf LightGBM tree 27%, a tuned depth-7 XGBoost tree 20-30%. One
row alone is walked without grouping, its table reads held until its walk of a tree is done so
that their cache misses overlap.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numba
import numpy as np

from automlops.ml.explain.forest import (
    LIGHTGBM_NAN,
    LIGHTGBM_NONE,
    LIGHTGBM_ZERO,
    XGBOOST,
    Forest,
    cut_trees,
)

# Leaves of at most this many distinct path features get tables (2^d x d entries each), while
# the model's tables stay within the budget (entries of 8 bytes: 32 MB).
MAX_TABLE_DEPTH = 14
TABLE_BUDGET = 1 << 22
# Trees of more splits are cut into parts of at most this many to group rows (`cut_trees`).
# CPU time on 10,000 bank rows against whole trees: the tuned champion (depth 7-8, ~50 splits a
# tree) 0.47x with parts of 8, 0.38x of 12, 0.36x of 16, 0.47x of 24; first-trial LightGBM (30
# splits) 0.75x, 0.62x, 0.60x, 0.65x.
PART_SPLITS = 16
# Splits a key word holds: 63, so that words are never negative (-1 marks an empty slot).
KEY_BITS = 63
_SPREAD = -7046029254386353131  # 0x9E3779B97F4A7C15 (Fibonacci hashing) as a signed int64
# Rows explained in one pass of the kernel at most (see `TreeShap.contributions`).
ROW_BLOCK = 10_000
# Fewer rows than this are explained on the calling thread alone (no hand-off cost).
PARALLEL_MIN_ROWS = 256
_ZERO = 1e-35  # LightGBM reads |x| <= this as zero (kZeroThreshold)

# Compiled code is cached beside this module when the directory is writable (else numba's
# user cache when NUMBA_CACHE_DIR names one); otherwise each process compiles once.
_CACHE = os.access(Path(__file__).parent, os.W_OK) or bool(os.environ.get("NUMBA_CACHE_DIR"))
_jit = numba.njit(cache=_CACHE, nogil=True)
# Called once per changed subtree of every group: inlined into its caller, not called with its
# two dozen array arguments each time.
_jit_inline = numba.njit(cache=_CACHE, nogil=True, inline="always")


@dataclass(frozen=True)
class Tables:
    """Per leaf, its gift to each of its d path features for every pattern Q of the features
    a row follows: `gift[start[leaf] + Q * d + i]` (`start` -1: the leaf is computed
    directly)."""

    start: np.ndarray
    gift: np.ndarray


class TreeShap:
    """Exact TreeSHAP for one model's trees: tables built once, rows explained on demand."""

    def __init__(
        self,
        forest: Forest,
        *,
        max_depth: int = MAX_TABLE_DEPTH,
        budget: int = TABLE_BUDGET,
        part_splits: int | None = PART_SPLITS,
    ) -> None:
        self.forest = forest
        # Rows are grouped per part of a tree (`cut_trees`; None: per whole tree); one row
        # alone walks the whole trees. Both number the leaves alike: one set of tables.
        self.parts = forest if part_splits is None else cut_trees(forest, part_splits)
        self.tables = tables(self.parts, max_depth=max_depth, budget=budget)
        self.base = forest.offset + expected_values(forest)
        self._widest = max(forest.widest_tree, self.parts.widest_tree)
        self._weights = _weights(int(forest.depth.max(initial=0)))
        self.index = TreeIndex.of(self.parts)
        self._width = int(forest.feature.max(initial=-1)) + 1  # features the splits read

    def contributions(self, features: np.ndarray, nthread: int = 1) -> np.ndarray:
        """(rows, outputs, features) contributions; base + their sum = the model's margin."""
        x = _as_read(self.forest, features)
        if x.ndim != 2 or x.shape[1] < self._width:  # the kernel does not check its reads
            raise ValueError(f"features of shape {x.shape} for trees reading {self._width}")
        out = np.zeros((len(x), self.forest.outputs, x.shape[1]))
        if len(x) == 1:  # the whole trees, walked
            f, t = self.forest, self.tables
            _explain_row(
                x[0], out[0], f.feature, f.threshold, f.rule, f.default_left, f.parent,
                f.is_left, f.slot, f.leaf, f.value, f.depth, f.slot_feature, f.zero_fraction,
                f.tree_start, f.output, t.start, t.gift, self._widest, self._weights,
            )  # fmt: skip
            return out
        # Rows in blocks: a block's grouping state stays in cache (on the bank champion 41,188
        # rows in one call took 2.5x the CPU time of the same rows in blocks of 10,000).
        workers = max(min(nthread, len(x) // PARALLEL_MIN_ROWS), 1)
        # As many blocks for every worker (5 blocks over 2 threads would leave one thread 3).
        blocks = -(-len(x) // (ROW_BLOCK * workers)) * workers
        bounds = np.linspace(0, len(x), blocks + 1).astype(int).tolist()
        ranges = list(itertools.pairwise(bounds))
        if workers <= 1:
            self._blocks(x, out, ranges)
            return out
        # The kernel releases the GIL: threads over the blocks use every core asked for.
        futures = [_pool().submit(self._blocks, x, out, ranges[w::workers]) for w in range(workers)]
        for future in futures:
            future.result()
        return out

    def _blocks(self, x: np.ndarray, out: np.ndarray, ranges: list[tuple[int, int]]) -> None:
        for a, b in ranges:
            self._run(x[a:b], out[a:b])

    def _run(self, x: np.ndarray, out: np.ndarray) -> None:
        """Explains `x` into `out`, rows grouped by their way through each part."""
        f, t, i = self.parts, self.tables, self.index
        _explain(
            x, out, f.feature, f.threshold, f.rule, f.default_left, f.parent, f.is_left, f.slot,
            f.leaf, f.value, f.depth, f.slot_feature, f.zero_fraction, f.tree_start, f.output,
            t.start, t.gift, self._widest, self._weights, i.word, i.shift, i.subtree_end,
            i.splits,
            i.split_node, i.split_start, i.most_words, i.features, i.feature_start,
            i.slot_local,
        )  # fmt: skip


@dataclass(frozen=True)
class TreeIndex:
    """Per tree, what grouping rows by their way through it needs. A row's key is its
    direction at each split (1: left), `KEY_BITS` splits a word, the tree's splits level by
    level (the root, then the splits below it, ...) from the first word's highest bit: per node
    `word` and `shift` place its split's bit (-1 at leaves). Per tree: the split count
    (`splits`), each split's node within the tree in that order
    (`split_node[split_start[t]:split_start[t + 1]]`), the features it splits on
    (`features[feature_start[t]:feature_start[t + 1]]`) and, per leaf slot, that feature's
    place in its tree's list (`slot_local`). Per node, where its subtree ends within the tree
    (`subtree_end`, preorder)."""

    word: np.ndarray
    shift: np.ndarray
    subtree_end: np.ndarray
    splits: np.ndarray
    split_node: np.ndarray
    split_start: np.ndarray
    features: np.ndarray
    feature_start: np.ndarray
    slot_local: np.ndarray

    @classmethod
    def of(cls, forest: Forest) -> TreeIndex:
        word = np.full(len(forest.leaf), -1, np.int64)
        shift = np.full(len(forest.leaf), -1, np.int64)
        size = np.ones(len(forest.leaf), np.int64)  # nodes in each node's subtree
        level = np.zeros(len(forest.leaf), np.int64)
        splits = np.zeros(forest.trees, np.int64)
        split_node: list[np.ndarray] = []
        features: list[np.ndarray] = []
        slot_local = np.zeros_like(forest.slot_feature)
        leaf_nodes = forest.leaf >= 0
        for t in range(forest.trees):
            a, b = forest.tree_start[t], forest.tree_start[t + 1]
            for n in range(a + 1, b):  # parents before children (preorder)
                level[n] = level[a + forest.parent[n]] + 1
            for n in range(b - 1, a, -1):
                size[a + forest.parent[n]] += size[n]
            preorder = np.flatnonzero(~leaf_nodes[a:b])
            # Shallow splits' bits highest: in key order, neighbouring keys mostly differ at
            # deep splits, above few leaves.
            internal = preorder[np.argsort(level[a + preorder], kind="stable")]
            order = np.arange(len(internal))
            word[internal + a] = order // KEY_BITS
            shift[internal + a] = KEY_BITS - 1 - order % KEY_BITS
            splits[t] = len(internal)
            split_node.append(internal)
            used = np.unique(forest.feature[internal + a])
            features.append(used)
            leaves = forest.leaf[a:b][leaf_nodes[a:b]]
            local = np.searchsorted(used, forest.slot_feature[leaves])
            slot_local[leaves] = np.minimum(local, max(len(used) - 1, 0))  # unused slots: any
        end = np.arange(len(forest.leaf)) - np.repeat(
            forest.tree_start[:-1], np.diff(forest.tree_start)
        )
        return cls(
            word, shift, end + size, splits, _flat(split_node, np.int64),
            _offsets(split_node), _flat(features, np.int32), _offsets(features),
            slot_local.astype(np.int32),
        )  # fmt: skip

    @property
    def most_words(self) -> int:
        """The longest key, in words (at least one)."""
        return max(1, int(self.splits.max(initial=0) + KEY_BITS - 1) // KEY_BITS)


def _flat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _offsets(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)


def margin(forest: Forest, features: np.ndarray) -> np.ndarray:
    """The margin `forest` gives each row: (rows, outputs) (to check a layout against its
    booster)."""
    x = _as_read(forest, features)
    out = np.zeros((len(x), forest.outputs))
    f = forest
    _margin(x, out, f.feature, f.threshold, f.rule, f.default_left, f.leaf, f.value,
            f.tree_start, f.output)  # fmt: skip
    return out + f.offset


def _as_read(forest: Forest, features: np.ndarray) -> np.ndarray:
    """Features as the booster reads them: XGBoost as float32; LightGBM as given when float32
    or float64 (it compares in double), else as float64."""
    dtype = np.dtype(np.float32) if forest.float32 else np.asarray(features).dtype
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64)
    return np.ascontiguousarray(features, dtype=dtype)


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="treeshap")


@cache
def _weights(width: int) -> np.ndarray:
    """w[d, s] = s! (d - s - 1)! / d!: the Shapley weight of a coalition of s among d players
    (0 outside 0 <= s < d)."""
    w = np.zeros((width + 1, width + 1))
    for d in range(1, width + 1):
        for s in range(d):
            # s! (d-s-1)! / d! = 1 / (d * C(d-1, s)), computed in floats to stay finite.
            w[d, s] = 1.0 / (d * _choose(d - 1, s))
    return w


def _choose(n: int, k: int) -> float:
    result = 1.0
    for i in range(k):
        result = result * (n - i) / (i + 1)
    return result


def expected_values(forest: Forest) -> np.ndarray:
    """Per output, the sum over trees of the cover-weighted mean of the leaves (TreeSHAP's
    base value without the offset)."""
    reach = np.prod(forest.zero_fraction, axis=1)  # unused slots hold 1
    tree_of_leaf = np.zeros(len(forest.value), np.int64)
    leaf_nodes = np.flatnonzero(forest.leaf >= 0)
    tree_of_leaf[forest.leaf[leaf_nodes]] = (
        np.searchsorted(forest.tree_start, leaf_nodes, side="right") - 1
    )
    base = np.zeros(forest.outputs)
    np.add.at(base, forest.output[tree_of_leaf], forest.value * reach)
    return base


def tables(forest: Forest, *, max_depth: int, budget: int) -> Tables:
    """The gift tables of every leaf of at most `max_depth` distinct path features, shallow
    leaves first, while the entries stay within `budget`."""
    depth = forest.depth.astype(np.int64)
    sizes = np.where(depth <= max_depth, (1 << np.minimum(depth, 62)) * depth, 0)
    order = np.argsort(depth, kind="stable")
    within = np.cumsum(sizes[order]) <= budget
    chosen = np.zeros(len(sizes), np.bool_)
    chosen[order[within]] = sizes[order[within]] > 0
    start = np.full(len(sizes), -1, np.int64)
    offsets = np.concatenate([[0], np.cumsum(np.where(chosen, sizes, 0))])
    start[chosen] = offsets[:-1][chosen]
    gift = np.zeros(int(offsets[-1]))
    _fill_tables(
        forest.value, forest.depth, forest.zero_fraction, start, gift,
        _weights(int(forest.depth.max(initial=0))),
    )  # fmt: skip
    return Tables(start=start, gift=gift)


@_jit
def _goes_left(x: float, threshold: float, rule: int, default_left: bool) -> bool:
    if rule == XGBOOST:
        if np.isnan(x):
            return default_left
        return x < threshold
    if np.isnan(x) and rule != LIGHTGBM_NAN:
        x = 0.0
    if (rule == LIGHTGBM_ZERO and -_ZERO <= x <= _ZERO) or (rule == LIGHTGBM_NAN and np.isnan(x)):
        return default_left
    return x <= threshold


@_jit
def _symmetric(mask: np.int64, depth: int, z: np.ndarray, e: np.ndarray) -> int:
    """e[m] = the m-th elementary symmetric polynomial of z over the slots in `mask`; returns
    how many slots that is."""
    e[0] = 1.0
    for m in range(1, depth + 1):
        e[m] = 0.0
    q = 0
    for j in range(depth):
        if (mask >> j) & 1:
            q += 1
            for m in range(q, 0, -1):
                e[m] += z[j] * e[m - 1]
    return q


@_jit
def _h_and_k(
    e: np.ndarray, q: int, depth: int, w: np.ndarray, outside: float
) -> tuple[float, float]:
    """H(Q) and K(Q) divided by the leaf value, from Q's symmetric polynomials `e` (|Q| = q)
    and the product of z outside Q."""
    h = 0.0
    k = 0.0
    for m in range(q + 1):
        h += w[depth, q - m] * e[m]
        if q - m - 1 >= 0:
            k += w[depth, q - m - 1] * e[m]
    return h * outside, k * outside


@_jit
def _fill_tables(
    value: np.ndarray,
    depth: np.ndarray,
    zero_fraction: np.ndarray,
    start: np.ndarray,
    gift: np.ndarray,
    w: np.ndarray,
) -> None:
    width = zero_fraction.shape[1]
    for leaf in range(len(value)):
        if start[leaf] < 0:
            continue
        d = depth[leaf]
        z = zero_fraction[leaf]
        size = 1 << d
        # Symmetric polynomials and the product of z inside each subset, built from the subset
        # without its lowest slot; then H and K of every subset.
        e = np.zeros((size, width + 1))
        inside = np.ones(size)
        e[0, 0] = 1.0
        for mask in range(1, size):
            low = 0
            while not (mask >> low) & 1:
                low += 1
            rest = mask ^ (1 << low)
            inside[mask] = inside[rest] * z[low]
            e[mask, 0] = 1.0
            for m in range(1, d + 1):
                e[mask, m] = e[rest, m] + z[low] * e[rest, m - 1]
        h = np.empty(size)
        k = np.empty(size)
        full = size - 1
        for mask in range(size):
            q = 0
            for j in range(d):
                q += (mask >> j) & 1
            h[mask], k[mask] = _h_and_k(e[mask], q, d, w, inside[full ^ mask])
        v = value[leaf]
        for mask in range(size):
            at = start[leaf] + mask * d
            for i in range(d):
                if (mask >> i) & 1:
                    without = mask ^ (1 << i)
                    gift[at + i] = v * (k[mask] - k[without] - h[without])
                else:
                    gift[at + i] = -v * h[mask]


@_jit
def _leaf_direct(
    mask: np.int64,
    d: int,
    z: np.ndarray,
    v: float,
    w: np.ndarray,
    e: np.ndarray,
    e_without: np.ndarray,
    phi: np.ndarray,
) -> None:
    """One leaf's gift to each of its slots for the row's `mask`, computed without a table."""
    q = _symmetric(mask, d, z, e)
    outside = 1.0
    for j in range(d):
        if not (mask >> j) & 1:
            outside *= z[j]
    h_q, k_q = _h_and_k(e, q, d, w, outside)
    for i in range(d):
        if not (mask >> i) & 1:
            phi[i] = -v * h_q
            continue
        # Q - i: divide i's factor (1 + z_i t) out of Q's polynomial.
        e_without[0] = 1.0
        for m in range(1, q):
            e_without[m] = e[m] - z[i] * e_without[m - 1]
        h_r, k_r = _h_and_k(e_without, q - 1, d, w, outside * z[i])
        phi[i] = v * (k_q - k_r - h_r)


@_jit
def _add_split_bits(
    column: np.ndarray, threshold: float, rule: int, default_left: bool, bit: int, key: np.ndarray
) -> None:
    """Sets `bit` in key[r] for each row r that goes left at a split (`_goes_left` over a
    column, written without branches so that the loop vectorises)."""
    nan_left = default_left
    if rule == LIGHTGBM_NONE:
        nan_left = threshold >= 0.0  # LightGBM reads NaN as 0 there
    if rule == XGBOOST:
        for r in range(len(column)):
            v = column[r]
            key[r] |= bit * np.int64((v < threshold) | ((v != v) & nan_left))
    elif rule == LIGHTGBM_ZERO:
        for r in range(len(column)):
            v = column[r]
            missing = (v != v) | ((v >= -_ZERO) & (v <= _ZERO))
            key[r] |= bit * np.int64(((v <= threshold) & ~missing) | (missing & default_left))
    else:
        for r in range(len(column)):
            v = column[r]
            key[r] |= bit * np.int64((v <= threshold) | ((v != v) & nan_left))


@_jit
def _add_gifts(
    row: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    rule: np.ndarray,
    default_left: np.ndarray,
    first: int,
    nodes: int,
    left: np.ndarray,
    masks: np.ndarray,
    target: np.ndarray,
    place: np.ndarray,
    parent: np.ndarray,
    is_left: np.ndarray,
    slot: np.ndarray,
    leaf: np.ndarray,
    value: np.ndarray,
    depth: np.ndarray,
    zero_fraction: np.ndarray,
    start: np.ndarray,
    gift: np.ndarray,
    w: np.ndarray,
    e: np.ndarray,
    e_without: np.ndarray,
    phi: np.ndarray,
    pending_leaf: np.ndarray,
    pending_at: np.ndarray,
) -> None:
    """Adds what one tree gives `row` to `target[place[leaf, i]]` for each leaf's slot i: the
    tree's values, walking its nodes once in preorder (a split's direction, kept in `left`,
    is known before its children are reached)."""
    # Table reads wait until the walk is done: independent of each other then, their cache
    # misses (a row's patterns land anywhere in the tables) overlap instead of queueing.
    waiting = 0
    for n in range(nodes):
        node = first + n
        p = parent[node]
        if p < 0:
            mask = np.int64(-1)  # every slot followed until a split says otherwise
        else:
            mask = masks[p]
            if left[p] != is_left[node]:
                mask &= ~(np.int64(1) << slot[node])
        masks[n] = mask
        lf = leaf[node]
        if lf < 0:
            left[n] = _goes_left(
                row[feature[node]], threshold[node], rule[node], default_left[node]
            )
            continue
        d = depth[lf]
        if d == 0:
            continue  # a one-leaf tree: all of it is in the base
        mask &= (np.int64(1) << d) - 1
        at = start[lf]
        if at >= 0:
            pending_leaf[waiting] = lf
            pending_at[waiting] = at + mask * d
            waiting += 1
        else:
            _leaf_direct(mask, d, zero_fraction[lf], value[lf], w, e, e_without, phi)
            for i in range(d):
                target[place[lf, i]] += phi[i]
    for j in range(waiting):
        lf = pending_leaf[j]
        at = pending_at[j]
        for i in range(depth[lf]):
            target[place[lf, i]] += gift[at + i]


@_jit_inline
def _update_gifts(
    first: int,
    begin: int,
    end: int,
    key: np.ndarray,
    word: np.ndarray,
    shift: np.ndarray,
    masks: np.ndarray,
    held: np.ndarray,
    target: np.ndarray,
    place: np.ndarray,
    parent: np.ndarray,
    is_left: np.ndarray,
    slot: np.ndarray,
    leaf: np.ndarray,
    value: np.ndarray,
    depth: np.ndarray,
    zero_fraction: np.ndarray,
    start: np.ndarray,
    gift: np.ndarray,
    w: np.ndarray,
    e: np.ndarray,
    e_without: np.ndarray,
    phi: np.ndarray,
    walked: np.ndarray,
    stamp: int,
) -> None:
    """`_add_gifts` for the directions in `key` (a split's bit set: left there) over the
    tree's nodes `begin` to `end` (preorder; a whole subtree or the whole tree) and a `target`
    that already holds the tree's values for other directions, leaf l's for pattern held[l]
    (-1: none yet): only the leaves whose pattern changed are taken out and put back with the
    new one. Nodes outside keep their masks from the last call: the caller passes every
    subtree under a split whose direction changed. Nodes walked get `stamp` in `walked`."""
    masks[0] = np.int64(-1)
    for n in range(begin, end):
        node = first + n
        walked[node] = stamp
        p = parent[node]
        above = first + p
        went_left = (key[word[above]] >> shift[above]) & 1
        # Without branches: the row's side and the path's are a coin toss, badly predicted.
        mismatch = went_left ^ np.int64(is_left[node])
        mask = masks[p] & ~(mismatch << slot[node])
        masks[n] = mask
        lf = leaf[node]
        if lf < 0:
            continue
        d = depth[lf]
        if d == 0:
            continue
        mask &= (np.int64(1) << d) - 1
        before = held[lf]
        if mask == before:
            continue
        held[lf] = mask
        at = start[lf]
        if at >= 0:
            now = at + mask * d
            if before < 0:
                for i in range(d):
                    target[place[lf, i]] += gift[now + i]
            else:
                was = at + before * d
                for i in range(d):
                    target[place[lf, i]] += gift[now + i] - gift[was + i]
        else:
            if before >= 0:
                _leaf_direct(before, d, zero_fraction[lf], value[lf], w, e, e_without, phi)
                for i in range(d):
                    target[place[lf, i]] -= phi[i]
            _leaf_direct(mask, d, zero_fraction[lf], value[lf], w, e, e_without, phi)
            for i in range(d):
                target[place[lf, i]] += phi[i]


@_jit
def _highest_bit(d: np.int64) -> int:
    """The place of the highest bit set in d > 0."""
    top = 0
    for step in (32, 16, 8, 4, 2, 1):
        if d >> step:
            d >>= step
            top += step
    return top


@_jit
def _group_rows(
    row_key: np.ndarray, words: int, slots: np.ndarray, group_key: np.ndarray, group: np.ndarray
) -> int:
    """Numbers the distinct keys among the rows (open addressing): group[r] is row r's,
    group_key[g] group g's key; returns how many groups."""
    rows = row_key.shape[1]
    size = len(slots)
    drop = 64
    while (np.int64(1) << (64 - drop)) < size:  # size is a power of two
        drop -= 1
    slots[:] = -1
    groups = 0
    for r in range(rows):
        h = np.int64(0)
        for k in range(words):
            h = (h ^ row_key[k, r]) * _SPREAD
        # The product's high bits, which every bit of the key moves (a small tree's key has
        # only high bits, which leave the low bits of the product at zero).
        at = (h >> drop) & (size - 1)
        while True:
            g = slots[at]
            if g < 0:
                g = groups
                slots[at] = g
                for k in range(words):
                    group_key[g, k] = row_key[k, r]
                groups += 1
                break
            same = True
            for k in range(words):
                if group_key[g, k] != row_key[k, r]:
                    same = False
                    break
            if same:
                break
            at = (at + 1) & (size - 1)
        group[r] = g
    return groups


@_jit
def _key_order(group_key: np.ndarray, groups: int, words: int) -> np.ndarray:
    """The groups in the order of their keys read as reflected Gray codes (first word most
    significant): keys in ascending order but each half of the range reversed below its first
    bit, so that two neighbours differ in as few later bits as they can."""
    rank = np.empty((groups, words), np.int64)
    full = (np.int64(1) << KEY_BITS) - 1
    for g in range(groups):
        parity = 0  # of the bits in the words before
        for k in range(words):
            b = group_key[g, k]
            for step in (1, 2, 4, 8, 16, 32):  # each bit xor every bit above it
                b ^= b >> step
            if parity:
                b ^= full
            parity = b & 1
            rank[g, k] = b
    # A radix sort, a byte at a time from the least significant (a tree's keys leave many
    # bytes alike: those passes are skipped).
    order = np.arange(groups)
    if groups < 2:
        return order
    spare = np.empty(groups, np.int64)
    count = np.empty(257, np.int64)
    for k in range(words - 1, -1, -1):
        for shift in range(0, KEY_BITS, 8):
            count[:] = 0
            for j in range(groups):
                count[((rank[order[j], k] >> shift) & 255) + 1] += 1
            if count[((rank[order[0], k] >> shift) & 255) + 1] == groups:
                continue  # one value of this byte: the order stands
            for b in range(256):
                count[b + 1] += count[b]
            for j in range(groups):
                digit = (rank[order[j], k] >> shift) & 255
                spare[count[digit]] = order[j]
                count[digit] += 1
            order, spare = spare, order
    return order


@_jit
def _explain_row(
    row: np.ndarray,
    out: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    rule: np.ndarray,
    default_left: np.ndarray,
    parent: np.ndarray,
    is_left: np.ndarray,
    slot: np.ndarray,
    leaf: np.ndarray,
    value: np.ndarray,
    depth: np.ndarray,
    slot_feature: np.ndarray,
    zero_fraction: np.ndarray,
    tree_start: np.ndarray,
    output: np.ndarray,
    start: np.ndarray,
    gift: np.ndarray,
    widest: int,
    w: np.ndarray,
) -> None:
    """One row (`out`: its (outputs, features)), walked through every tree: grouping would
    cost and save nothing."""
    width = slot_feature.shape[1]
    masks = np.empty(widest, np.int64)
    left = np.empty(widest, np.bool_)
    e = np.empty(width + 1)
    e_without = np.empty(width + 1)
    phi = np.empty(width)
    pending_leaf = np.empty(widest, np.int64)
    pending_at = np.empty(widest, np.int64)
    for t in range(len(tree_start) - 1):
        first = tree_start[t]
        _add_gifts(
            row, feature, threshold, rule, default_left, first, tree_start[t + 1] - first, left,
            masks, out[output[t]], slot_feature, parent, is_left, slot, leaf, value, depth,
            zero_fraction, start, gift, w, e, e_without, phi, pending_leaf, pending_at,
        )  # fmt: skip


@_jit
def _explain(
    x: np.ndarray,
    out: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    rule: np.ndarray,
    default_left: np.ndarray,
    parent: np.ndarray,
    is_left: np.ndarray,
    slot: np.ndarray,
    leaf: np.ndarray,
    value: np.ndarray,
    depth: np.ndarray,
    slot_feature: np.ndarray,
    zero_fraction: np.ndarray,
    tree_start: np.ndarray,
    output: np.ndarray,
    start: np.ndarray,
    gift: np.ndarray,
    widest: int,
    w: np.ndarray,
    word: np.ndarray,
    shift: np.ndarray,
    subtree_end: np.ndarray,
    splits: np.ndarray,
    split_node: np.ndarray,
    split_start: np.ndarray,
    most_words: int,
    tree_features: np.ndarray,
    feature_start: np.ndarray,
    slot_local: np.ndarray,
) -> None:
    rows = x.shape[0]
    width = slot_feature.shape[1]
    masks = np.empty(widest, np.int64)
    e = np.empty(width + 1)
    e_without = np.empty(width + 1)
    phi = np.empty(width)
    held = np.full(len(value), np.int64(-1))  # per leaf, the pattern `running` holds
    walked = np.zeros(len(leaf), np.int64)  # per node, the last group whose walk passed it
    stamp = 0
    size = 1
    while size < 2 * rows:
        size *= 2
    slots = np.empty(size, np.int64)
    row_key = np.empty((most_words, rows), np.int64)  # a word's bits of every row together
    group_key = np.empty((rows, most_words), np.int64)
    group = np.empty(rows, np.int64)
    columns = np.ascontiguousarray(x.T)  # a split reads one feature of every row
    most = 1
    for t in range(len(tree_start) - 1):
        most = max(most, feature_start[t + 1] - feature_start[t])
    values = np.empty((rows, most))
    running = np.empty(most)
    for t in range(len(tree_start) - 1):
        first = tree_start[t]
        nodes = tree_start[t + 1] - first
        o = output[t]
        words = max(1, (splits[t] + KEY_BITS - 1) // KEY_BITS)
        # Group the rows by their way through the tree.
        row_key[:words] = 0
        for n in range(nodes):
            node = first + n
            if leaf[node] < 0:
                _add_split_bits(
                    columns[feature[node]], threshold[node], rule[node], default_left[node],
                    np.int64(1) << shift[node], row_key[word[node]],
                )  # fmt: skip
        groups = _group_rows(row_key, words, slots, group_key, group)
        # Groups in key order: neighbours mostly differ at deep splits, so few leaves see
        # another pattern from one group to the next. Only the subtrees under the splits
        # whose direction changed are walked again (shallowest first: a subtree walked
        # covers the changed splits inside it), and only their leaves updated.
        local = feature_start[t + 1] - feature_start[t]
        running[:local] = 0.0
        previous = -1
        for g in _key_order(group_key, groups, words):
            key = group_key[g]
            stamp += 1
            if previous < 0:
                _update_gifts(
                    first, 1, nodes, key, word, shift, masks, held, running, slot_local,
                    parent, is_left, slot, leaf, value, depth, zero_fraction, start, gift, w, e,
                    e_without, phi, walked, stamp,
                )  # fmt: skip
            else:
                before = group_key[previous]
                for k in range(words):
                    changed = before[k] ^ key[k]
                    while changed != 0:
                        top = _highest_bit(changed)
                        changed ^= np.int64(1) << top
                        node = (
                            first + split_node[split_start[t] + k * KEY_BITS + KEY_BITS - 1 - top]
                        )
                        if walked[node] == stamp:
                            continue
                        _update_gifts(
                            first, node - first + 1, subtree_end[node], key, word, shift, masks,
                            held, running, slot_local, parent, is_left, slot, leaf, value, depth,
                            zero_fraction, start, gift, w, e, e_without, phi, walked, stamp,
                        )  # fmt: skip
            values[g, :local] = running[:local]
            previous = g
        used = tree_features[feature_start[t] : feature_start[t + 1]]
        for r in range(rows):
            g = group[r]
            for j in range(local):
                out[r, o, used[j]] += values[g, j]


@_jit
def _margin(
    x: np.ndarray,
    out: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    rule: np.ndarray,
    default_left: np.ndarray,
    leaf: np.ndarray,
    value: np.ndarray,
    tree_start: np.ndarray,
    output: np.ndarray,
) -> None:
    for r in range(x.shape[0]):
        for t in range(len(tree_start) - 1):
            n = tree_start[t]
            # Preorder: a node's left child follows it; its right child follows its left
            # subtree, found by skipping it.
            while leaf[n] < 0:
                if _goes_left(x[r, feature[n]], threshold[n], rule[n], default_left[n]):
                    n += 1
                else:
                    n = _right_child(n, leaf)
            out[r, output[t]] += value[leaf[n]]


@_jit
def _right_child(n: int, leaf: np.ndarray) -> int:
    """The right child of internal node n: the node after n's left subtree (preorder)."""
    pending = 1  # subtrees still to skip, starting with the left child's
    m = n + 1
    while pending:
        if leaf[m] < 0:
            pending += 1  # an internal node opens two subtrees, closing one
        else:
            pending -= 1
        m += 1
    return m
