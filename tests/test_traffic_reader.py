"""The captured-traffic reader: the column-wise route reads what the line-by-line one reads."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest

from automlops import keys
from automlops.local.store import DirectoryStore
from automlops.serving import wire
from automlops.serving.capture import Captured, capture_line
from automlops.stages import traffic as reader
from automlops.stages.traffic import LabelJoin, Traffic, join_labels, read_traffic

BUCKET = "model-monitoring"
START = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)


def _rows(n: int, seed: int) -> list[dict[str, object]]:
    """Rows of every JSON type a caller sends: ints, floats, text, booleans, nulls, "", and
    keys some rows lack."""
    rows: list[dict[str, object]] = []
    for i in range(n):
        k = seed * 7 + i
        row: dict[str, object] = {"age": 20 + k % 50, "balance": k * 1.25 - 3, "job": f"j{k % 4}"}
        if k % 3:
            row["flag"] = bool(k % 2)
        if k % 5 == 0:
            row["note"] = "" if k % 10 else None
        rows.append(row)
    return rows


def _answer(n: int, regression: bool, seed: int) -> bytes:
    if regression:
        predictions: list[dict[str, object]] = [{"value": seed + i * 0.5} for i in range(n)]
    else:
        p = [((seed + i) % 10) / 10 for i in range(n)]
        predictions = [
            {"label": "yes" if q > 0.5 else "no", "probabilities": {"no": 1 - q, "yes": q}}
            for q in p
        ]
    return orjson.dumps({"model_version": "1", "predictions": predictions})


def _day(store: DirectoryStore, regression: bool) -> None:
    """Three hours of traffic in the server's capture layout, two objects an hour: one-row
    and five-row requests, refusals, a caller's own ids."""
    seed = 0
    for hour in range(3):
        for part in range(2):
            lines = []
            for j in range(12):
                seed += 1
                at = START + timedelta(hours=hour, minutes=part * 30 + j)
                n = 5 if j % 4 == 0 else 1
                body = wire.json_body(_rows(n, seed))
                refused = j == 7
                item = Captured(
                    dataset="d",
                    version=1,
                    inference_id=f"caller-{seed}" if j % 3 else os.urandom(16).hex(),
                    time=at.timestamp(),
                    content_type=wire.JSON,
                    body=body,
                    answer=None if refused else _answer(n, regression, seed),
                    answer_type=wire.JSON,
                    status=400 if refused else 200,
                    error="bad" if refused else None,
                )
                lines.append(capture_line(item, f"e{seed}"))
            key = keys.capture_key("d", 1, START + timedelta(hours=hour), f"p{part}")
            store.put(BUCKET, key, gzip.compress(b"".join(lines)))


def _line_by_line_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> Traffic:
        raise reader._Fallback

    monkeypatch.setattr(reader, "_columns", refuse)


def _read(store: DirectoryStore, task: str) -> Traffic:
    # The window cuts the first hour's first 10 minutes and the last hour's end off.
    since, until = START + timedelta(minutes=10), START + timedelta(hours=2, minutes=40)
    return read_traffic(store, BUCKET, "d", 1, since, until, task)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_column_wise_and_line_by_line_reads_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str
) -> None:
    store = DirectoryStore(tmp_path, [BUCKET])
    _day(store, regression=task == "regression")
    slow_calls: list[int] = []
    slow = reader._line_by_line

    def counted(*args: object) -> Traffic:
        slow_calls.append(1)
        return slow(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(reader, "_line_by_line", counted)
    fast = _read(store, task)
    assert slow_calls == []  # every object took the column-wise route
    _line_by_line_only(monkeypatch)
    exact = _read(store, task)
    assert fast.height == exact.height > 0
    assert fast.frame().equals(exact.frame()) and fast.frame().columns == sorted(
        fast.frame().columns
    )
    assert fast.answers.equals(exact.answers)
    assert (fast.requests, fast.errors) == (exact.requests, exact.errors)
    assert sum(fast.errors.values()) > 0 and fast.unreadable == exact.unreadable == 0
    assert fast.objects == exact.objects == 6
    assert any(i.endswith("#4") for i in fast.ids)  # five-row requests: <id>#<row>
    assert fast.frame()["note"].drop_nulls().len() == 0  # "" and null are missing alike
    rows = list(range(0, fast.height, 7))
    assert fast.probabilities_at(rows) == exact.probabilities_at(rows)
    if task == "binary":
        assert fast.probabilities_at([0])[0] is not None


def test_an_object_with_a_broken_line_is_read_line_by_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DirectoryStore(tmp_path, [BUCKET])
    _day(store, regression=False)
    key = keys.capture_key("d", 1, START + timedelta(hours=1), "p0")
    data = gzip.decompress(store.get(BUCKET, key))
    store.put(BUCKET, key, gzip.compress(data + b"not json\n" + data.splitlines()[0] + b"\n"))
    mixed = _read(store, "binary")
    _line_by_line_only(monkeypatch)
    exact = _read(store, "binary")
    assert mixed.unreadable == exact.unreadable == 1
    assert mixed.frame().equals(exact.frame()) and mixed.answers.equals(exact.answers)


def test_labels_join_the_column_wise_ids(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, [BUCKET])
    _day(store, regression=False)
    traffic = _read(store, "binary")
    ids = traffic.ids
    latest = {
        ident: wire.LabelRecord(id=ident, label="yes", received_at=START.isoformat(), source="t")
        for ident in [ids[3], ids[-1], "never-served"]
    }
    join = LabelJoin()
    matched = join_labels(traffic, latest, join)
    assert [row for row, _ in matched] == [3, len(ids) - 1]
    assert (join.matched, join.unknown, join.unknown_ids) == (2, 1, ["never-served"])
    assert pl.Series(ids).n_unique() == len(ids)
