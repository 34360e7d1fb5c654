"""How people write numbers, booleans and missing values in a CSV, and how to read them back.

A spreadsheet export writes `1.234,50 €`, `$1,234.50`, `12 %`, `TRUE`, `N/A` where a program
writes `1234.5`, `12`, `1` and nothing. This module holds the rules that read such cells as the
person meant them, in one place for the CSV reader (training) and for serving:

- `MISSING_VALUES`: the spellings of a missing value, missing wherever a value is read;
- `judge_decimal`: the decimal mark of a whole file, judged from its cells (and its delimiter),
  never cell by cell;
- `NumberSpelling`: how one column wrote its numbers (decimal mark, thousands separator,
  currency symbol, percent sign, spelt-out booleans), detected from its training values by
  `detect_spelling` and stored with the fitted column, so serving reads the file's own spelling
  and plain numbers alike.

A percentage is read as the number before the sign: `12%` is 12 (percentage points), so a
caller who sends the plain number 12 for that column means the same thing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict

__all__ = [
    "MISSING_VALUES",
    "NumberSpelling",
    "SpellingReader",
    "boolean_pair",
    "detect_spelling",
    "judge_decimal",
    "looks_like_a_value",
]

# Cells read as missing, in training and in serving (compared after stripping spaces).
MISSING_VALUES = (
    "",
    "NA",
    "N/A",
    "n/a",
    "na",
    "NaN",
    "nan",
    "null",
    "NULL",
    "Null",
    "None",
    "none",
    "?",
    "-",
    "--",
    "#N/A",
)
MISSING_SET = frozenset(MISSING_VALUES)

# Spelt-out booleans, compared in lower case. The words may be mixed in one column (true/no);
# the single letters only within their own pair, where they cannot be anything else.
_WORDS = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0}
_LETTER_PAIRS = ({"y": 1.0, "n": 0.0}, {"t": 1.0, "f": 0.0})

CURRENCY_SYMBOLS = "$€£¥₹"
_MINUS = "\u2212"  # the typographic minus sign, read as "-"
_SIGN = r"[+\-" + _MINUS + "]?"
_SEPARATORS = ",. '\u00a0\u202f"  # thousands separators seen in exports (and the decimal marks)
# A number as people write it: an optional sign, currency, parentheses (accounting negatives),
# digits with any separators, a percent sign. Only for finding the parts; the exact pattern of
# a column (`_pattern`) is what validates its values.
_LOOSE = re.compile(
    r"\(?\s*" + _SIGN + r"\s*(?P<lead>[" + CURRENCY_SYMBOLS + r"])?\s*" + _SIGN + r"\s*"
    r"(?P<number>\d[\d" + _SEPARATORS + r"]*|[.,]\d+)\s*"
    r"(?P<trail>[" + CURRENCY_SYMBOLS + r"])?\s*(?P<percent>%)?\s*\)?"
)
_SCIENTIFIC = re.compile(r"[+-]?\d*\.\d+[eE][+-]?\d+")  # 4.3e-14: a program's decimal point
_DETECT_SAMPLE = 2000


class NumberSpelling(BaseModel):
    """How a numeric column's values were written in the uploaded file.

    The default is plain numbers (`1234.5`). Values are read as the spelling says first, then
    as plain numbers, so a caller may send either.
    """

    model_config = ConfigDict(frozen=True)

    decimal: Literal[".", ","] = "."
    thousands: str = ""  # "", ",", ".", " ", "'", no-break spaces
    currency: str = ""  # one symbol, written before or after the number
    percent: bool = False  # `12%` read as 12 (percentage points)
    booleans: tuple[str, str] | None = None  # e.g. ("yes", "no"): spelt-out 1 and 0

    @property
    def plain(self) -> bool:
        """True for plain numbers (nothing to remember)."""
        return self == _PLAIN

    def describe(self) -> str:
        """The spelling in words, for the schema and the report."""
        if self.booleans is not None:
            yes, no = self.booleans
            return f"booleans ({yes}/{no} in any case -> 1/0)"
        parts = []
        if self.decimal == ",":
            parts.append("decimal comma")
        if self.thousands:
            parts.append(f"{self.thousands!r} thousands separator")
        if self.currency:
            parts.append(f"currency {self.currency}")
        if self.percent:
            parts.append("percent (12% -> 12)")
        return ", ".join(parts) if parts else "plain numbers"


_PLAIN = NumberSpelling()


def looks_like_a_value(text: str) -> bool:
    """Whether a cell reads as a number (as people write them), a boolean or a missing value:
    data, not a column's name."""
    text = text.strip()
    return (
        text in MISSING_SET
        or _LOOSE.fullmatch(text) is not None
        or boolean_pair([text]) is not None
    )


