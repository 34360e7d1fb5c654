"""A big JSON body is counted before it is parsed: over the instance cap, orjson never sees it
(a parse of 3 million `{}` holds the GIL, and so `/ping`, for 0.2 s or more).

`test_serving_load.py::test_ping_answers_while_a_huge_body_is_worked` sends such a body to a
running server and records the slowest `/ping` answered meanwhile.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from automlops.serving import invocation
from automlops.serving.instance_count import count_instances

THREE_MILLION = b'{"instances": [' + b"{}," * 2_999_999 + b"{}]}"

TRICKY: list[Any] = [
    {"instances": []},
    {"instances": [{}]},
    {"x": [1, 2, 3], "instances": [{"a": 1}]},  # another top-level array first
    {"o": {"instances": [1, 2, 3]}, "instances": [{}, {}]},  # a nested key of the same name
    {"a": '"instances": [1, 2]', "instances": [{}]},  # the key's text inside a string
    {"instances": [{"a": 'x"{,]['}, {"b": "\\"}, {"c": '\\\\"'}, {"d": "}],"}]},
    {"instances": [[1, 2], {"a": [3, {"b": 4}]}, 5, "s,{", None]},  # refused later, counted
]


def _random_body(rng: random.Random) -> bytes:
    """Rows with values that look like JSON structure, escapes and unicode."""
    alphabet = ['"', "\\", ",", "{", "}", "[", "]", ":", "a", " ", "é", "\n"]
    rows = []
    for _ in range(rng.randint(0, 40)):
        row = {}
        for _ in range(rng.randint(0, 4)):
            key = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
            row[key] = rng.choice(
                [rng.random(), None, "".join(rng.choice(alphabet) for _ in range(8)), [1, "]"]]
            )
        rows.append(row)
    prefix = {"pad": "".join(rng.choice(alphabet) for _ in range(10))}
    return orjson.dumps({**prefix, "instances": rows}, option=orjson.OPT_INDENT_2)


@pytest.mark.parametrize("document", TRICKY)
def test_the_count_is_the_parsed_length(document: Any) -> None:
    body = orjson.dumps(document)
    assert count_instances(body, 10**9) == len(document["instances"])
    spaced = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    assert count_instances(spaced, 10**9) == len(document["instances"])


def test_the_count_matches_orjson_on_random_bodies() -> None:
    rng = random.Random(14)
    for _ in range(300):
        body = _random_body(rng)
        assert count_instances(body, 10**9) == len(orjson.loads(body)["instances"]), body


@pytest.mark.parametrize(
    "body", [b"[1, 2]", b'{"instances": 5}', b'{"instances": [{}, {}', b"not json", b'"x"']
)
def test_a_body_of_another_shape_has_no_count(body: bytes) -> None:
    """The parse says what is wrong with it (a 400)."""
    assert count_instances(body, 10) is None


@pytest.mark.parametrize("instance", [b"{}", b"[]"])
def test_three_million_instances_are_refused_without_a_parse(
    monkeypatch: pytest.MonkeyPatch, instance: bytes
) -> None:
    parsed: list[int] = []
    real_loads = orjson.loads

    def loads(data: Any) -> Any:
        parsed.append(len(data))
        return real_loads(data)

    monkeypatch.setattr(invocation.orjson, "loads", loads)
    with pytest.raises(invocation.ApiError) as refused:
        invocation._parse_json(THREE_MILLION.replace(b"{},", instance + b","), 100_000)
    assert refused.value.status == 413
    assert "100000" in str(refused.value) and "AUTOMLOPS_MAX_INSTANCES" in str(refused.value)
    assert parsed == []  # refused on its bytes: orjson never parsed it
    # At the cap, the body is parsed (once) and its rows returned.
    at_cap = b'{"instances": [' + b"{}," * 99_999 + b"{}]}"
    assert len(invocation._parse_json(at_cap, 100_000)) == 100_000
    assert parsed == [len(at_cap)]


def test_rows_within_the_cap_are_not_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting brackets tells a body of rows at the cap cannot be over it: no scan."""
    scanned: list[int] = []
    monkeypatch.setattr(
        invocation, "count_instances", lambda body, limit: scanned.append(limit) or None
    )
    rows = [{"age": i, "job": "technician", "note": "n" * 60} for i in range(1_000)]
    body = orjson.dumps({"instances": rows})
    assert len(body) > invocation.INLINE_BODY_BYTES
    assert len(invocation._parse_json(body, 1_000)) == 1_000
    assert scanned == []
    with pytest.raises(invocation.ApiError, match="at most 999"):
        invocation._parse_json(body, 999)
    assert scanned == [999]
