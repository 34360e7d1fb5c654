"""Hostile strings in reports: REPORT.md, report.html, report.json, the plots and the dashboard.

The policy under test is reports/escaping.py. A multiclass dataset whose column names, category
values and target labels are markup, spreadsheet formulas, mathtext, pipes and line breaks goes
through the real pipeline twice (a champion, then a challenger with drift, so every section of
the report is written); the tests read what was stored. REPORT.md is rendered with
markdown-it-py (GFM tables) to check what a Markdown viewer would show.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token
from matplotlib.cbook import is_math_text

from automlops import keys
from automlops.config import Manifest, Task
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker
from automlops.reports import plots
from automlops.reports.escaping import (
    defuse_formula,
    inert_json,
    markdown_text,
    one_line,
    plot_text,
)
from automlops.ui.up import build_app
from support import upload

SCRIPT = "<script>alert(1)</script>"
FORMULA = "=cmd|' /C calc'!A0"
LABELS = [SCRIPT, FORMULA, "$x^2$ | a\nb", "@SUM(A1:A9)"]
NUMERIC = ["<img src=x onerror=alert(1)>", "-2+3+cmd|' /C calc'!A0"]
CATEGORICAL = ["$\\frac{1}{0}$ \\ `tick` *em* [l](javascript:alert(1))", "pipe|name\nnew line"]
CATEGORIES = ["=1+1", "<b>bold</b>", "plain", "+tab\there"]
HOSTILE = [*LABELS, *NUMERIC, *CATEGORICAL, *CATEGORIES]
DATASET = "hostile"
# Tags report.html and rendered REPORT.md may contain: ours, never one a value brought in.
HTML_TAGS = {
    *("html", "head", "meta", "title", "style", "body", "header", "section", "h1", "h2", "h3"),
    *("p", "table", "tr", "th", "td", "span", "code", "br", "ul", "li", "div", "figure", "img"),
    *("figcaption", "strong", "thead", "tbody", "a"),
}


def _table(rows: int, seed: int, shift: float = 0.0) -> bytes:
    """A learnable multiclass CSV whose every name and value is hostile."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*NUMERIC, *CATEGORICAL, "y"])
    for _ in range(rows):
        k = rng.randrange(len(LABELS))
        writer.writerow(
            [
                round(k + rng.gauss(shift, 0.3), 3),
                round(rng.gauss(0, 1), 3),
                CATEGORIES[k],
                rng.choice(CATEGORIES),
                LABELS[k],
            ]
        )
    return out.getvalue().encode()


@dataclass
class Reports:
    """The stored report files of each version, by file name."""

    runtime: LocalRuntime
    files: dict[int, dict[str, bytes]]
    keys: dict[int, str]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reports]:
    runtime = open_runtime(tmp_path_factory.mktemp("escaping") / "home")
    manifest = Manifest(
        dataset=DATASET,
        target="y",
        task=Task.multiclass,
        time_budget_s=1,
        learners=["linear"],
        keep=[CATEGORICAL[0]],  # a copy of the label: a leak preprocessing would drop
    )
    # Two uploads: the second is compared with the first's champion and drifts.
    upload(runtime, manifest, "first.csv", _table(160, seed=1))
    Worker(runtime).run_until_idle()
    upload(runtime, manifest, "second.csv", _table(160, seed=2, shift=0.8))
    Worker(runtime).run_until_idle()
    runs = runtime.runlog.list(DATASET)
    assert [r.status for r in runs] == ["succeeded", "succeeded"], [r.error for r in runs]
    bucket = runtime.settings.buckets.model_monitoring
    files: dict[int, dict[str, bytes]] = {}
    report_keys: dict[int, str] = {}
    for version in runtime.registry.read(DATASET).versions:
        assert version.report_key is not None
        prefix = version.report_key.removesuffix("report.json")
        report_keys[version.version] = version.report_key
        files[version.version] = {
            key.removeprefix(prefix): runtime.store.get(bucket, key)
            for key in runtime.store.list(bucket, prefix)
        }
    yield Reports(runtime, files, report_keys)
    runtime.close()


