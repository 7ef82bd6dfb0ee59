from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credfed.canonical import MAX_MILLIS, Strict, canonical_json, load_json_object
from credfed.errors import ValidationError


def test_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": [1, 2], "é": "ü"}) == '{"a":[1,2],"b":1,"é":"ü"}'.encode()


def test_nested_keys_are_sorted() -> None:
    assert canonical_json({"z": {"y": 1, "x": 2}}) == b'{"z":{"x":2,"y":1}}'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_json({"x": value})


def test_load_json_object() -> None:
    assert load_json_object(b'{"a": [1, "x"], "b": null}') == {"a": [1, "x"], "b": None}


@pytest.mark.parametrize(
    "data",
    [
        b"[1, 2]",
        b'"text"',
        b"3",
        b"null",
        b"",
        b"{",
        b"\xff\xfe",
        b'{"a": 1, "a": 2}',
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b"[" * 100_000,
    ],
)
def test_load_json_object_rejects(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - every rejection is a ValueError
        load_json_object(data)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), _json, max_size=6))
def test_round_trip_is_stable(obj: dict[str, object]) -> None:
    encoded = canonical_json(obj)
    assert load_json_object(encoded) == json.loads(encoded)
    assert canonical_json(load_json_object(encoded)) == encoded


# -- the strict reader --------------------------------------------------------

R = Strict("doc")
_Read = Callable[[object], object]

STRICT_ACCEPTS: dict[str, tuple[_Read, object, object]] = {
    "object": (lambda v: R.obj(v, "x"), {"a": 1}, {"a": 1}),
    "empty object": (lambda v: R.obj(v, "x"), {}, {}),
    "string": (lambda v: R.string(v, "x"), "é", "é"),
    "empty string": (lambda v: R.string(v, "x"), "", ""),
    "integer": (lambda v: R.integer(v, "x"), -7, -7),
    "big integer": (lambda v: R.integer(v, "x"), 2**70, 2**70),
    "boolean": (lambda v: R.boolean(v, "x"), False, False),
    "list": (lambda v: R.array(v, "xs", 2), [1, "a"], [1, "a"]),
    "empty list": (lambda v: R.array(v, "xs", 0), [], []),
    "list item": (lambda v: R.string_item(v, "xs"), "a", "a"),
    "date": (lambda v: R.day(v, "x"), "2025-02-28", date(2025, 2, 28)),
    "moment 0": (lambda v: R.moment(v, "x"), 0, datetime(1970, 1, 1, tzinfo=UTC)),
    "moment ms": (
        lambda v: R.moment(v, "x"),
        1735689600123,
        datetime(2025, 1, 1, 0, 0, 0, 123000, tzinfo=UTC),
    ),
    "last moment": (
        lambda v: R.moment(v, "x"),
        MAX_MILLIS,
        datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    ),
    "optional null": (lambda v: R.optional(v, "x", R.integer), None, None),
    "optional value": (lambda v: R.optional(v, "x", R.integer), 3, 3),
}


@pytest.mark.parametrize(
    ("read", "value", "expected"), STRICT_ACCEPTS.values(), ids=STRICT_ACCEPTS.keys()
)
def test_strict_reader_accepts(read: _Read, value: object, expected: object) -> None:
    got = read(value)
    assert got == expected
    assert type(got) is type(expected)


STRICT_REFUSES: dict[str, tuple[_Read, object, str]] = {
    "object: list": (lambda v: R.obj(v, "x"), [], "x must be an object"),
    "object: null": (lambda v: R.obj(v, "x"), None, "x must be an object"),
    "string: int": (lambda v: R.string(v, "x"), 1, "x must be a string"),
    "string: null": (lambda v: R.string(v, "x"), None, "x must be a string"),
    "integer: bool": (lambda v: R.integer(v, "x"), True, "x must be an integer"),
    "integer: float": (lambda v: R.integer(v, "x"), 1.0, "x must be an integer"),
    "integer: string": (lambda v: R.integer(v, "x"), "1", "x must be an integer"),
    "boolean: int": (lambda v: R.boolean(v, "x"), 1, "x must be a boolean"),
    "boolean: string": (lambda v: R.boolean(v, "x"), "true", "x must be a boolean"),
    "list: object": (lambda v: R.array(v, "xs", 2), {}, "xs must be a list"),
    "list: string": (lambda v: R.array(v, "xs", 2), "ab", "xs must be a list"),
    "list: over cap": (lambda v: R.array(v, "xs", 2), [1, 2, 3], "more than 2 xs"),
    "list item: int": (lambda v: R.string_item(v, "xs"), 1, "xs[] must hold strings"),
    "date: int": (lambda v: R.day(v, "x"), 20250101, "x must be a string"),
    "date: no date": (lambda v: R.day(v, "x"), "2025-02-30", "x must be a date YYYY-MM-DD"),
    "date: a time": (lambda v: R.day(v, "x"), "2025-02-28T00:00", "x must be a date YYYY-MM-DD"),
    "moment: bool": (lambda v: R.moment(v, "x"), False, "x must be an integer"),
    "moment: negative": (lambda v: R.moment(v, "x"), -1, "x -1 is out of range"),
    "moment: too late": (
        lambda v: R.moment(v, "x"),
        MAX_MILLIS + 1,
        f"x {MAX_MILLIS + 1} is out of range",
    ),
    "optional: wrong type": (
        lambda v: R.optional(v, "x", R.integer),
        "3",
        "x must be an integer",
    ),
    "fail": (lambda v: R.fail(str(v)), "anything", "anything"),
}


@pytest.mark.parametrize(
    ("read", "value", "message"), STRICT_REFUSES.values(), ids=STRICT_REFUSES.keys()
)
def test_strict_reader_refuses(read: _Read, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        read(value)
    assert info.value.field == "doc"
    assert info.value.message == message
    assert str(info.value) == f"doc: {message}"


FIELDS = frozenset({"a", "b"})


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"a": 1, "b": 2}, None),
        ({"a": 1}, "the object lacks b"),
        ({}, "the object lacks a, b"),
        ({"a": 1, "b": 2, "z": 3, "c": 4}, "the object has unknown fields ['c', 'z']"),
        # A missing field is reported before an unknown one.
        ({"a": 1, "z": 3}, "the object lacks b"),
    ],
)
def test_strict_exact_fields(obj: dict[str, object], message: str | None) -> None:
    if message is None:
        R.exact("the object", obj, FIELDS)
        return
    with pytest.raises(ValidationError) as info:
        R.exact("the object", obj, FIELDS)
    assert (info.value.field, info.value.message) == ("doc", message)


def test_strict_load_returns_the_object() -> None:
    assert R.load(b'{"a": [1]}', 10) == {"a": [1]}


_LONG_KEY = "k" * 60


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": 1}' + b" " * 193, "201 bytes exceeds the 200-byte limit"),
        (b"[1]", "not a JSON object: expected a JSON object, got list"),
        (b'{"a":1,"a":2}', "not a JSON object: duplicate key 'a' in JSON object"),
        (
            b"\xff",
            "not a JSON object: 'utf-8' codec can't decode byte 0xff in position 0: invalid"
            " start byte",
        ),
        # The parser's own words are cut at 80 characters.
        (
            f'{{"{_LONG_KEY}":1,"{_LONG_KEY}":2}}'.encode(),
            f"not a JSON object: duplicate key '{_LONG_KEY}' in ",  # 80 characters of it
        ),
    ],
)
def test_strict_load_refuses(data: bytes, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        R.load(data, 200)
    assert (info.value.field, info.value.message) == ("doc", message)
