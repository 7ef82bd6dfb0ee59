"""Canonical JSON: one byte string per value, so that signed payloads are
reproducible and two nodes that build the same record sign the same bytes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final, NoReturn, TypeVar

from credfed.errors import ValidationError

_T = TypeVar("_T")

#: Signed documents carry times as Unix milliseconds, at most the last
#: millisecond of year 9999 (the end of ``datetime``).
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS: Final = timedelta(milliseconds=1)
MAX_MILLIS: Final = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) // ONE_MS

# One encoder for the process: json.dumps with non-default options builds a
# new encoder on every call, which shows in bulk-import profiles.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(obj: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (not \\u escapes), no NaN/Infinity."""
    return _ENCODER.encode(obj).encode("utf-8")


def load_json_object(data: bytes) -> dict[str, object]:
    """Parse ``data`` as one JSON object; ValueError on anything else.

    Stricter than ``json.loads`` where leniency could hide tampering: a
    duplicate key (two readers may pick different values) and the non-JSON
    constants NaN/Infinity are rejected.
    """
    try:
        value = json.loads(
            data,
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
        )
    except RecursionError:
        # Deep nesting exhausts the parser's stack; report it as bad input.
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def field_problem(where: str, obj: dict[str, object], fields: frozenset[str]) -> str | None:
    """What is wrong with ``obj``'s set of keys, if it is not exactly
    ``fields``: the check every strict decoder of a signed document makes
    first (a missing field is not defaulted, an unknown one not ignored)."""
    missing = sorted(fields - obj.keys())
    if missing:
        return f"{where} lacks {', '.join(missing)}"
    extra = sorted(k[:40] for k in obj.keys() - fields)
    if extra:
        return f"{where} has unknown fields {extra}"
    return None


@dataclass(frozen=True, slots=True)
class Strict:
    """The reader behind every strict decoder of a signed JSON document.

    Every refusal is ``ValidationError(field, message)``: ``field`` names the
    document (``"rule"``, ``"descriptor"``, ...) and the message the part of
    it at fault. JSON types are exact: a bool is not an integer, an integer
    not a string. Method names avoid the builtins' so that the annotations
    below still mean the builtin types.
    """

    field: str

    def fail(self, message: str) -> NoReturn:
        raise ValidationError(self.field, message)

    def load(self, data: bytes, cap: int) -> dict[str, object]:
        """``data`` as one JSON object (see :func:`load_json_object`), at most ``cap`` bytes."""
        if len(data) > cap:
            self.fail(f"{len(data)} bytes exceeds the {cap}-byte limit")
        try:
            return load_json_object(bytes(data))
        except ValueError as exc:  # also UnicodeDecodeError and over-long integers
            self.fail(f"not a JSON object: {str(exc)[:80]}")

    def exact(self, where: str, obj: dict[str, object], fields: frozenset[str]) -> None:
        problem = field_problem(where, obj, fields)
        if problem is not None:
            self.fail(problem)

    def obj(self, value: object, name: str) -> dict[str, object]:
        if not isinstance(value, dict):
            self.fail(f"{name} must be an object")
        return value

    def string(self, value: object, name: str) -> str:
        if not isinstance(value, str):
            self.fail(f"{name} must be a string")
        return value

    def integer(self, value: object, name: str) -> int:
        # bool is an int in Python, not in JSON.
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"{name} must be an integer")
        return value

    def boolean(self, value: object, name: str) -> bool:
        if not isinstance(value, bool):
            self.fail(f"{name} must be a boolean")
        return value

    def array(self, value: object, name: str, cap: int) -> list[object]:
        """A list of at most ``cap`` items (``name`` is plural: "keys")."""
        if not isinstance(value, list):
            self.fail(f"{name} must be a list")
        if len(value) > cap:
            self.fail(f"more than {cap} {name}")
        return value

    def string_item(self, value: object, name: str) -> str:
        """An item of the list ``name``."""
        if not isinstance(value, str):
            self.fail(f"{name}[] must hold strings")
        return value

    def day(self, value: object, name: str) -> date:
        """A date spelled ``YYYY-MM-DD``."""
        text = self.string(value, name)
        try:
            return date.fromisoformat(text)
        except ValueError:
            self.fail(f"{name} must be a date YYYY-MM-DD")

    def moment(self, value: object, name: str) -> datetime:
        """A UTC time given as Unix milliseconds."""
        millis = self.integer(value, name)
        if not 0 <= millis <= MAX_MILLIS:
            self.fail(f"{name} {millis} is out of range")
        return EPOCH + millis * ONE_MS

    def optional(self, value: object, name: str, read: Callable[[object, str], _T]) -> _T | None:
        """``None`` for JSON ``null``, else ``read(value, name)``."""
        return None if value is None else read(value, name)


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r} in JSON object")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")
