from __future__ import annotations

import dataclasses

import pytest

from credfed.crypto.envelope import (
    CHECKPOINT_TYPE,
    CREDENTIAL_TYPE,
    DESCRIPTOR_TYPE,
    MAX_PAYLOAD,
    pae,
    sign_envelope,
    verify_envelope,
)
from credfed.crypto.keys import SigningKey, VerifyingKey
from credfed.errors import SignatureError, ValidationError
from credfed.models import Envelope

KEY = SigningKey.from_seed(bytes(range(32)))
OTHER = SigningKey.from_seed(bytes(range(1, 33)))
KEYS: dict[str, VerifyingKey] = {KEY.key_id: KEY.verifying_key()}
PAYLOAD = b'{"credential_id":"DE-7K3F-Q9XM-2PLA-8"}'


def test_pae_known_vector() -> None:
    # secure-systems-lab/dsse, protocol.md, "Test Vectors".
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("é", b"") == b"DSSEv1 2 \xc3\xa9 0 "


def test_pae_is_injective_where_concatenation_is_not() -> None:
    assert pae("a b", b"c") != pae("a", b"b c")


def test_payload_types_are_distinct() -> None:
    assert len({CREDENTIAL_TYPE, CHECKPOINT_TYPE, DESCRIPTOR_TYPE}) == 3


def test_round_trip_returns_exact_bytes() -> None:
    env = sign_envelope(KEY, CREDENTIAL_TYPE, PAYLOAD)
    assert env.key_id == KEY.key_id
    assert env.payload_type == CREDENTIAL_TYPE
    assert verify_envelope(env, KEYS, CREDENTIAL_TYPE) == PAYLOAD
    KEY.verifying_key().verify(env.signature, pae(CREDENTIAL_TYPE, PAYLOAD))


def test_wrong_expected_type() -> None:
    env = sign_envelope(KEY, CREDENTIAL_TYPE, PAYLOAD)
    with pytest.raises(SignatureError, match="not the expected"):
        verify_envelope(env, KEYS, CHECKPOINT_TYPE)


def test_payload_type_changed_after_signing() -> None:
    env = sign_envelope(KEY, CREDENTIAL_TYPE, PAYLOAD)
    relabelled = dataclasses.replace(env, payload_type=DESCRIPTOR_TYPE)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope(relabelled, KEYS, DESCRIPTOR_TYPE)


def test_unknown_key_id() -> None:
    env = sign_envelope(OTHER, CREDENTIAL_TYPE, PAYLOAD)
    with pytest.raises(SignatureError, match="unknown key"):
        verify_envelope(env, KEYS, CREDENTIAL_TYPE)


def test_key_id_relabelled_to_a_trusted_key() -> None:
    env = sign_envelope(OTHER, CREDENTIAL_TYPE, PAYLOAD)
    forged = dataclasses.replace(env, key_id=KEY.key_id)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope(forged, KEYS, CREDENTIAL_TYPE)


def test_signature_moved_onto_another_payload() -> None:
    a = sign_envelope(KEY, CREDENTIAL_TYPE, PAYLOAD)
    b = sign_envelope(KEY, CREDENTIAL_TYPE, PAYLOAD + b" ")
    moved = Envelope(b.payload, b.payload_type, b.key_id, a.signature)
    with pytest.raises(SignatureError):
        verify_envelope(moved, KEYS, CREDENTIAL_TYPE)


def test_bit_flips_are_rejected() -> None:
    env = sign_envelope(KEY, CREDENTIAL_TYPE, PAYLOAD)
    tampered: list[Envelope] = []
    for i in range(len(PAYLOAD)):
        for bit in (0x01, 0x80):
            tampered.append(dataclasses.replace(env, payload=_flip(env.payload, i, bit)))
    for i in range(len(env.signature)):
        for bit in (0x01, 0x80):
            tampered.append(dataclasses.replace(env, signature=_flip(env.signature, i, bit)))
    for envelope in tampered:
        with pytest.raises(SignatureError):
            verify_envelope(envelope, KEYS, CREDENTIAL_TYPE)


def _flip(data: bytes, index: int, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[index] ^= bit
    return bytes(flipped)


def test_truncated_or_extended_signature() -> None:
    env = sign_envelope(KEY, CREDENTIAL_TYPE, PAYLOAD)
    for sig in (env.signature[:-1], env.signature + b"\x00", b""):
        with pytest.raises(SignatureError):
            verify_envelope(dataclasses.replace(env, signature=sig), KEYS, CREDENTIAL_TYPE)


def test_payload_size_cap() -> None:
    assert (
        verify_envelope(
            sign_envelope(KEY, CREDENTIAL_TYPE, b"x" * MAX_PAYLOAD), KEYS, CREDENTIAL_TYPE
        )
        == b"x" * MAX_PAYLOAD
    )
    with pytest.raises(ValidationError, match="limit"):
        sign_envelope(KEY, CREDENTIAL_TYPE, b"x" * (MAX_PAYLOAD + 1))
    big = b"x" * (MAX_PAYLOAD + 1)
    oversized = Envelope(big, CREDENTIAL_TYPE, KEY.key_id, KEY.sign(pae(CREDENTIAL_TYPE, big)))
    with pytest.raises(SignatureError, match="limit"):
        verify_envelope(oversized, KEYS, CREDENTIAL_TYPE)
