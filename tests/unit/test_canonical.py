from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credfed.canonical import canonical_json, load_json_object


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