def boolean_pair(words: Iterable[str]) -> tuple[str, str] | None:
    """The (true, false) spelling of a column whose every value is a spelt-out boolean (lower
    case, stripped), or None. Words may mix (`yes`/`false`); letters only as `y`/`n` or
    `t`/`f`. Judged on the distinct values."""
    seen = {w.lower() for w in words}
    if not seen:
        return None
    if seen <= _WORDS.keys():
        yes = "yes" if "yes" in seen else "true"
        no = "no" if "no" in seen else "false"
        return yes, no
    for pair in _LETTER_PAIRS:
        if seen <= pair.keys():
            return next(k for k, v in pair.items() if v), next(k for k, v in pair.items() if not v)
    return None


def _grouping(number: str, decimal: str) -> tuple[str, str] | None:
    """(thousands separator or "", integer digits) of a number's text under `decimal`, or None
    when the separators do not group digits in threes."""
    integer, _, fraction = number.rpartition(decimal) if decimal in number else (number, "", "")
    if decimal in integer or (decimal in number and not fraction.isdigit()):
        return None
    if integer == "":
        return ("", "") if decimal in number else None
    separators = {c for c in integer if not c.isdigit()}
    if not separators:
        return "", integer
    if len(separators) > 1:
        return None
    (separator,) = separators
    groups = integer.split(separator)
    if not (1 <= len(groups[0]) <= 3) or any(len(g) != 3 for g in groups[1:]):
        return None
    return separator, "".join(groups)


def judge_decimal(cells: Iterable[str], *, delimiter: str | None = None) -> Literal[".", ","]:
    """The decimal mark of a file: "," when its cells show decimal commas, else ".".

    Each cell that reads as a number is evidence for one mark when only that mark explains it
    (`1,5` or `1.234,5`: comma; `1.5` or `1,234.5`: point). A lone separator before exactly
    three digits (`1,234`, `1.234`) is ambiguous: with `delimiter` given (the reader judging a
    file) it does not count, and a tie goes to the comma when a `;`-separated file holds such a
    `1,234` (the convention of the locales that separate with `;`); a lone `1.234` stays a
    decimal point. Without a delimiter (judging a frame the reader
    made), a `1.234` still written as text can only have been kept so because its file uses
    decimal commas, and a `1,234` is the thousands of a quoted US cell.
    """
    comma = point = ambiguous = 0
    for cell in cells:
        match = _LOOSE.fullmatch(cell.strip())
        if match is None:
            point += _SCIENTIFIC.fullmatch(cell.strip()) is not None
            continue
        number = match.group("number")
        has_comma, has_point = "," in number, "." in number
        if has_comma and has_point:
            if number.rfind(",") > number.rfind("."):
                comma += 1
            else:
                point += 1
        elif has_comma or has_point:
            mark = "," if has_comma else "."
            integer, _, fraction = number.rpartition(mark)
            if number.count(mark) > 1:  # a mark used twice separates thousands
                point += mark == ","
                comma += mark == "."
            elif len(fraction) != 3 or integer in ("", "0") or len(integer) > 3:
                comma += mark == ","
                point += mark == "."
            elif delimiter is None:
                comma += mark == "."
                point += mark == ","
            else:
                ambiguous += mark == ","
    if comma != point:
        return "," if comma > point else "."
    return "," if delimiter == ";" and ambiguous else "."


def detect_spelling(values: pl.Series, decimal: Literal[".", ","] = ".") -> NumberSpelling | None:
    """How a text column writes its numbers, or None when some value is not a number so written.

    `values` are text (String or Categorical); `decimal` is the file's mark (`judge_decimal`).
    Plain numbers give the plain spelling. The parts are found on a sample of the distinct
    values, then every value is checked against the spelling.
    """
    text = values.cast(pl.String).str.strip_chars()
    distinct = text.drop_nulls().unique(maintain_order=True)
    distinct = distinct.filter(~distinct.is_in(list(MISSING_SET)))
    if distinct.len() == 0:
        return None
    sample = distinct.head(_DETECT_SAMPLE).to_list()
    pair = boolean_pair(sample)
    if pair is not None:
        whole = boolean_pair(distinct.to_list()) is not None
        return NumberSpelling(booleans=pair) if whole else None
    found = _spelling_of(sample, decimal)
    if found is None:
        # Plain numbers in a file of decimal commas (the reader kept them as text there).
        plain = distinct.cast(pl.Float64, strict=False).null_count() == 0
        return _PLAIN if plain else None
    unread = SpellingReader.of(found).read(distinct).is_null().sum()
    return found if unread == 0 else None