# -- the policy, value by value -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=1+1", "'=1+1"),
        (FORMULA, "'" + FORMULA),
        ("+cmd", "'+cmd"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("  =1+1", "'  =1+1"),
        ("\t=1+1", "'\t=1+1"),
        ("\r\n@x", "'\r\n@x"),
        ("-", "'-"),
        ("-1.5", "-1.5"),
        ("+3e2", "+3e2"),
        ("-.5", "-.5"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_defuse_formula(value: str, shown: str) -> None:
    assert defuse_formula(value) == shown


_MARKDOWN = MarkdownIt("commonmark").enable("table")
# Text made of the characters that matter (markup, formulas, mathtext, line breaks), or any text.
HOSTILE_TEXT = st.text(
    st.sampled_from("=+-@|<>&`*_[]()~#$\\!:/\n\r\t 1a.é"), max_size=40
) | st.text(max_size=40)


def _inline_texts(tokens: list[Token]) -> list[str]:
    """The text a viewer shows for each inline token (table cell, list item, paragraph)."""
    texts = []
    for token in tokens:
        if token.type != "inline":
            continue
        parts = []
        for child in token.children or []:
            assert child.type not in ("html_inline", "image"), child
            # The one link of a report is ours, to the page beside it.
            assert child.type != "link_open" or child.attrs == {"href": "report.html"}, child
            if child.type in ("text", "code_inline"):
                parts.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append("\n")
        texts.append("".join(parts))
    return texts


@settings(max_examples=300, deadline=None)
@given(HOSTILE_TEXT)
@example(SCRIPT)
@example("<b>bold</b> &lt;i&gt; &amp;")
@example(FORMULA)
@example("a | b\nc")
@example("`code` **strong** [l](javascript:alert(1)) $x^2$ \\")
def test_markdown_text_renders_as_the_value_in_one_cell(value: str) -> None:
    shown = markdown_text(value)
    assert not {"<", ">", "\n", "\r"} & set(shown)
    source = f"| a | b |\n|---|---|\n| {shown} | end |\n"
    tokens = _MARKDOWN.parse(source)
    assert not [t for t in tokens if t.type == "html_block"]
    cells = _inline_texts(tokens)
    assert len(cells) == 4, source  # the header's two cells and the row's two: no cell added
    assert cells[2] == defuse_formula(one_line(value)).strip(), source  # edges: white space
    assert cells[3] == "end"


@settings(max_examples=300, deadline=None)
@given(HOSTILE_TEXT)
def test_plot_text_is_drawn_as_typed(value: str) -> None:
    shown = plot_text(value, limit=100)
    assert not is_math_text(shown)
    # What matplotlib draws for text that is not mathtext: `\$` turned back into `$`.
    assert shown.replace(r"\$", "$") == one_line(value)


@given(st.recursive(st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_inert_json_is_the_same_json(value: object) -> None:
    text = inert_json(json.dumps(value, ensure_ascii=False))
    assert json.loads(text) == value
    assert not {"<", ">", "&"} & set(text)


def test_plots_draw_hostile_names_without_mathtext_errors() -> None:
    names = [*HOSTILE, "$\\frac{", "\\", "$$", "a" * 200]
    png = plots.importance_plot({name: 1.0 / (i + 1) for i, name in enumerate(names)})
    assert png.startswith(b"\x89PNG")
    feature = {
        "name": "$\\frac{",
        "bins": names,
        "baseline": [1 / len(names)] * len(names),
        "current": [1 / len(names)] * len(names),
        "psi": 0.1,
        "kind": "categorical",
    }
    assert plots.drift_feature_plot(feature).startswith(b"\x89PNG")
    assert plots.confusion_plot([[1, 0], [0, 1]], ["$\\frac{", "\\$x$"]).startswith(b"\x89PNG")


# -- through the pipeline -------------------------------------------------------------------


def _formula_like(text: str) -> bool:
    return defuse_formula(text) != text


def test_pipeline_wrote_every_section_and_plot(reports: Reports) -> None:
    second = reports.files[2]
    expected = {"confusion.png", "per_class.png", "importance.png", "comparison.png", "drift.png"}
    assert expected | {f"drift_{i}.png" for i in range(1, 5)} <= set(second)
    markdown = second["REPORT.md"].decode()
    for section in ("Confusion matrix", "Candidate vs champion", "Data drift", "Lineage"):
        assert section in markdown


@pytest.mark.parametrize("version", [1, 2])
def test_markdown_report_shows_hostile_strings_as_text(reports: Reports, version: int) -> None:
    markdown = reports.files[version]["REPORT.md"].decode()
    assert "<" not in markdown and ">" not in markdown  # no raw HTML a renderer could run
    tokens = _MARKDOWN.parse(markdown)
    assert not [t for t in tokens if t.type == "html_block"]
    texts = _inline_texts(tokens)
    for text in texts:
        assert "\n" not in text  # no value broke a line, so none started a row or an item
        assert not _formula_like(text), text
    # Every table row has as many cells as its header: no `|` in a value split a cell.
    widths: list[int] = []
    for token in tokens:
        if token.type == "tr_open":
            widths.append(0)
        elif token.type in ("th_open", "td_open"):
            widths[-1] += 1
        elif token.type == "table_close":
            assert len(set(widths)) == 1, widths
            widths = []
    for label in LABELS:
        assert defuse_formula(one_line(label)) in texts  # a confusion-matrix header cell
    if version == 2:
        shown = "\n".join(texts)
        for name in [*NUMERIC, *CATEGORICAL]:
            assert defuse_formula(one_line(name)) in shown  # drift lines name every column


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            assert not (value or "").lower().startswith("javascript:"), (tag, value)

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.texts.append(data.strip())


def _page(document: str) -> _Page:
    parser = _Page()
    parser.feed(document)
    return parser


@pytest.mark.parametrize("version", [1, 2])
def test_html_report_shows_hostile_strings_as_text(reports: Reports, version: int) -> None:
    page = _page(reports.files[version]["report.html"].decode())
    assert page.tags <= HTML_TAGS, page.tags - HTML_TAGS
    for text in page.texts:
        assert not _formula_like(text), text
    shown = "\n".join(page.texts)
    for label in LABELS:
        assert defuse_formula(label) in shown
    if version == 2:
        for name in [*NUMERIC, *CATEGORICAL]:
            assert defuse_formula(name) in shown


def test_report_json_keeps_exact_values_and_no_markup(reports: Reports) -> None:
    raw = reports.files[2]["report.json"].decode()
    assert not {"<", ">", "&"} & set(raw)
    report = json.loads(raw)
    assert sorted(report["labels"]) == sorted(LABELS)  # data for programs: not rewritten
    assert {c["name"] for c in report["drift"]["columns"]} == {*NUMERIC, *CATEGORICAL, "y"}


def test_dashboard_shows_hostile_report_as_text(reports: Reports) -> None:
    client = TestClient(build_app(reports.runtime), base_url="http://testserver")
    pages = [
        f"/ui/models/{DATASET}/versions/2/report",
        f"/ui/models/{DATASET}",
        f"/ui/drift/{DATASET}",
        "/ui/",
    ]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        assert SCRIPT not in response.text and NUMERIC[0] not in response.text, path
        assert "<b>bold" not in response.text, path
    escaped = "&lt;img src=x onerror=alert(1)&gt;"
    assert f"Drift of {escaped}</figcaption>" in client.get(pages[0]).text  # a plot's title
    assert escaped in client.get(pages[2]).text  # the drifted column
    files = keys.report_files(reports.keys[2])
    markdown = client.get(f"/ui/files/{files['markdown']}")
    assert markdown.headers["content-type"].startswith("text/plain")
    served = client.get(f"/ui/files/{files['html']}")
    assert "default-src 'none'" in served.headers["content-security-policy"]  # no script runs
    assert served.content == reports.files[2]["report.html"]
