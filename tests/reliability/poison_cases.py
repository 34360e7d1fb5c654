"""Hostile and broken uploads, one per kind, with what the pipeline must make of each.

Each case is an upload (bytes under a key of the data bucket) or a forged S3 notification
(a key the store would refuse, delivered as an event anyway). `expect` is the run's final
status, or `refused` (the store will not even write the key) or `ignored` (no stage is
triggered); `message` is a fragment the run's error must contain.
"""

from __future__ import annotations

import codecs
import gzip
import json
import random
from dataclasses import dataclass, field
from typing import Any

from reliability_support import small_csv

from automlops.local.store import MAX_NAME_BYTES

HEADER = "age,income,colour,y"
FORMULA = "=cmd|' /C calc'!A0"
SCRIPT = "<script>alert(1)</script>"
FORMULA_COLUMN = "-2+3+cmd|' /C calc'!A0"  # a column name a spreadsheet would evaluate


@dataclass(frozen=True)
class PoisonCase:
    """One kind of hostile input."""

    kind: str
    description: str
    data: bytes = b""
    filename: str = "upload.csv"
    key: str | None = None  # a forged event for this exact key instead of an upload
    manifest: dict[str, Any] = field(default_factory=dict)
    expect: str = "failed"  # failed | succeeded | refused | ignored
    message: str | None = None
    retried: bool = False  # a transient failure: retried, then given up on


def _rows(n: int, seed: int = 1) -> list[str]:
    return small_csv(n, seed=seed).decode().splitlines()[1:]


