"""JSON bodies with duplicated keys are refused, naming the key and where it is.

`{"CRIM": 1, "CRIM": 2}` is valid JSON to most parsers, which keep the last value silently: the
client meant one of the two, and the service would guess. jiter (pydantic's own parser) finds
duplicates exactly. It parses at about half its usual speed while doing so, and /predict and
/predict/batch validate straight from bytes with pydantic, so there the full check runs only when
a cheap count says a duplicate is possible (`may_hide_duplicates`). Depth is bounded too: jiter
stops at 200 nested levels with a ValueError, never a RecursionError.
"""

from __future__ import annotations

import re
from typing import Any

import jiter

_DUPLICATE = re.compile(
    r'^Detected duplicate key "(?P<key>.*)" at line (?P<line>\d+) column (?P<column>\d+)$'
)
# a value no client sends, put where the duplicate's value starts to find the object holding it
_MARK = "\x00duplicate-key-mark\x00"
_MARK_JSON = b'"\\u0000duplicate-key-mark\\u0000"'  # a control character must be escaped in JSON


class DuplicateKey(ValueError):
    """A key appears twice in one JSON object; `path` leads to that object from the body's root."""

    def __init__(self, key: str, path: list[str | int], line: int, column: int) -> None:
        super().__init__(f'duplicate key "{key}" at line {line} column {column}')
        self.key, self.path, self.line, self.column = key, path, line, column

    def error(self, prefix: tuple[str | int, ...] = ("body",)) -> dict[str, Any]:
        """The 422 detail item, in FastAPI's validation-error shape."""
        return {
            "loc": [*prefix, *self.path, self.key],
            "msg": f"{self}: each key may appear once in an object",
            "type": "duplicate_key",
        }


def parse(body: bytes) -> Any:
    """Parse strict JSON (no NaN or Infinity literals); raise DuplicateKey for a repeated key,
    ValueError for anything else that is not JSON (too deeply nested included)."""
    try:
        return jiter.from_json(body, allow_inf_nan=False, catch_duplicate_keys=True)
    except ValueError as error:
        raise _duplicate(body, error) or error from None


def check_duplicates(body: bytes) -> None:
    """Raise DuplicateKey if `body` repeats a key in an object; anything else passes here (the
    caller's own parser reports what is not JSON)."""
    try:
        jiter.from_json(body, catch_duplicate_keys=True)
    except ValueError as error:
        found = _duplicate(body, error)
        if found is not None:
            raise found from None


def may_hide_duplicates(body: bytes, keys: int) -> bool:
    """False when `body` certainly has no duplicate key, given that it parsed to objects holding
    `keys` keys in all. Every key is followed by one colon, so with no colon inside a string,
    fewer keys than colons means a key was repeated. Bodies that pass validation hold numbers and
    contract names only, so for them this is exact; the count costs well under a millisecond on a
    10,000-row batch, where jiter's check costs about 6 ms."""
    return body.count(b":") != keys


def _duplicate(body: bytes, error: ValueError) -> DuplicateKey | None:
    match = _DUPLICATE.match(str(error))
    if match is None:
        return None
    key, line, column = match["key"], int(match["line"]), int(match["column"])
    return DuplicateKey(key, _path_to(body, key, line, column), line, column)


def _path_to(body: bytes, key: str, line: int, column: int) -> list[str | int]:
    """The keys and indexes from the root to the object holding the duplicate. jiter reports the
    byte just after the duplicate's colon; the body up to there, with a marker as the value and
    every open container closed by jiter's partial mode, holds the marker in that object, and every
    object or array on the way there has the path's next step as its last entry."""
    start = 0
    for _ in range(line - 1):
        start = body.index(b"\n", start) + 1
    head = body[: start + column - 1] + _MARK_JSON
    try:
        node = jiter.from_json(head, partial_mode=True)
    except ValueError:
        return []  # the key is still named; only its place is unknown
    path: list[str | int] = []
    while True:
        if isinstance(node, dict):
            if node.get(key) == _MARK or not node:
                return path
            last = next(reversed(node))
            path.append(last)
            node = node[last]
        elif isinstance(node, list) and node:
            path.append(len(node) - 1)
            node = node[-1]
        else:
            return path
