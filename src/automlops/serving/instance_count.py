"""Count the instances of a JSON invocation body without parsing it.

A body of 3 million `{}` is 9 MB, under the byte limit, and orjson holds the GIL for the whole
parse of it (building 3 million dicts): meanwhile the event loop, and `/ping`, wait. The cap on
instances is checked here first, on the body's bytes, so a body over the cap is refused before
any full parse. The scan is vectorised (numpy: one pass over the body finds the strings, then
the structure is read a chunk at a time and the scan stops once it has seen more instances
than the cap), so no single step holds the GIL for long.

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
_OPEN_OBJECT, _CLOSE_OBJECT, _OPEN_ARRAY, _CLOSE_ARRAY = (ord(c) for c in "{}[]")
_ARRAY_VALUE = re.compile(rb"[ \t\n\r]*:[ \t\n\r]*\[")  # after a key: its value is an array
_EMPTY_ARRAY = re.compile(rb"[ \t\n\r]*\]")

# Depth change of each structural byte: +1 opens, -1 closes, 0 for a comma.
_DEPTH = np.zeros(256, np.int8)
_DEPTH[list(b"{[")] = 1
_DEPTH[list(b"}]")] = -1


def count_instances(body: bytes, limit: int) -> int | None:
    """The number of elements of the body's top-level "instances" array, or, once it is known
    to be over `limit`, the count so far (> limit). None when the body is not shaped
    `{..., "instances": [...], ...}` as far as a scan can tell (the parse then reports why).

    The first top-level "instances" is counted (orjson keeps the last of duplicate keys: a
    body repeating the key is refused if either array is over the cap)."""
    data = np.frombuffer(body, np.uint8)
    # quotes[i]: how many string quotes lie at or before offset i (odd: i is in a string).
    mask = np.zeros(data.size, bool)
    mask[_string_quotes(data)] = True
    quotes = np.cumsum(mask, dtype=np.int32)
    del mask
    opening = _instances_array(body, data, quotes)
    if opening is None:
        return None
    if _EMPTY_ARRAY.match(body, opening + 1):
        return 0
    elements, depth = 1, 2  # inside the instances array, past its `[`
    for start in range(opening + 1, data.size, _CHUNK):
        marks = _structure(data, quotes, start, min(start + _CHUNK, data.size))
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


def _string_quotes(data: np.ndarray) -> np.ndarray:
    """Offsets of the quotes that open or close a string (an escaped quote does neither)."""
    quotes = np.flatnonzero(data == _QUOTE)
    if quotes.size and quotes[0] == 0:  # no backslash can precede it
        first, rest = quotes[:1], quotes[1:]
    else:
        first, rest = quotes[:0], quotes
    after_backslash = rest[data[rest - 1] == _BACKSLASH]
    if after_backslash.size == 0:
        return quotes
    # A quote after an odd run of backslashes is escaped: part of the string.
    plain = np.where(data != _BACKSLASH, np.arange(data.size, dtype=np.int64), -1)
    last_plain = np.maximum.accumulate(plain)
    run = (rest - 1) - last_plain[rest - 1]  # backslashes just before each quote
    return np.concatenate([first, rest[run % 2 == 0]])


def _structure(data: np.ndarray, quotes: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Offsets of the structural bytes (`{}[],`) in data[start:stop] that are not in strings."""
    chunk = data[start:stop]
    found = (chunk == _COMMA) | (chunk == _OPEN_OBJECT) | (chunk == _CLOSE_OBJECT)
    found |= (chunk == _OPEN_ARRAY) | (chunk == _CLOSE_ARRAY)
    found &= quotes[start:stop] % 2 == 0  # an even number of string quotes before
    return start + np.flatnonzero(found)


def _instances_array(body: bytes, data: np.ndarray, quotes: np.ndarray) -> int | None:
    """The offset of the `[` that opens the value of a top-level "instances" key, if any."""
    depth, scanned = 0, 0
    at = body.find(_KEY)
    while at >= 0:
        depth += int(_DEPTH[data[_structure(data, quotes, scanned, at)]].sum(dtype=np.int64))
        scanned = at
        # A key: a string of its own, opened by this quote (the first, or an odd one, of the
        # string quotes), in the top-level object.
        opens = quotes[at] % 2 == 1 and (at == 0 or quotes[at - 1] < quotes[at])
        if depth == 1 and opens:
            value = _ARRAY_VALUE.match(body, at + len(_KEY))
            if value is not None:
                return value.end() - 1
        at = body.find(_KEY, at + 1)
    return None
