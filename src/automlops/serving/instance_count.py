"""Count the instances of a JSON invocation body without parsing it.

A body of 3 million `{}` is 9 MB, under the byte limit, and orjson holds the GIL for the whole
parse of it (building 3 million dicts): meanwhile the event loop, and `/ping`, wait. The cap on
instances is checked here first, on the body's bytes, so a body over the cap is refused before
any full parse. The scan is vectorised (numpy), works through the body a chunk at a time and
stops as soon as it has seen more instances than the cap, so no single step holds the GIL for
long and a body over the cap costs about as much as the cap's worth of it.

Strings are honoured (a `,` or `{` inside a string is not structure; `\\"` does not end one),
so for a well-formed body the count is exact. A body the scan cannot read as
`{..., "instances": [...], ...}` gets no count (None): the full parse then says what is wrong.
"""

from __future__ import annotations

import re

import numpy as np

_KEY = b'"instances"'
_CHUNK = 1 << 20  # bytes scanned per step
_QUOTE, _BACKSLASH, _COMMA = ord('"'), ord("\\"), ord(",")
_ARRAY_VALUE = re.compile(rb"[ \t\n\r]*:[ \t\n\r]*\[")  # after a key: its value is an array
_EMPTY_ARRAY = re.compile(rb"[ \t\n\r]*\]")

# Depth change of each byte outside strings: +1 opens, -1 closes; commas and brackets are marks.
_DEPTH = np.zeros(256, np.int8)
_DEPTH[list(b"{[")] = 1
_DEPTH[list(b"}]")] = -1
_MARK = np.zeros(256, bool)
_MARK[list(b"{}[],")] = True


def count_instances(body: bytes, limit: int) -> int | None:
    """The number of elements of the body's top-level "instances" array, or, once it is known
    to be over `limit`, the count so far (> limit). None when the body is not shaped
    `{..., "instances": [...], ...}` as far as a scan can tell (the parse then reports why).

    The first top-level "instances" is counted (orjson keeps the last of duplicate keys: a
    body repeating the key is refused if either array is over the cap)."""
    data = np.frombuffer(body, np.uint8)
    inside = _inside_strings(data)
    opening = _instances_array(body, data, inside)
    if opening is None:
        return None
    if _EMPTY_ARRAY.match(body, opening + 1):
        return 0
    elements, depth = 1, 2  # inside the instances array, past its `[`
    for start in range(opening + 1, data.size, _CHUNK):
        stop = min(start + _CHUNK, data.size)
        marks = start + np.flatnonzero(_MARK[data[start:stop]] & ~inside[start:stop])
        chars = data[marks]
        depths = depth + np.cumsum(_DEPTH[chars], dtype=np.int64)
        closed = np.flatnonzero(depths < 2)  # the array's own `]`
        end = int(closed[0]) if closed.size else marks.size
        elements += int(np.count_nonzero((chars[:end] == _COMMA) & (depths[:end] == 2)))
        if closed.size:
            return elements
        if elements > limit:
            return elements  # over the cap: the rest need not be looked at
        depth = int(depths[-1]) if depths.size else depth
    return None  # the array never closes: not JSON


def _inside_strings(data: np.ndarray) -> np.ndarray:
    """True for the bytes inside a string (its opening quote included, its closing one not)."""
    quote = data == _QUOTE
    if quote.any() and (data == _BACKSLASH).any():
        # A quote after an odd run of backslashes is escaped: part of the string.
        at = np.flatnonzero(quote)
        at = at[at > 0]
        plain = np.where(data != _BACKSLASH, np.arange(data.size, dtype=np.int64), -1)
        run = (at - 1) - np.maximum.accumulate(plain)[at - 1]  # backslashes just before
        quote[at[run % 2 == 1]] = False
    return np.bitwise_xor.accumulate(quote.view(np.uint8)).view(bool)


def _instances_array(body: bytes, data: np.ndarray, inside: np.ndarray) -> int | None:
    """The offset of the `[` that opens the value of a top-level "instances" key, if any."""
    depth, scanned = 0, 0
    at = body.find(_KEY)
    while at >= 0:
        marks = scanned + np.flatnonzero(_MARK[data[scanned:at]] & ~inside[scanned:at])
        depth += int(_DEPTH[data[marks]].sum(dtype=np.int64))
        scanned = at
        # A key: a string of its own (not part of a longer one), in the top-level object.
        if depth == 1 and inside[at] and (at == 0 or not inside[at - 1]):
            value = _ARRAY_VALUE.match(body, at + len(_KEY))
            if value is not None:
                return value.end() - 1
        at = body.find(_KEY, at + 1)
    return None