def _csv(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _with_column(name: str, values: list[str], rows: int = 80) -> bytes:
    body = _rows(rows)
    return _csv(
        [f"{HEADER},{name}"] + [f"{r},{values[i % len(values)]}" for i, r in enumerate(body)]
    )


def _replace_income(values: list[str], rows: int = 80) -> bytes:
    lines = [HEADER]
    for i, row in enumerate(_rows(rows)):
        age, _, colour, y = row.split(",")
        lines.append(f"{age},{values[i % len(values)]},{colour},{y}")
    return _csv(lines)


def _colours(mapping: dict[str, str], encoding: str = "utf-8") -> bytes:
    text = small_csv(80, seed=2).decode()
    for old, new in mapping.items():
        text = text.replace(old, new)
    return text.encode(encoding)


def _one_class() -> bytes:
    return _csv([HEADER] + [r.rsplit(",", 1)[0] + ",yes" for r in _rows(60)])


def _mixed_encodings() -> bytes:
    good = "age,income,colour,y\n" + "".join(
        f"{20 + i},{i}.5,{c},{'yes' if i % 2 else 'no'}\n"
        for i, c in enumerate(["café", "crème", "brûlée", "naïve"] * 10)
    )
    bad_line = "33,1.5,Müller,yes\n".encode("latin-1")
    return good.encode("utf-8") + bad_line + "34,2.5,café,no\n".encode()


def _ragged() -> bytes:
    lines = [HEADER, *_rows(40)]
    lines[5] += ",surplus"
    return _csv(lines)


def _binary() -> bytes:
    rng = random.Random(7)
    return bytes(rng.randrange(256) for _ in range(4096))


def _million_columns() -> bytes:
    return ",".join(f"c{i}" for i in range(1_000_000)).encode()


CASES: list[PoisonCase] = [
    PoisonCase("empty file", "0 bytes", b"", message="empty"),
    PoisonCase("blank lines only", "spaces and newlines", b" \n\n  \n", message="empty"),
    PoisonCase("header only", "a header, no rows", f"{HEADER}\n".encode(), message="no data rows"),
    PoisonCase("one row", "a header and one row", _csv([HEADER, *_rows(1)]), message="usable rows"),
    PoisonCase(
        "too few rows", "19 rows (20 needed)", _csv([HEADER, *_rows(19)]), message="19 usable"
    ),
    PoisonCase("one class only", "every y is yes", _one_class(), message="single class"),
    PoisonCase(
        "target missing",
        "the manifest's target is not a column",
        _csv(["age,income,colour", *[r.rsplit(",", 1)[0] for r in _rows(40)]]),
        message="target column 'y' not found",
    ),
    PoisonCase(
        "target all null",
        "y is empty on every row",
        _csv([HEADER, *[r.rsplit(",", 1)[0] + "," for r in _rows(40)]]),
        message="usable rows",
    ),
    PoisonCase(
        "all-null column",
        "an extra column empty on every row",
        _with_column("empty", [""]),
        expect="succeeded",
    ),
    PoisonCase(
        "constant target",
        "regression on a target that is 7 on every row",
        _csv(["a,b,y", *[f"{i},{i % 3},7" for i in range(60)]]),
        manifest={"task": "regression", "positive": None},
        message="target is 7 on every row",
    ),
    PoisonCase(
        "duplicate column names",
        "age appears twice",
        _csv(["age,income,age,y", *_rows(40)]),
        message="duplicate column name",
    ),
    PoisonCase("ragged rows", "row 6 has a 5th field", _ragged(), message="line 6"),
    PoisonCase(
        "wrong delimiter",
        "colon-separated",
        _csv([r.replace(",", ":") for r in [HEADER, *_rows(40)]]),
        message="at least 2 columns",
    ),
    PoisonCase(
        "mixed encodings",
        "UTF-8 with one Latin-1 line",
        _mixed_encodings(),
        message="undecodable bytes",
    ),
    PoisonCase(
        "Latin-1",
        "accented categories in ISO-8859-1",
        _colours({"red": "rouge-é", "green": "grün", "blue": "azul-ñ"}, "latin-1"),
        expect="succeeded",
    ),
    PoisonCase(
        "UTF-16 with BOM",
        "the whole file in UTF-16 LE with a BOM",
        codecs.BOM_UTF16_LE + small_csv(80, seed=3).decode().encode("utf-16-le"),
        expect="succeeded",
    ),
    PoisonCase("binary", "4 KB of random bytes named .csv", _binary(), message="binary"),
    PoisonCase(
        "gzip", "a gzip-compressed CSV named .csv", gzip.compress(small_csv(80)), message="binary"
    ),
    PoisonCase(
        "a million columns",
        "one line of 1,000,000 fields (6.9 MB)",
        _million_columns(),
        message="1,000,000 columns",
    ),
    PoisonCase(
        "over the size limit",
        "a valid CSV larger than max_upload_bytes (set to 8 MiB here)",
        small_csv(3000, seed=4),
        message="are refused",
    ),
    PoisonCase(
        "thousands separators",
        'income like "12,345.67" (quoted)',
        _replace_income(['"12,345.67"', '"1,234.50"', '"98,765.00"']),
        expect="succeeded",
    ),
    PoisonCase(
        "1e309",
        "numbers beyond float64 (read as infinity)",
        _replace_income(["1e309", "-1e309", "12.5", "40"]),
        message="data row 1: inf is not a usable number",
    ),
    PoisonCase(
        "inf/NaN strings",
        "inf, -inf, Infinity, NaN in a numeric column",
        _replace_income(["NaN", "inf", "-inf", "Infinity", "12.5", "40"]),
        message="data row 2: inf is not a usable number",
    ),
    PoisonCase(
        "Excel formula cells",
        f"cells, a column name and a label like {FORMULA}",
        _colours(
            {
                "red": FORMULA.replace(",", ""),
                "yes": "=1+1",
                "green": "@SUM(A1:A9)",
                "colour": FORMULA_COLUMN,
            }
        ),
        manifest={"positive": "=1+1"},
        expect="succeeded",
    ),
    PoisonCase(
        "HTML in names and cells",
        f"a column and a label named {SCRIPT}",
        _colours({"colour": SCRIPT, "no": "<img src=x onerror=alert(1)>"}),
        expect="succeeded",
    ),
    PoisonCase(
        "NUL bytes in content",
        "a NUL inside a cell",
        _csv([HEADER, *_rows(40)]).replace(b"red", b"r\x00d", 1),
        message="binary",
    ),
    PoisonCase(
        "unclosed quote",
        'a field opening " and never closing it',
        _csv([HEADER, *_rows(40)]).replace(b"red", b'"red', 1),
        message="cannot be parsed",
    ),
    PoisonCase(
        "prose",
        "a paragraph of text",
        b"Some prose, not data: sentences with commas; and other things.\n" * 10,
        message="target column 'y' not found",
    ),
    PoisonCase(
        "JSON named .csv",
        "a JSON document",
        json.dumps([{"age": i, "y": "yes"} for i in range(40)]).encode(),
        message="column",
    ),
    PoisonCase(
        "drop the target",
        "the manifest drops its own target",
        small_csv(40),
        manifest={"drop": ["y"]},
        message="cannot drop the target",
    ),
    PoisonCase(
        "key with ../",
        "a notification for data/p/../../../outside/evil.csv",
        key="data/p/../../../outside/evil.csv",
        message="data/<dataset>/<file>.csv",
    ),
    PoisonCase(
        "upload named ../",
        "an upload stored as data/<dataset>/../../outside/evil.csv",
        small_csv(40),
        filename="../../outside/evil.csv",
        expect="refused",
        message="invalid object key",
    ),
    PoisonCase(
        "upload named /abs",
        "an upload stored as data/<dataset>//etc/passwd.csv",
        small_csv(40),
        filename="/etc/passwd.csv",
        expect="refused",
        message="invalid object key",
    ),
    PoisonCase(
        "absolute path",
        "a notification for data//etc/passwd.csv",
        key="data//etc/passwd.csv",
        message="data/<dataset>/<file>.csv",
    ),
    PoisonCase(
        "NUL byte in key",
        "a notification for data/p/evil\\x00.csv",
        key="data/p/evil\x00.csv",
        message="invalid object key",
    ),
    PoisonCase(
        "backslashes in key",
        "a notification for data/p/..\\..\\evil.csv",
        key="data/p/..\\..\\evil.csv",
        message="invalid object key",
    ),
    PoisonCase(
        "1,000-byte name",
        "an upload whose file name is 1,000 bytes",
        small_csv(40),
        filename="n" * 996 + ".csv",
        expect="refused",
        message="bytes",
    ),
    PoisonCase(
        "1,000-byte name (event)",
        "a notification for a key with a 1,000-byte name",
        key="data/p/" + "n" * 996 + ".csv",
        message=f"has a name over {MAX_NAME_BYTES} bytes",
    ),
    PoisonCase(
        "spaces in name",
        "data/<dataset>/my upload file.csv",
        small_csv(80, seed=5),
        filename="my upload file.csv",
        expect="succeeded",
    ),
    PoisonCase(
        "non-ASCII name",
        "data/<dataset>/données-été-数据.csv",
        small_csv(80, seed=6),
        filename="données-été-数据.csv",
        expect="succeeded",
    ),
    PoisonCase(
        "object gone",
        "a notification for an object that no longer exists",
        key="data/p/deleted.csv",
        message="gave up",
        retried=True,
    ),
]


# Crafted model archives: each replaces a real artifact's members with hostile ones. Built
# from a real artifact's members (metadata, transform, model) so that only the attack differs.


@dataclass(frozen=True)
class ArtifactCase:
    """One kind of crafted model.tar.gz and a fragment of the reason it must be refused with."""

    kind: str
    description: str
    message: str


ARTIFACT_CASES = [
    ArtifactCase("truncated", "a model.tar.gz cut in half", "not a readable model archive"),
    ArtifactCase(
        "lightgbm-indices",
        "LightGBM model text whose split_feature indices lie past the transform's width",
        "split_feature",
    ),
    ArtifactCase(
        "lightgbm-abort",
        "LightGBM model text that makes the library abort while loading (std::terminate)",
        "crashed",
    ),
    ArtifactCase("pickle", "a pickle as the model file", "could not load"),
    ArtifactCase(
        "huge-member", "a model member over the size limit (a gzip bomb)", "over the limit"
    ),
]


def lightgbm_text(width: int, *, index: int | None = None, pad: bool = False) -> bytes:
    """A real LightGBM binary model over `width` features, made hostile.

    `index`: every split reads feature `index` (past the width: LightGBM reads out of bounds
    and crashes at prediction). `pad`: each index gets a leading zero, still in range, so the
    trees no longer match their recorded byte sizes and LightGBM aborts (std::terminate)
    while loading.
    """
    import lightgbm as lgb
    import numpy as np

    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, width))
    labels = (features[:, 0] > 0).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 4, "min_data_in_leaf": 5}
    booster = lgb.train(params, lgb.Dataset(features, labels), num_boost_round=3)
    lines = []
    for line in booster.model_to_string().splitlines():
        if line.startswith("tree_sizes=") and not pad:
            continue  # byte offsets of each tree, which longer indices would shift
        if line.startswith("split_feature="):
            found = line.removeprefix("split_feature=").split()
            line = "split_feature=" + " ".join(
                f"0{value}" if pad else str(index if index is not None else value)
                for value in found
            )
        lines.append(line)
    return ("\n".join(lines) + "\n").encode()
