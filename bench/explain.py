"""What explanations cost: predictions with `explain` against the same predictions without.

On the bank-marketing file (duration dropped, as everywhere), each learner family is fitted
with its own first-trial settings (early stopping on a validation part), plus the ensemble of
the three with equal weights, and served by `Predictor` from a real artifact. Beside them, what
users really serve: the champion the pipeline tunes on the bank file (XGBoost only, 30 s, as
bench/scoring.py trains it; often an ensemble of deep XGBoost members averaging probabilities),
trained here in a scratch workspace, or read from the model.tar.gz that
`AUTOMLOPS_EXPLAIN_CHAMPION` names (a fixture for the bench; never committed). For each model:

- single row: the app's whole request path but HTTP (`serving.invocation.answer`: parse,
  predict, encode), one-row JSON bodies (a different held-out row each time) with
  `"explain": 5` against the same bodies without. Target (issue 17): at most 3x.
- batch: `Predictor.explain_frame(chunk, 5)` (what batch scoring calls per chunk) against
  `Predictor.predict(chunk)`, rows per second over the held-out rows in chunks. Target: at
  least a third of the plain rate.

The machine is shared: the sides alternate, round after round, and each figure is the median
over rounds (ratios are medians of each round's ratio); CPU seconds (this process's, every
thread) are recorded beside wall seconds, and the CPU ratio is the one load cannot skew.

The ensemble's explanations are approximate (it averages probabilities): the gap between its
contributions' sum and its own log-odds is measured on the held-out rows and reported too.

`make bench` calls `section()`; alone, `.venv/bin/python bench/explain.py` writes
docs/benchmarks-explain.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl

from automlops.config import Task
from automlops.ml.artifact import InputColumn, Lineage, ModelArtifact, ModelMetadata
from automlops.ml.batch import ScoreOptions
from automlops.ml.columns.target import TargetSpec
from automlops.ml.columns.transform import FittedTransform, fit_column, infer_kind
from automlops.ml.explain.gap import AdditivityGap, additivity_gap
from automlops.ml.learners.base import FitJob, Model
from automlops.ml.learners.catalog import LEARNER_NAMES, learner
from automlops.ml.learners.ensemble import EnsembleModel, Member
from automlops.ml.learners.lightgbm_model import LightGBMModel
from automlops.ml.learners.xgboost_model import XGBoostModel
from automlops.ml.predictor import Predictor
from automlops.serving.invocation import answer
from automlops.stages.score import model_threads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
DATA = ROOT.parent / "shared" / "data" / "bank-additional-full.csv"
CHAMPION_ENV = "AUTOMLOPS_EXPLAIN_CHAMPION"  # a model.tar.gz to measure instead of training one
OUT = ROOT / "docs" / "benchmarks-explain.md"
SEED = 7
TOP_K = 5
ROUNDS = 7
SINGLE_BLOCK = 100  # one-row requests per side and round
CHUNK_ROWS = 10_000
TARGET_SINGLE_RATIO = 3.0
TARGET_BATCH_SHARE = 1 / 3


WHY = (
    "How: exact TreeSHAP of our own (`ml/explain/treeshap.py`, compiled with numba) over the "
    "boosters' trees instead of the libraries' `pred_contribs`/`pred_contrib`, which walk "
    "every root-to-leaf path of every tree for every row (leaves x depth^2 per tree and row). "
    "What a leaf gives each feature depends on the row only through which of its path's "
    "features the row follows, so it is tabled per leaf once at load (Fast TreeSHAP v2's "
    "idea): a row then costs leaves x depth per tree. And what a whole tree gives a row "
    "depends only on the row's direction at each of the tree's splits: in a chunk, rows are "
    "grouped per tree by those directions (a key of one bit per split, shallow splits first; a "
    "tree past 16 splits is cut into parts, each the path to one subtree with zero leaves off "
    "it, whose values add up to the tree's), each group computed once, from the previous "
    "group (in reflected-Gray order of the keys) by walking again only the subtrees under the "
    "splits whose direction changed and updating only the leaves whose pattern changed. Per "
    "tree or part, the held-out chunk of {chunk:,} rows shows {patterns}. The values are the "
    "same Shapley values: tests/test_explain_treeshap.py checks them against shap's "
    "TreeExplainer (1e-4) and the boosters' own."
)

THREADS = (
    "Every core: batch scoring with `--explain` loads the model with {cores} threads "
    "(`stages.score.model_threads`; serving keeps one): our TreeSHAP splits a chunk's rows "
    "between threads, in blocks of at most 10,000 (it releases the GIL). On this shared "
    "machine a second thread often finds no free core, so that column says little; the CPU "
    "share (plain CPU seconds / explained CPU seconds, one thread) is what a quiet machine's "
    "single thread would show. Measured apart at a load of about 0.9, two threads took "
    "0.75-0.84x the wall time of one on the tuned champion's TreeSHAP, for 1.25-1.5x the CPU "
    "seconds: both run, each slower (the two cores share caches and memory bandwidth at "
    "least), so a second core buys about a quarter, not half."
)

CHAMPION = "tuned champion"
DEEP = (
    " Its deep trees give rows many ways through each tree (a row's way is new for about half "
    "of a chunk's rows), so grouping rows by their way through a whole tree saves little; "
    "grouping them per part of a tree (at most 16 splits below the path to it, the rest of the "
    "tree zeros: the same values) meets about a tenth as many. What is left is, per part and "
    "group, walking "
    "again the subtrees under the splits whose direction changed from the group before and "
    "updating their leaves. Measured apart (same machine, load about 2, sides alternating), "
    "this kernel takes about a fifth of the CPU time of the one before this rework on such "
    "rows (which walked the 19 trees past 63 splits row by row, every leaf); a third of the "
    "plain rate stays out of reach for such a model, whose prediction walks one path per tree."
)

MISSES = (
    "Where targets are missed ({models}): a row reads one table entry (a cache line, "
    "anywhere in the tables) for every leaf of every tree, against a prediction's one path "
    "per tree: {per_model}. One row at a time, the request path between two explanations "
    "evicts the tables, so the reads wait on memory (compare the ratio for one row repeated, "
    "tables in cache). In a chunk, grouping rows by their directions divides the work by "
    "{factors}. The ensemble pays its members' costs added."
)

DISTINCT = (
    "Whole rows are another matter: path-dependent TreeSHAP reads a row only through the "
    "side of each split it falls on, so rows in the same cell of every feature's split points "
    "get identical contributions; among the {rows:,} held-out rows the distinct cells number "
    "{counts}: across all trees nearly every row is new, which is why the grouping is per tree "
    "(or part of one)."
)


@dataclass(frozen=True)
class Figures:
    """One model's costs: single-row medians (ms) and batch rates (rows/s)."""

    model: str
    detail: str
    single_ms: float
    single_explain_ms: float
    single_ratio: float  # median of the rounds' ratios
    single_cpu_ratio: float
    single_same_cpu_ratio: float  # the same row every time (its tables stay in cache)
    batch_rps: float
    batch_explain_rps: float
    batch_explain_all_rps: float  # the model on every core, as batch scoring loads it
    batch_share: float  # median of the rounds' shares
    batch_all_share: float
    batch_cpu_share: float  # plain CPU seconds / explained CPU seconds (one thread)
    gap: AdditivityGap | None
    distinct: int | None  # distinct TreeSHAP inputs among the held-out rows (boosted models)
    patterns: float | None  # mean share of distinct directions per tree in a chunk
    shape: str = ""  # boosted models: leaves per tree and distinct features per path
    leaves: int = 0
    table_mb: float = 0.0
    members: tuple[str, ...] = ()  # an ensemble of boosted members: each one's shape