def _spelling_of(sample: list[str], decimal: Literal[".", ","]) -> NumberSpelling | None:
    currencies: Counter[str] = Counter()
    separators: set[str] = set()
    percent = False
    for value in sample:
        match = _LOOSE.fullmatch(value)
        if match is None:
            return None
        grouping = _grouping(match.group("number").rstrip(), decimal)
        if grouping is None:
            return None
        if grouping[0]:
            separators.add(grouping[0])
        symbol = match.group("lead") or match.group("trail")
        if symbol:
            currencies[symbol] += 1
        percent = percent or match.group("percent") is not None
    if len(separators) > 1 or len(currencies) > 1:
        return None  # two thousands separators or two currencies: not one way of writing
    return NumberSpelling(
        decimal=decimal,
        thousands=next(iter(separators), ""),
        currency=next(iter(currencies), ""),
        percent=percent,
    )


def _pattern(spelling: NumberSpelling) -> str:
    """The regular expression of one value so spelt (Python and polars/Rust syntax alike)."""
    mark = re.escape(spelling.decimal)
    if spelling.thousands:
        sep = "[" + re.escape(spelling.thousands) + "]"  # a class: a space needs no escape
        integer = rf"(?:\d{{1,3}}(?:{sep}\d{{3}})+|\d+)"
    else:
        integer = r"\d+"
    number = rf"(?:{integer}(?:{mark}\d*)?|{mark}\d+)"
    sign = _SIGN
    currency = rf"(?:{re.escape(spelling.currency)})?" if spelling.currency else ""
    percent = r"%?" if spelling.percent else ""
    body = rf"{sign}\s*{currency}\s*{sign}\s*{number}\s*{currency}\s*{percent}"
    return rf"^(?:\(\s*{body}\s*\)|{body})$"


class SpellingReader:
    """Reads numbers written in one `NumberSpelling` (built once per spelling and cached)."""

    def __init__(self, spelling: NumberSpelling) -> None:
        self.spelling = spelling
        self._regex = _pattern(spelling)
        self._compiled = re.compile(self._regex)
        # Removed before the number is read: parentheses, percent, spaces (and no-break
        # spaces), the currency symbol and a visible thousands separator.
        drop = "()%" + spelling.currency + spelling.thousands.strip()
        self._drop = "[" + re.escape(drop) + r"\s]"
        self._drop_compiled = re.compile(self._drop)
        booleans = dict(_WORDS)
        if spelling.booleans is not None:
            for pair in _LETTER_PAIRS:
                if spelling.booleans[0] in pair:
                    booleans.update(pair)
        self.booleans: dict[str, float] = booleans

    @staticmethod
    @lru_cache(maxsize=256)
    def of(spelling: NumberSpelling) -> SpellingReader:
        """The reader of `spelling` (one per distinct spelling in the process)."""
        return SpellingReader(spelling)

    def read(self, text: pl.Series) -> pl.Series:
        """Stripped text -> Float64, null where a value is not written in this spelling
        (booleans and missing spellings are `parse_numeric`'s)."""
        core = text.str.replace_all(self._drop, "")
        if self.spelling.decimal == ",":
            core = core.str.replace(",", ".", literal=True)
        number = core.str.replace(_MINUS, "-", literal=True).cast(pl.Float64, strict=False)
        negative = text.str.starts_with("(")
        frame = pl.DataFrame({"v": text.str.contains(self._regex), "n": negative, "x": number})
        read = frame.select(
            pl.when(pl.col("v")).then(pl.when(pl.col("n")).then(-pl.col("x").abs()).otherwise("x"))
        )
        return read.to_series().alias(text.name)

    def read_text(self, text: str) -> float | None:
        """One stripped value as `read` reads it, or None."""
        if self._compiled.fullmatch(text) is None:
            return None
        core = self._drop_compiled.sub("", text)
        if self.spelling.decimal == ",":
            core = core.replace(",", ".", 1)
        try:
            number = float(core.replace(_MINUS, "-"))
        except ValueError:
            return None
        return -abs(number) if text.startswith("(") else number
