"""How user-controlled text is written into reports: the one escaping policy, per output format.

Dataset, file and column names, category values, target labels and error messages all come
from uploads, so every report writer treats them as hostile:

- **Spreadsheet formulas.** A cell whose text starts with `=`, `+`, `-` or `@` (after any
  leading white space or control characters) is evaluated by a spreadsheet that opens or
  pastes the table (CSV injection, e.g. `=cmd|' /C calc'!A0`). Such a value is shown with a
  leading apostrophe — the spreadsheets' own mark for "this is text" — in every document
  meant for people (REPORT.md, report.html; a CSV written for people must use
  `defuse_formula` too). Plain numbers (`-1.5`, `+3e2`) are left alone: a spreadsheet reads
  them as the numbers they are.
- **Markdown** (REPORT.md): line breaks and other control characters become spaces (a value
  cannot start a new table row, heading or list item); `<`, `>` and `&` become HTML entities
  (renderers pass raw HTML through, so `<script>` must never appear); the characters that make
  tables, code spans, links, emphasis and math (`|`, backtick, `[`, `]`, `*`, `_`, `~`, `#`,
  `$`, `\\`) are backslash-escaped. Rendered, the value reads exactly as it was, apostrophe aside.
- **HTML** (report.html): Jinja autoescaping, with `html_finalize` neutralising formulas in
  every `{{ value }}` of the template.
- **Plots**: a `$` is escaped so matplotlib never parses mathtext (`$x^2$` is shown as typed,
  and an unbalanced `$\\frac` cannot make rendering fail); long values are shortened.
- **JSON** (report.json): values are kept exactly (it is data for programs), but `<`, `>` and
  `&` are written as `\\u003c`, `\\u003e`, `\\u0026`: the same JSON, inert if a browser or an
  HTML page ever treats the file as markup.

The dashboard renders pages with Jinja autoescaping and its own forms, so it keeps values
exactly (a category `=1+1` must stay selectable as `=1+1` there); it does not use this module.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from markupsafe import Markup

FORMULA_TRIGGERS = ("=", "+", "-", "@")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~#$])")
_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}
_PLOT_LABEL_LIMIT = 32


def _is_control(char: str) -> bool:
    # Cc: C0/C1 controls (tab, CR, LF, NUL, ESC ...); Zl/Zp: Unicode line/paragraph separators.
    return unicodedata.category(char) in ("Cc", "Zl", "Zp")


def defuse_formula(value: str) -> str:
    """`value` with a leading apostrophe if a spreadsheet would evaluate it as a formula.

    Leading white space and control characters are skipped when looking for the trigger
    (`" =1+1"` and `"\\t=1+1"` are formulas too); plain numbers are returned unchanged.
    """
    i = 0
    while i < len(value) and (value[i].isspace() or _is_control(value[i])):
        i += 1
    start = value[i:]
    if start.startswith(FORMULA_TRIGGERS) and not _PLAIN_NUMBER.fullmatch(start):
        return "'" + value
    return value


def one_line(value: str) -> str:
    """`value` with every control character and line break replaced by a space."""
    return "".join(" " if _is_control(c) else c for c in value)


def markdown_text(value: Any) -> str:
    """`value` as inline Markdown text that renders exactly as the value (see module doc)."""
    text = defuse_formula(one_line(str(value)))
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return "".join(_HTML_ENTITIES.get(c, c) for c in text)


def html_finalize(value: Any) -> Any:
    """Jinja `finalize` for report pages: formulas neutralised, markup left to autoescape."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return defuse_formula(value)
    return value


def plot_text(value: Any, limit: int = _PLOT_LABEL_LIMIT) -> str:
    """`value` for a matplotlib label or title: shown as typed, never parsed as mathtext.

    Every `$` becomes `\\$`, so matplotlib counts no unescaped dollar and draws the text
    literally (it turns `\\$` back into `$`); backslashes need nothing. Values longer than
    `limit` are shortened with an ellipsis; control characters become spaces.
    """
    text = one_line(str(value))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def inert_json(text: str) -> str:
    """Serialised JSON with `<`, `>` and `&` as unicode escapes: the same JSON value.

    Safe on any valid JSON document: those characters can only occur inside its strings.
    """
    return "".join(_JSON_ESCAPES.get(c, c) for c in text)