def read_bank() -> tuple[pl.DataFrame, np.ndarray]:
    frame = pl.read_csv(DATA, separator=";", infer_schema_length=None).drop("duration")
    y = (frame["y"] == "yes").to_numpy().astype(np.float64)
    return frame.drop("y"), y


def artifact(transform: FittedTransform, model: Model) -> ModelArtifact:
    """A real artifact around `model` (the metadata a predictor reads)."""
    meta = ModelMetadata(
        dataset="bank",
        run_id="bench",
        created_at="2026-01-01T00:00:00Z",
        task=Task.binary,
        target=TargetSpec(name="y", task=Task.binary, labels=["no", "yes"], positive="yes"),
        inputs=[InputColumn(name=c.name, kind=c.kind.value) for c in transform.columns],
        feature_names=transform.feature_names,
        learner=model.learner,
        model_file=model.model_file,
        lineage=Lineage(
            source_bucket="-",
            source_key=DATA.name,
            source_sha256="-",
            schema_key="-",
            transform_key="-",
            split_keys={},
            training_run="bench",
        ),
    )
    return ModelArtifact(metadata=meta, transform=transform, model=model.save())


def fit_models(train: pl.DataFrame, y: np.ndarray) -> tuple[FittedTransform, dict[str, Model]]:
    """The transform and one model per family (first-trial settings), plus their ensemble."""
    transform = FittedTransform(
        columns=[fit_column(train[name], infer_kind(train[name])) for name in train.columns]
    )
    x = transform.apply(train)
    cut = int(len(y) * 0.8)
    models: dict[str, Model] = {}
    for name in LEARNER_NAMES:
        family = learner(name)
        params = {
            k.split(".", 1)[1]: v
            for k, v in family.portfolio(Task.binary, cut)[0].items()
            if k != "learner"
        }
        job = FitJob(Task.binary, 2, (x[:cut], y[:cut]), (x[cut:], y[cut:]), seed=SEED, nthread=1)
        models[name] = family.fit(params, job)
    models["ensemble"] = EnsembleModel([Member(1.0, m) for m in models.values()])
    return transform, models


