"""Request bodies as JSON: strict (no NaN or Infinity literals), and a key repeated in an object
refused with its place.

`{"CRIM": 1, "CRIM": 2}` is valid JSON to most parsers, which keep the last value silently; the
client meant one of the two. jiter (pydantic's own parser) refuses duplicates while it parses. Its
error gives the key and a line and column, not the object that holds it, so on that error path
only the standard library's parser reads the body again to find where the key is. Depth is bounded
too: jiter stops at 200 nested levels with a ValueError, never a RecursionError.
"""

from __future__ import annotations

import json
import math
from typing import Any

import jiter


class DuplicateKey(ValueError):
    """A key appears twice in one JSON object; `path` leads to that object from the body's root."""

    def __init__(self, key: str, path: list[str | int]) -> None:
        super().__init__(f'duplicate key "{key}"')
        self.key, self.path = key, path

    def error(self, prefix: tuple[str | int, ...] = ("body",)) -> dict[str, Any]:
        """The 422 detail item, in FastAPI's validation-error shape."""
        return {
            "loc": [*prefix, *self.path, self.key],
            "msg": f"{self}: each key may appear once in an object",
            "type": "duplicate_key",
        }


class NonFinite(ValueError):
    """A NaN or Infinity literal, which JSON does not have; `path` leads to it from the root."""

    def __init__(self, path: list[str | int]) -> None:
        super().__init__("NaN and Infinity are not JSON numbers: send a finite number or null")
        self.path = path

    def error(self, prefix: tuple[str | int, ...] = ("body",)) -> dict[str, Any]:
        return {"loc": [*prefix, *self.path], "msg": str(self), "type": "finite_number"}


def parse(body: bytes) -> Any:
    """Parse strict JSON; raise DuplicateKey for a repeated key, NonFinite for a NaN or Infinity
    literal, ValueError for anything else that is not JSON (too deeply nested included)."""
    try:
        return jiter.from_json(body, allow_inf_nan=False, catch_duplicate_keys=True)
    except ValueError as error:
        if str(error).startswith("Detected duplicate key"):
            raise _locate_duplicate(body) from None
        try:  # JSON but for NaN or Infinity: say where, as the schema names a bad value
            lenient = jiter.from_json(body, allow_inf_nan=True, catch_duplicate_keys=True)
        except ValueError:
            raise error from None
        raise NonFinite(_first_non_finite(lenient, []) or []) from None


class _Repeated(dict[str, Any]):
    """An object in which `key` appeared more than once."""

    def __init__(self, pairs: list[tuple[str, Any]], key: str) -> None:
        super().__init__(pairs)
        self.key = key


def _unique_or_marked(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return _Repeated(pairs, key)
        seen.add(key)
    return dict(pairs)


def _locate_duplicate(body: bytes) -> DuplicateKey:
    """The first repeated key in document order, with the path to the object that repeats it."""
    try:
        tree = json.loads(body, object_pairs_hook=_unique_or_marked)
    except (ValueError, RecursionError):  # deeper than the standard parser goes
        return DuplicateKey("?", [])
    found = _first_repeated(tree, [])
    if found is None:  # the two parsers disagree; the key is unknown, the refusal still right
        return DuplicateKey("?", [])
    return found


def _first_non_finite(node: Any, path: list[str | int]) -> list[str | int] | None:
    if isinstance(node, float) and not math.isfinite(node):
        return path
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in children:
        found = _first_non_finite(value, [*path, key])
        if found is not None:
            return found
    return None


def _first_repeated(node: Any, path: list[str | int]) -> DuplicateKey | None:
    if isinstance(node, dict):
        # a repeat inside an earlier value comes before this object's own repeated key
        for key, value in node.items():
            found = _first_repeated(value, [*path, key])
            if found is not None:
                return found
        if isinstance(node, _Repeated):
            return DuplicateKey(node.key, path)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found = _first_repeated(value, [*path, index])
            if found is not None:
                return found
    return None
