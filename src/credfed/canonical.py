"""Canonical JSON: one byte string per value, so that signed payloads are
reproducible and two nodes that build the same record sign the same bytes."""

from __future__ import annotations

import json

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


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r} in JSON object")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")