def champion_artifact() -> tuple[bytes, str]:
    """The bank champion's model.tar.gz and where it came from: the file `CHAMPION_ENV`
    names, else one trained through the real pipeline (bench/scoring.py's manifest: XGBoost
    only, 30 s) in a scratch workspace."""
    named = os.environ.get(CHAMPION_ENV)
    if named:
        return Path(named).read_bytes(), f"read from {Path(named).name} ({CHAMPION_ENV})"
    import scoring  # bench/ is not a package
    from automlops.local.runtime import open_runtime

    with tempfile.TemporaryDirectory(prefix="automlops-explain-") as home:
        scoring.train_ours(Path(home))
        runtime = open_runtime(Path(home))
        try:
            entry = runtime.registry.read(scoring.DATASET).champion_version()
            assert entry is not None  # train_ours raises without one
            data = runtime.store.get(entry.artifact_bucket, entry.artifact_key)
        finally:
            runtime.close()
    return data, f"trained by the pipeline here ({scoring.BUDGET_S:.0f} s budget, XGBoost only)"


@dataclass(frozen=True)
class Timing:
    """One side of one round: wall and CPU seconds."""

    wall: float
    cpu: float


def timed(call: Callable[[], Any]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def alternate(sides: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[Timing]]:
    """Each side once per round, in turn, `rounds` times (load changes hit every side)."""
    for call in sides.values():  # warm up (compiles, caches)
        call()
    result: dict[str, list[Timing]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, call in sides.items():
            result[name].append(timed(call))
    return result


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def split_points(model: Model, width: int) -> list[np.ndarray] | None:
    """Every split threshold of a boosted model, per feature (None for other models), read
    from the model's own dump (XGBoost's JSON keeps its float32 conditions exactly)."""
    points: list[list[float]] = [[] for _ in range(width)]
    if isinstance(model, XGBoostModel):
        doc = json.loads(bytes(model.booster.save_raw(raw_format="json")))
        for tree in doc["learner"]["gradient_booster"]["model"]["trees"]:
            for feature, value, left in zip(
                tree["split_indices"], tree["split_conditions"], tree["left_children"], strict=True
            ):
                if left != -1:  # a leaf's "condition" is its value
                    points[feature].append(value)
        return [np.unique(np.asarray(p, np.float32)) for p in points]
    if isinstance(model, LightGBMModel):

        def walk(node: dict[str, Any]) -> None:
            if "split_feature" in node:
                points[node["split_feature"]].append(float(node["threshold"]))
                walk(node["left_child"])
                walk(node["right_child"])

        for tree in model.booster.dump_model()["tree_info"]:
            walk(tree["tree_structure"])
        return [np.unique(np.asarray(p, np.float64)) for p in points]
    return None


def distinct_inputs(model: Model, features: np.ndarray) -> int | None:
    """How many distinct inputs exact TreeSHAP really has among `features`' rows: two rows
    on the same side of every split of every tree get the same contributions, exactly
    (path-dependent TreeSHAP reads a row only through those sides). Each feature is replaced
    by its interval between split points (missing: its own), and distinct rows counted."""
    points = split_points(model, features.shape[1])
    if points is None:
        return None
    cells = np.empty(features.shape, np.int32)
    # XGBoost goes left when x < t, LightGBM when x <= t: count the points each row passed.
    side = "right" if isinstance(model, XGBoostModel) else "left"
    for j, p in enumerate(points):
        column = features[:, j].astype(p.dtype)
        cells[:, j] = np.where(np.isnan(column), -1, np.searchsorted(p, column, side=side))
        if isinstance(model, LightGBMModel):  # zero may be read as missing: keep it apart
            cells[:, j] = np.where(column == 0, -2, cells[:, j])
    return len(np.unique(cells, axis=0))


def measure(
    name: str, predictor: Predictor, batch: Predictor, model: Model, held_out: pl.DataFrame
) -> Figures:
    """`predictor` as served (one thread), `batch` as batch scoring with explain loads it."""
    rows = held_out.head(SINGLE_BLOCK).to_dicts()
    plain = [orjson.dumps({"instances": [row]}) for row in rows]
    explained = [orjson.dumps({"instances": [row], "explain": TOP_K}) for row in rows]

    def single(bodies: list[bytes]) -> Callable[[], Any]:
        def run() -> None:
            for body in bodies:
                answer(predictor, 1, body, "application/json", "application/json")

        return run

    def chunks(call: Callable[[pl.DataFrame], Any]) -> Callable[[], Any]:
        return lambda: [call(chunk) for chunk in held_out.iter_slices(CHUNK_ROWS)]

    one = alternate(
        {
            "plain": single(plain),
            "explain": single(explained),
            # One row over and over: what it costs when its tables stay in cache.
            "plain_same": single(plain[:1] * SINGLE_BLOCK),
            "explain_same": single(explained[:1] * SINGLE_BLOCK),
        },
        ROUNDS,
    )
    many = alternate(
        {
            "plain": chunks(predictor.predict),
            "explain": chunks(lambda c: predictor.explain_frame(c, TOP_K)),
            "all": chunks(lambda c: batch.explain_frame(c, TOP_K)),
        },
        ROUNDS,
    )

    def ratios(a: str, b: str, runs: dict[str, list[Timing]], cpu: bool = False) -> float:
        return median(
            [
                (y.cpu / x.cpu) if cpu else (y.wall / x.wall)
                for x, y in zip(runs[a], runs[b], strict=True)
            ]
        )

    gap = None
    if not predictor.explain_frame(held_out.head(1)).explanation.exact:
        features = predictor.encoder.encode_frame(held_out)
        gap = additivity_gap(
            Task.binary, model.contributions(features, Task.binary), model.predict(features)
        )
    features = predictor.encoder.encode_frame(held_out)
    return Figures(
        model=name,
        detail=describe(model),
        single_ms=median([t.wall for t in one["plain"]]) / SINGLE_BLOCK * 1000,
        single_explain_ms=median([t.wall for t in one["explain"]]) / SINGLE_BLOCK * 1000,
        single_ratio=ratios("plain", "explain", one),
        single_cpu_ratio=ratios("plain", "explain", one, cpu=True),
        single_same_cpu_ratio=ratios("plain_same", "explain_same", one, cpu=True),
        batch_rps=held_out.height / median([t.wall for t in many["plain"]]),
        batch_explain_rps=held_out.height / median([t.wall for t in many["explain"]]),
        batch_explain_all_rps=held_out.height / median([t.wall for t in many["all"]]),
        batch_share=ratios("explain", "plain", many),
        batch_all_share=ratios("all", "plain", many),
        batch_cpu_share=ratios("explain", "plain", many, cpu=True),
        gap=gap,
        distinct=distinct_inputs(model, features),
        patterns=patterns_per_tree(model, features[:CHUNK_ROWS], parts=True),
        **tree_shape(model),
        members=member_shapes(model, features[:CHUNK_ROWS]),
    )


def tree_shape(model: Model) -> dict[str, Any]:
    """A boosted model's leaves, path widths and table size (our TreeSHAP's)."""
    shap = model._treeshap if isinstance(model, XGBoostModel | LightGBMModel) else None
    if shap is None:
        return {}
    forest = shap.forest
    per_tree = len(forest.value) / max(forest.trees, 1)
    return {
        "shape": f"{per_tree:.0f} leaves a tree on average, paths over up to "
        f"{int(forest.depth.max())} distinct features",
        "leaves": len(forest.value),
        "table_mb": shap.tables.gift.nbytes / 1e6,
    }


def member_shapes(model: Model, features: np.ndarray) -> tuple[str, ...]:
    """An ensemble's boosted members, one line each: weight, trees, leaves, splits a tree,
    the widest path, patterns per tree in a chunk of `features` and the tables' size."""
    if not isinstance(model, EnsembleModel):
        return ()
    lines = []
    for member in model.members:
        inner = member.model
        shap = inner._treeshap if isinstance(inner, XGBoostModel | LightGBMModel) else None
        if shap is None:
            lines.append(f"{inner.learner} (weight {member.weight:.2f}): not a boosted member")
            continue
        forest = shap.forest
        splits = np.add.reduceat((forest.leaf < 0).astype(np.int64), forest.tree_start[:-1])
        whole = patterns_per_tree(inner, features) or 0.0
        cut = patterns_per_tree(inner, features, parts=True) or 0.0
        lines.append(
            f"{inner.learner} (weight {member.weight:.2f}): {forest.trees} trees, "
            f"{len(forest.value):,} leaves, {splits.mean():.0f} splits a tree on average "
            f"({splits.max()} at most, {(splits > 63).sum()} trees past 63), paths over up to "
            f"{int(forest.depth.max())} distinct features, {whole:.0%} as many patterns as "
            f"rows per tree; cut into {shap.parts.trees} parts, {cut:.0%} per part; "
            f"{shap.tables.gift.nbytes / 1e6:.1f} MB of tables"
        )
    return tuple(lines)


def patterns_per_tree(model: Model, features: np.ndarray, *, parts: bool = False) -> float | None:
    """The mean, over a boosted model's trees (or with `parts` the parts our TreeSHAP groups
    rows by), of distinct split-direction patterns among `features`' rows, as a share of the
    rows (None for other models)."""
    if isinstance(model, XGBoostModel | LightGBMModel):
        shap = model._treeshap
        if shap is None:
            return None
        forest = shap.parts if parts else shap.forest
        shares = []
        for t in range(forest.trees):
            nodes = np.arange(forest.tree_start[t], forest.tree_start[t + 1])
            splits = nodes[forest.leaf[nodes] < 0]
            if not len(splits):
                continue
            values = features[:, forest.feature[splits]].astype(np.float64)
            thresholds = forest.threshold[splits]
            compare = np.less if isinstance(model, XGBoostModel) else np.less_equal
            left = np.where(
                np.isnan(values), forest.default_left[splits], compare(values, thresholds)
            )
            shares.append(len(np.unique(left, axis=0)) / len(features))
        return float(np.mean(shares)) if shares else None
    return None


def describe(model: Model) -> str:
    if isinstance(model, EnsembleModel):
        weights = {round(m.weight, 6) for m in model.members}
        how = (
            "equal weights"
            if len(weights) == 1
            else "weights " + " / ".join(f"{m.weight:.2f}" for m in model.members)
        )
        return " + ".join(m.model.learner for m in model.members) + f", {how}"
    return "linear" if model.rounds is None else f"{model.rounds} rounds"


def caches() -> str:
    """The first core's caches as Linux lists them ("L2 512K, L3 32768K"), or nothing."""
    found = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind.strip() != "Instruction":
            found.append(f"L{level} {size}")
    return ", ".join(found)


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    if caches():
        cpu += f" ({caches()})"
    libs = ", ".join(f"{p} {version(p)}" for p in ("numpy", "xgboost", "lightgbm", "polars"))
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}; {libs}; load average before the run {load} (the "
        "machine is shared with other work: figures are ratios within one run)"
    )


def markdown(figures: list[Figures], rows: int, held_out: int, setting: str, champion: str) -> str:
    lines = [
        "## Explanations: what `explain` costs",
        "",
        f"Bank-marketing file ({rows} rows, duration dropped); models fitted on 80% of a "
        f"70% training part with each family's first-trial settings, and the tuned champion "
        f"the pipeline serves for this file ({champion}); measured on the "
        f"{held_out} other rows (the champion saw them in training: no matter for costs). "
        "Single row: the app's request path but HTTP "
        f"(`serving.invocation.answer`), {SINGLE_BLOCK} one-row requests (a different row "
        f'each) with `"explain": {TOP_K}` against the same without. Batch: '
        f"`Predictor.explain_frame(chunk, {TOP_K})` against `Predictor.predict(chunk)` over "
        f"the held-out rows in {CHUNK_ROWS}-row chunks. The sides alternate for {ROUNDS} "
        "rounds; times are medians over rounds, ratios and shares the median of each "
        "round's (wall clock; `cpu`: this process's CPU seconds, which the machine's load "
        "does not stretch). One thread per model (as served) but in the every-core columns.",
        "",
        "| model | single row | with explain | ratio (target <= 3x) | cpu ratio "
        "| cpu ratio, one row repeated | batch rows/s "
        "| with explain-5 | share (target >= 1/3) | cpu share | explain-5, every core "
        "| share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        single_ok = "met" if f.single_ratio <= TARGET_SINGLE_RATIO else "MISSED"
        batch_ok = "met" if f.batch_share >= TARGET_BATCH_SHARE else "MISSED"
        lines.append(
            f"| {f.model} ({f.detail}) | {f.single_ms:.3f} ms | {f.single_explain_ms:.3f} ms | "
            f"{f.single_ratio:.2f}x {single_ok} | {f.single_cpu_ratio:.2f}x | "
            f"{f.single_same_cpu_ratio:.2f}x | "
            f"{f.batch_rps:,.0f} | {f.batch_explain_rps:,.0f} | {f.batch_share:.2f} "
            f"{batch_ok} | {f.batch_cpu_share:.2f} | {f.batch_explain_all_rps:,.0f} | "
            f"{f.batch_all_share:.2f} |"
        )
    for f in figures:
        if f.gap is not None:
            lines += [
                "",
                f"The {f.model}'s contributions are approximate (it averages probabilities): "
                f"on the {f.gap.rows} held-out rows, base + contributions differs from the "
                f"log-odds of its probability by {f.gap.raw_mean:.4f} on average and "
                f"{f.gap.raw_max:.4f} at most; the probability they imply is at most "
                f"{f.gap.probability_max:.4f} from the ensemble's. Its cost is its members' "
                "added (each explains the chunk; the weighted sum is one multiply-add).",
            ]
    for f in figures:
        if f.members:
            lines += [
                "",
                f"The {f.model}'s members, as our TreeSHAP sees them (patterns: per tree, the "
                f"distinct ways through it among a {CHUNK_ROWS:,}-row chunk):",
                "",
                *[f"- {line}" for line in f.members],
                "",
                f"Per row, one thread: {1e6 / f.batch_rps:.1f} us to predict, "
                f"{1e6 / f.batch_explain_rps:.1f} us with explain-5.",
            ]
            if f.model == CHAMPION:
                lines[-1] += DEEP
    boosted = [f for f in figures if f.patterns is not None]
    patterns = "; ".join(f"{f.model} {f.patterns:.0%} as many patterns as rows" for f in boosted)
    lines += ["", WHY.format(chunk=CHUNK_ROWS, patterns=patterns or "nothing")]
    missed = [
        f
        for f in figures
        if f.single_ratio > TARGET_SINGLE_RATIO or f.batch_share < TARGET_BATCH_SHARE
    ]
    if missed:
        lines += [
            "",
            MISSES.format(
                models=", ".join(f.model for f in missed),
                per_model="; ".join(
                    f"{f.model} {f.leaves:,} leaves ({f.shape}; {f.table_mb:.1f} MB of tables)"
                    for f in boosted
                ),
                factors=", ".join(
                    f"about {1 / f.patterns:.0f} for {f.model}" for f in boosted if f.patterns
                ),
            ),
        ]
    distinct = [f for f in figures if f.distinct is not None]
    if distinct:
        counts = "; ".join(
            f"{f.model}: {f.distinct:,} ({f.distinct / held_out:.0%})" for f in distinct
        )
        lines += ["", DISTINCT.format(rows=held_out, counts=counts)]
    lines += ["", THREADS.format(cores=os.cpu_count()), "", f"Machine: {setting}", ""]
    return "\n".join(lines)


def section() -> str:
    """The benchmark's markdown section (figures and the machine line)."""
    setting = machine()
    features, y = read_bank()
    order = np.random.default_rng(SEED).permutation(len(y))
    cut = int(len(y) * 0.7)
    train, held_out = features[order[:cut]], features[order[cut:]]
    transform, models = fit_models(train, y[order[:cut]])
    figures = []
    for name, model in models.items():
        predictor = Predictor(artifact(transform, model))
        batch = Predictor(
            artifact(transform, model), nthread=model_threads(ScoreOptions(explain=TOP_K))
        )
        figures.append(measure(name, predictor, batch, model, held_out))
        print(f"measured {name}", file=sys.stderr)
    data, source = champion_artifact()
    predictor = Predictor.from_bytes(data)
    batch = Predictor.from_bytes(data, nthread=model_threads(ScoreOptions(explain=TOP_K)))
    figures.append(measure(CHAMPION, predictor, batch, predictor.model, held_out))
    print("measured the tuned champion", file=sys.stderr)
    return markdown(figures, len(y), held_out.height, setting, source)


if __name__ == "__main__":
    text = section()
    OUT.write_text(text)
    print(text)
