"""Descriptor wire form, fingerprints and key validity."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fedkit import HOUR, K1, K2, OUTSIDER, PEM, T0, descriptor, entry, signed
from hypothesis import given, settings
from hypothesis import strategies as st

from credfed.crypto.envelope import DESCRIPTOR_TYPE, verify_envelope
from credfed.crypto.keys import SigningKey
from credfed.errors import ValidationError
from credfed.federation.descriptor import (
    Descriptor,
    KeyEntry,
    decode_descriptor,
    encode_descriptor,
    fingerprint,
    fingerprints_match,
    keys_at,
)

D = descriptor(entry(K1, T0, T0 + HOUR), entry(K2, T0 + HOUR))
PAYLOAD = encode_descriptor(D)


def test_round_trip_and_canonical_text() -> None:
    assert decode_descriptor(PAYLOAD) == D
    obj = json.loads(PAYLOAD)
    assert obj["issued_at"] == 1735689600000  # unix milliseconds
    assert obj["keys"][0]["public_key"] == K1.public_raw.hex()
    assert obj["keys"][1]["not_after"] is None
    assert list(obj) == sorted(obj)


def test_times_are_truncated_to_milliseconds_and_read_back_as_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    d = descriptor(issued_at=datetime(2025, 1, 1, 2, 0, 0, 123456, tzinfo=plus_two))
    back = decode_descriptor(encode_descriptor(d))
    assert back.issued_at == datetime(2025, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert back.issued_at.tzinfo is UTC


def test_sign_descriptor_uses_the_descriptor_type() -> None:
    env = signed(K1, D)
    assert env.payload_type == DESCRIPTOR_TYPE
    assert env.payload == PAYLOAD
    assert verify_envelope(env, {K1.key_id: K1.verifying_key()}, DESCRIPTOR_TYPE) == PAYLOAD


def _mutated(change: Callable[[dict[str, Any]], None]) -> bytes:
    obj = copy.deepcopy(json.loads(PAYLOAD))
    change(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = obj
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        target[int(last) if last.isdigit() else last] = value

    return change


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        del obj[name]

    return change


MALFORMED: dict[str, bytes] = {
    "not json": b"\x00\xff",
    "json array": b"[]",
    "duplicate field": PAYLOAD[:-1] + b',"version":2}',
    "extra field": _mutated(_set("extra", 1)),
    "missing field": _mutated(_drop("tls_ca_cert")),
    "extra key field": _mutated(_set("keys.0.comment", "x")),
    "lower-case country": _mutated(_set("country", "de")),
    "three-letter country": _mutated(_set("country", "DEU")),
    "empty node id": _mutated(_set("node_id", "")),
    "node id with a slash": _mutated(_set("node_id", "de/1")),
    "endpoint without port": _mutated(_set("endpoints", ["de.example.org"])),
    "port 0": _mutated(_set("endpoints", ["de.example.org:0"])),
    "port 65536": _mutated(_set("endpoints", ["de.example.org:65536"])),
    "port with leading zero": _mutated(_set("endpoints", ["de.example.org:0443"])),
    "endpoint with a path": _mutated(_set("endpoints", ["de.example.org:443/x"])),
    "duplicate endpoint": _mutated(_set("endpoints", ["a.b:1", "a.b:1"])),
    "17 endpoints": _mutated(_set("endpoints", [f"h{i}.b:1" for i in range(17)])),
    "endpoints not a list": _mutated(_set("endpoints", "a.b:1")),
    "endpoint not a string": _mutated(_set("endpoints", [443])),
    "no keys": _mutated(_set("keys", [])),
    "17 keys": _mutated(_set("keys", [json.loads(PAYLOAD)["keys"][0]] * 17)),
    "duplicate key": _mutated(_set("keys", [json.loads(PAYLOAD)["keys"][0]] * 2)),
    "key id of another key": _mutated(_set("keys.0.key_id", OUTSIDER.key_id)),
    "upper-case key id": _mutated(_set("keys.0.key_id", K1.key_id.upper())),
    "short public key": _mutated(_set("keys.0.public_key", "ab" * 31)),
    "expires before valid": _mutated(_set("keys.0.not_after", 1735689599999)),
    "not_before a string": _mutated(_set("keys.0.not_before", "2025-01-01")),
    "key not an object": _mutated(_set("keys", ["k"])),
    "version 0": _mutated(_set("version", 0)),
    "version true": _mutated(_set("version", True)),
    "version float": _mutated(_set("version", 1.5)),
    "version 2**63": _mutated(_set("version", 2**63)),
    "negative time": _mutated(_set("issued_at", -1)),
    "time past year 9999": _mutated(_set("issued_at", 10**15)),
    "not a PEM": _mutated(_set("tls_ca_cert", "hello")),
    "PEM of a key": _mutated(_set("tls_ca_cert", PEM.replace("CERTIFICATE", "PRIVATE KEY"))),
    "whitespace": PAYLOAD.replace(b",", b", ", 1),
    "fields out of order": json.dumps(json.loads(PAYLOAD)).encode(),
    "escaped letter": PAYLOAD.replace(b'"DE"', b'"\\u0044E"', 1),
    "too large": b" " * (64 * 1024 + 1),
    "deep nesting": b"[" * 60_000,
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_descriptors_are_refused(payload: bytes) -> None:
    with pytest.raises(ValidationError) as info:
        decode_descriptor(payload)
    assert info.value.field == "descriptor"


@pytest.mark.parametrize(
    "endpoint",
    ["de.example.org:7443", "10.0.0.1:1", "[::1]:65535", "[2001:db8::7]:443", "localhost:50051"],
)
def test_endpoint_forms_accepted(endpoint: str) -> None:
    d = descriptor(endpoints=(endpoint,))
    assert decode_descriptor(encode_descriptor(d)) == d


def test_no_endpoints_is_allowed_for_a_relay_only_node() -> None:
    d = descriptor(endpoints=())
    assert decode_descriptor(encode_descriptor(d)) == d


def test_encode_refuses_what_decode_would() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        encode_descriptor(descriptor(issued_at=datetime(2025, 1, 1)))
    with pytest.raises(ValidationError, match="version"):
        encode_descriptor(descriptor(version=0))
    forged = KeyEntry(K2.key_id, K1.verifying_key(), T0, None)
    with pytest.raises(ValidationError, match="key id"):
        encode_descriptor(descriptor(forged))


# -- property tests -------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_decode_or_raise_validation_error(data: bytes) -> None:
    try:
        d = decode_descriptor(data)
    except ValidationError:
        return
    assert encode_descriptor(d) == data


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_PATHS = [
    "country",
    "node_id",
    "endpoints",
    "keys",
    "tls_ca_cert",
    "version",
    "issued_at",
    "keys.0",
    "keys.0.key_id",
    "keys.0.public_key",
    "keys.0.not_before",
    "keys.1.not_after",
    "endpoints.0",
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_PATHS), _JSON)
def test_mutated_fields_decode_or_raise_validation_error(path: str, value: object) -> None:
    try:
        d = decode_descriptor(_mutated(_set(path, value)))
    except ValidationError:
        return
    assert isinstance(d, Descriptor)


_MILLIS = st.integers(min_value=0, max_value=253402300799999)


@st.composite
def descriptors(draw: st.DrawFn) -> Descriptor:
    seeds = draw(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=4, unique=True))
    keys = []
    for seed in seeds:
        key = SigningKey.from_seed(seed)
        start = draw(_MILLIS)
        end = draw(st.none() | st.integers(min_value=start, max_value=253402300799999))
        keys.append(entry(key, _at(start), None if end is None else _at(end)))
    hosts = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True)
    ports = st.integers(min_value=1, max_value=65535)
    endpoints = draw(
        st.lists(st.builds("{}:{}".format, hosts, ports), max_size=16, unique=True).map(tuple)
    )
    return descriptor(
        *keys,
        country=draw(st.from_regex(r"[A-Z]{2}", fullmatch=True)),
        node_id=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)),
        version=draw(st.integers(min_value=1, max_value=2**63 - 1)),
        issued_at=_at(draw(_MILLIS)),
        endpoints=endpoints,
    )


def _at(millis: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)


@settings(max_examples=150, deadline=None)
@given(descriptors())
def test_round_trip(d: Descriptor) -> None:
    payload = encode_descriptor(d)
    assert decode_descriptor(payload) == d
    assert encode_descriptor(decode_descriptor(payload)) == payload


# -- fingerprints -----------------------------------------------------------------


def test_fingerprint_is_sha256_of_the_payload() -> None:
    env = signed(K1, D)
    assert fingerprint(env) == hashlib.sha256(PAYLOAD).hexdigest()
    # The signature is not part of it: re-signing does not change what was compared.
    assert fingerprint(signed(K2, D)) == fingerprint(env)


def _colons(hex_text: str) -> str:
    return ":".join(hex_text[i : i + 2] for i in range(0, len(hex_text), 2))


FP = hashlib.sha256(PAYLOAD).hexdigest()
TYPED_OK = {
    "exact": FP,
    "upper case": FP.upper(),
    "colons": _colons(FP),
    "upper case with colons": _colons(FP.upper()),
    "groups of four": " ".join(FP[i : i + 4] for i in range(0, 64, 4)),
    "surrounding whitespace": f"  {FP}\n",
}
TYPED_BAD = {
    "empty": "",
    "one digit off": FP[:-1] + ("0" if FP[-1] != "0" else "1"),
    "truncated": FP[:63],
    "too long": FP + "0",
    "sha256: prefix": "sha256:" + FP,
    "non-hex": "g" * 64,
    "non-ASCII digits": "\uff10" * 64,
    "other payload": hashlib.sha256(PAYLOAD + b" ").hexdigest(),
}


@pytest.mark.parametrize("typed", TYPED_OK.values(), ids=TYPED_OK.keys())
def test_fingerprint_match_tolerates_formatting(typed: str) -> None:
    assert fingerprints_match(typed, signed(K1, D))


@pytest.mark.parametrize("typed", TYPED_BAD.values(), ids=TYPED_BAD.keys())
def test_fingerprint_mismatch(typed: str) -> None:
    assert not fingerprints_match(typed, signed(K1, D))


# -- key validity -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (T0 - timedelta(milliseconds=1), set()),
        (T0, {K1.key_id}),
        (T0 + HOUR - timedelta(milliseconds=1), {K1.key_id}),
        (T0 + HOUR, {K1.key_id, K2.key_id}),  # both ends inclusive: a handover instant
        (T0 + HOUR + timedelta(milliseconds=1), {K2.key_id}),
        (T0 + 1000 * HOUR, {K2.key_id}),
    ],
)
def test_keys_at(moment: datetime, expected: set[str]) -> None:
    assert set(keys_at(D, moment)) == expected
