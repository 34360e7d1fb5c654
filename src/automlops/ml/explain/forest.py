"""A boosted model's trees as flat arrays, in the form our TreeSHAP (`treeshap`) walks.

XGBoost's JSON model and LightGBM's model dump are read into one layout: every tree's nodes
in preorder (a parent before its children), each node knowing its parent, which side of it
it hangs on and how its own split sends a row; each leaf knowing its value and the distinct
features on its root path ("slots") with the share of the training cover that followed the
path on each (`zero_fraction`). Models this layout cannot hold exactly (categorical splits,
linear leaves, DART, averaged forests, paths over more distinct features than a mask holds)
give None, and the caller keeps the library's own TreeSHAP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

# How a node sends a row left (`Forest.rule`): XGBoost's `x < t` with NaN missing, or
# LightGBM's `x <= t` with its missing type (None: NaN read as 0; Zero: 0 and NaN missing;
# NaN: NaN missing).
XGBOOST = 0
LIGHTGBM_NONE = 1
LIGHTGBM_ZERO = 2
LIGHTGBM_NAN = 3
_LIGHTGBM_RULES = {"None": LIGHTGBM_NONE, "Zero": LIGHTGBM_ZERO, "NaN": LIGHTGBM_NAN}

MAX_SLOTS = 62  # a leaf's distinct path features must fit a 64-bit mask


@dataclass(frozen=True)
class Forest:
    """Trees as arrays. Nodes are numbered per model in preorder, tree after tree.

    Per node: `feature`, `threshold`, `rule`, `default_left` (internal nodes), `parent`
    (index within its tree, -1 at the root), `is_left` (hangs on its parent's left), `slot`
    (its parent's feature's slot on the path), `leaf` (leaf number, -1 when internal).
    Per leaf: `value`, `depth` (distinct path features), `slot_feature` and `zero_fraction`
    (leaves x max depth). Per tree: `tree_start` (n + 1 offsets) and `output` (the class a
    tree adds to; 0 for one output). `offset` (outputs,): what the model adds beside its
    trees (XGBoost's base score on the margin), so that margin = offset + sum of leaves.
    """

    feature: np.ndarray
    threshold: np.ndarray
    rule: np.ndarray
    default_left: np.ndarray
    parent: np.ndarray
    is_left: np.ndarray
    slot: np.ndarray
    leaf: np.ndarray
    value: np.ndarray
    depth: np.ndarray
    slot_feature: np.ndarray
    zero_fraction: np.ndarray
    tree_start: np.ndarray
    output: np.ndarray
    outputs: int
    offset: np.ndarray
    float32: bool  # the booster reads features as float32 (XGBoost) or as given (LightGBM)

    @property
    def trees(self) -> int:
        return len(self.output)

    @property
    def widest_tree(self) -> int:
        """The most nodes in one tree (the walk's scratch size)."""
        return int(np.diff(self.tree_start).max(initial=1))

    def with_offset(self, offset: np.ndarray) -> Forest:
        """The same trees with `offset` as the margin beside them."""
        return Forest(**{**self.__dict__, "offset": np.asarray(offset, np.float64)})


@dataclass
class _Node:
    """One node read from a model file, before layout."""

    cover: float
    value: float = 0.0
    feature: int = -1
    threshold: float = 0.0
    rule: int = XGBOOST
    default_left: bool = False
    left: _Node | None = None
    right: _Node | None = None


class _Unsupported(Exception):
    """A model whose trees this layout cannot hold exactly."""


class _Builder:
    """Lays trees out in preorder and collects each leaf's path."""

    def __init__(self) -> None:
        self.nodes: list[tuple[int, float, int, bool, int, bool, int, int]] = []
        self.leaves: list[tuple[float, list[int], list[float]]] = []
        self.tree_start: list[int] = [0]
        self.output: list[int] = []

    def add_tree(self, root: _Node, output: int) -> None:
        start = len(self.nodes)
        # (node, parent index in tree, is_left, slot of the edge, path features, fractions)
        stack: list[tuple[_Node, int, bool, int, list[int], list[float]]] = [
            (root, -1, False, 0, [], [])
        ]
        while stack:
            node, parent, is_left, slot, features, fractions = stack.pop()
            index = len(self.nodes) - start
            if node.left is None or node.right is None:
                self.nodes.append((-1, 0.0, 0, False, parent, is_left, slot, len(self.leaves)))
                self.leaves.append((node.value, features, fractions))
                continue
            self.nodes.append(
                (
                    node.feature,
                    node.threshold,
                    node.rule,
                    node.default_left,
                    parent,
                    is_left,
                    slot,
                    -1,
                )
            )
            if node.feature in features:
                edge_slot = features.index(node.feature)
                child_features = features
            else:
                if len(features) >= MAX_SLOTS:
                    raise _Unsupported(f"a path over more than {MAX_SLOTS} features")
                edge_slot = len(features)
                child_features = [*features, node.feature]
            # Right pushed first: the left subtree comes right after its parent (preorder).
            for child, left in ((node.right, False), (node.left, True)):
                share = child.cover / node.cover if node.cover > 0 else 0.0
                child_fractions = list(fractions) + [1.0] * (len(child_features) - len(fractions))
                child_fractions[edge_slot] *= share
                stack.append((child, index, left, edge_slot, child_features, child_fractions))
        self.tree_start.append(len(self.nodes))
        self.output.append(output)

    def forest(self, outputs: int, *, float32: bool) -> Forest:
        columns = list(zip(*self.nodes, strict=True))
        width = max((len(f) for _, f, _ in self.leaves), default=0)
        slot_feature = np.zeros((len(self.leaves), max(width, 1)), np.int32)
        zero_fraction = np.ones((len(self.leaves), max(width, 1)), np.float64)
        for i, (_, features, fractions) in enumerate(self.leaves):
            slot_feature[i, : len(features)] = features
            zero_fraction[i, : len(fractions)] = fractions
        return Forest(
            feature=np.asarray(columns[0], np.int32),
            threshold=np.asarray(columns[1], np.float64),
            rule=np.asarray(columns[2], np.int8),
            default_left=np.asarray(columns[3], np.bool_),
            parent=np.asarray(columns[4], np.int32),
            is_left=np.asarray(columns[5], np.bool_),
            slot=np.asarray(columns[6], np.int32),
            leaf=np.asarray(columns[7], np.int32),
            value=np.asarray([v for v, _, _ in self.leaves], np.float64),
            depth=np.asarray([len(f) for _, f, _ in self.leaves], np.int32),
            slot_feature=slot_feature,
            zero_fraction=zero_fraction,
            tree_start=np.asarray(self.tree_start, np.int64),
            output=np.asarray(self.output, np.int32),
            outputs=outputs,
            offset=np.zeros(outputs),
            float32=float32,
        )


def xgboost_forest(model_json: bytes) -> Forest | None:
    """The trees of an XGBoost model saved as JSON (`save_raw(raw_format="json")`); the offset
    is left at 0 for the caller to set from the booster's own margin."""
    doc = json.loads(model_json)
    learner = doc["learner"]
    booster = learner["gradient_booster"]
    if booster.get("name") != "gbtree":  # DART scales trees at prediction; gblinear has none
        return None
    model = booster["model"]
    params = learner["learner_model_param"]
    outputs = max(int(params.get("num_class", "0")), int(params.get("num_target", "1")), 1)
    builder = _Builder()
    try:
        for tree, output in zip(model["trees"], model["tree_info"], strict=True):
            if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1 or any(tree["split_type"]):
                return None  # vector leaves or categorical splits
            builder.add_tree(_xgboost_tree(tree), int(output))
    except _Unsupported:
        return None
    return builder.forest(outputs, float32=True)


def _xgboost_tree(tree: dict[str, Any]) -> _Node:
    left, right = tree["left_children"], tree["right_children"]
    cover, condition = tree["sum_hessian"], tree["split_conditions"]
    nodes = [
        _Node(
            cover=float(cover[i]),
            # Conditions are float32 (a leaf's is its value): compared as float32 by XGBoost.
            value=float(condition[i]),
            feature=int(tree["split_indices"][i]),
            threshold=float(np.float32(condition[i])),
            rule=XGBOOST,
            default_left=bool(tree["default_left"][i]),
        )
        for i in range(len(left))
    ]
    for i, node in enumerate(nodes):
        if left[i] != -1:
            node.left, node.right = nodes[left[i]], nodes[right[i]]
    return nodes[0]


def lightgbm_forest(dump: dict[str, Any]) -> Forest | None:
    """The trees of a LightGBM model from `Booster.dump_model()` (its raw score is the sum of
    its leaves: the initial score is in the first trees)."""
    if dump.get("average_output"):  # random-forest mode divides by the tree count
        return None
    per_iteration = int(dump.get("num_tree_per_iteration", 1))
    builder = _Builder()
    try:
        for i, tree in enumerate(dump["tree_info"]):
            builder.add_tree(_lightgbm_node(tree["tree_structure"]), i % per_iteration)
    except _Unsupported:
        return None
    return builder.forest(per_iteration, float32=False)


def _lightgbm_node(raw: dict[str, Any]) -> _Node:
    if "split_feature" not in raw:
        if "leaf_coeff" in raw:  # linear trees: a leaf is a function, not a value
            raise _Unsupported("linear leaves")
        return _Node(cover=float(raw.get("leaf_count", 0)), value=float(raw["leaf_value"]))
    if raw["decision_type"] != "<=":
        raise _Unsupported("categorical split")
    return _Node(
        cover=float(raw["internal_count"]),
        feature=int(raw["split_feature"]),
        threshold=float(raw["threshold"]),
        rule=_LIGHTGBM_RULES[raw["missing_type"]],
        default_left=bool(raw["default_left"]),
        left=_lightgbm_node(raw["left_child"]),
        right=_lightgbm_node(raw["right_child"]),
    )


def cut_trees(forest: Forest, most_splits: int) -> Forest:
    """The same model, its trees of more than `most_splits` splits cut into parts of at most
    that many (below the splits above them).

    TreeSHAP values are linear in the leaf values, so a tree's values are the sum of those of
    copies of it in which every leaf but some is set to 0; and a subtree of zeros gives nothing,
    so it can be one leaf of value 0 (depth 0). A part is the path from the root down to one
    node, each split on it with its other side such a zero leaf, then that node's whole
    subtree: its leaves keep their numbers, paths and covers. Grouping rows by their way
    through a part, rather than through the whole tree, meets far fewer distinct ways in deep
    trees (a row's way through one side of a split no longer tells its groups on the other).
    """
    count = len(forest.leaf)
    first = np.repeat(forest.tree_start[:-1], np.diff(forest.tree_start))
    size = np.ones(count, np.int64)  # nodes in each node's subtree
    splits = (forest.leaf < 0).astype(np.int64)  # splits in each node's subtree
    for node in range(count - 1, -1, -1):  # children after parents (preorder)
        if forest.parent[node] >= 0:
            above = first[node] + forest.parent[node]
            size[above] += size[node]
            splits[above] += splits[node]
    source: list[int] = []  # per new node, the node it copies (-1: a zero leaf)
    parent: list[int] = []
    is_left: list[bool] = []
    slot: list[int] = []
    tree_start = [0]
    output: list[int] = []
    zeros = 0

    def add(node: int, up: int, left: bool, *, zero: bool = False) -> int:
        nonlocal zeros
        source.append(-1 if zero else node)
        parent.append(up)
        is_left.append(left)
        slot.append(int(forest.slot[node]))
        zeros += zero
        return len(source) - 1 - tree_start[-1]

    def part(tree: int, path: list[tuple[int, bool]], top: int) -> None:
        up, left = -1, False
        pending: list[tuple[int, int]] = []  # zero leaves owed to the right of a split
        for node, went_left in path:
            at = add(node, up, left)
            if not went_left:
                add(node + 1, at, True, zero=True)
            else:
                pending.append((node + 1 + int(size[node + 1]), at))
            up, left = at, went_left
        # The subtree of `top` as it is: preorder, parents shifted to the new positions.
        shift = len(source) - tree_start[-1] - (top - int(first[top]))
        add(top, up, left)
        for node in range(top + 1, top + int(size[top])):
            add(node, int(forest.parent[node]) + shift, bool(forest.is_left[node]))
        for right, at in reversed(pending):  # deepest split's right side first (preorder)
            add(right, at, False, zero=True)
        tree_start.append(len(source))
        output.append(int(forest.output[tree]))

    def cut(tree: int, path: list[tuple[int, bool]], node: int) -> None:
        if forest.leaf[node] >= 0 or splits[node] <= most_splits:
            part(tree, path, node)
            return
        right = node + 1 + int(size[node + 1])
        cut(tree, [*path, (node, True)], node + 1)
        cut(tree, [*path, (node, False)], right)

    for tree in range(forest.trees):
        cut(tree, [], int(forest.tree_start[tree]))
    return _with_nodes(forest, np.asarray(source, np.int64), parent, is_left, slot, tree_start,
                       output, zeros)  # fmt: skip


def _with_nodes(
    forest: Forest,
    source: np.ndarray,
    parent: list[int],
    is_left: list[bool],
    slot: list[int],
    tree_start: list[int],
    output: list[int],
    zeros: int,
) -> Forest:
    """`forest`'s leaves plus `zeros` leaves of value 0 (numbered after them), over new nodes
    copying `source` (-1: the next zero leaf)."""
    zero = source < 0
    copied = np.where(zero, 0, source)
    leaf = forest.leaf[copied].astype(np.int64)
    leaf[zero] = len(forest.value) + np.arange(int(zero.sum()))
    width = forest.slot_feature.shape[1]
    return Forest(
        feature=np.where(zero, -1, forest.feature[copied]).astype(np.int32),
        threshold=np.where(zero, 0.0, forest.threshold[copied]),
        rule=np.where(zero, 0, forest.rule[copied]).astype(np.int8),
        default_left=np.where(zero, False, forest.default_left[copied]),
        parent=np.asarray(parent, np.int32),
        is_left=np.asarray(is_left, np.bool_),
        slot=np.asarray(slot, np.int32),
        leaf=leaf.astype(np.int32),
        value=np.concatenate([forest.value, np.zeros(zeros)]),
        depth=np.concatenate([forest.depth, np.zeros(zeros, np.int32)]).astype(np.int32),
        slot_feature=np.concatenate(
            [forest.slot_feature, np.zeros((zeros, width), forest.slot_feature.dtype)]
        ),
        zero_fraction=np.concatenate([forest.zero_fraction, np.ones((zeros, width))]),
        tree_start=np.asarray(tree_start, np.int64),
        output=np.asarray(output, np.int32),
        outputs=forest.outputs,
        offset=forest.offset,
        float32=forest.float32,
    )
