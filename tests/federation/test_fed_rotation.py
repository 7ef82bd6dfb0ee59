"""Pinning and in-band key rotation of partner descriptors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple

import pytest
from fedkit import HOUR, K1, K2, K3, OUTSIDER, T0, MemLog, descriptor, entry, signed

from credfed.crypto.envelope import CHECKPOINT_TYPE, CREDENTIAL_TYPE, sign_envelope
from credfed.crypto.keys import SigningKey
from credfed.errors import (
    CredfedError,
    DescriptorMismatchError,
    DescriptorRollbackError,
    FingerprintMismatchError,
    PreconditionError,
    UntrustedSignerError,
    ValidationError,
)
from credfed.federation.descriptor import (
    Descriptor,
    accept_update,
    fingerprint,
    keys_at,
    pin_descriptor,
    rotate,
)
from credfed.federation.evidence import verify_checkpoint_at
from credfed.models import Envelope

V1 = descriptor(entry(K1))
ROTATED_AT = T0 + 10 * HOUR
NOW = ROTATED_AT + HOUR  # when the partner fetches the update
V2, V2_ENV = rotate(V1, K1, K2, ROTATED_AT)


# -- pinning ----------------------------------------------------------------------


def test_pin_accepts_the_confirmed_descriptor() -> None:
    env = signed(K1, V1)
    assert pin_descriptor(env, fingerprint(env).upper()) == V1


PIN_REFUSED: dict[str, tuple[Callable[[], tuple[Envelope, str]], type[CredfedError]]] = {
    "fingerprint of another descriptor": (
        lambda: (signed(K1, V1), fingerprint(signed(K1, dataclasses.replace(V1, version=2)))),
        FingerprintMismatchError,
    ),
    "garbled fingerprint": (
        lambda: (signed(K1, V1), "not a fingerprint"),
        FingerprintMismatchError,
    ),
    "signed by a key it does not list": (
        lambda: (e := signed(OUTSIDER, V1), fingerprint(e)),
        UntrustedSignerError,
    ),
    "signed by its key outside the key's validity": (
        lambda: (e := signed(K1, descriptor(entry(K1, T0 + HOUR))), fingerprint(e)),
        UntrustedSignerError,
    ),
    "bad signature": (
        lambda: (e := dataclasses.replace(signed(K1, V1), signature=bytes(64)), fingerprint(e)),
        UntrustedSignerError,
    ),
    "not a descriptor": (
        lambda: (e := sign_envelope(K1, CREDENTIAL_TYPE, signed(K1, V1).payload), fingerprint(e)),
        UntrustedSignerError,
    ),
    "malformed payload with its fingerprint": (
        lambda: (e := sign_envelope(K1, CHECKPOINT_TYPE, b"{}"), fingerprint(e)),
        UntrustedSignerError,
    ),
}


@pytest.mark.parametrize("case", PIN_REFUSED.values(), ids=PIN_REFUSED.keys())
def test_pin_refuses(case: tuple[Callable[[], tuple[Envelope, str]], type[CredfedError]]) -> None:
    make, error = case
    env, typed = make()
    with pytest.raises(error):
        pin_descriptor(env, typed)


def test_pin_checks_the_fingerprint_before_parsing() -> None:
    env = Envelope(b"\xff garbage", "anything", "k", b"")
    with pytest.raises(FingerprintMismatchError):
        pin_descriptor(env, "00" * 32)
    with pytest.raises(ValidationError):
        pin_descriptor(
            dataclasses.replace(env, payload_type=signed(K1, V1).payload_type), fingerprint(env)
        )


# -- rotate -------------------------------------------------------------------------


def test_rotate_builds_the_next_descriptor_signed_by_the_old_key() -> None:
    assert V2.version == 2
    assert V2_ENV.key_id == K1.key_id
    assert V2.issued_at == ROTATED_AT
    old, new = V2.keys
    assert (old.key_id, old.not_before, old.not_after) == (K1.key_id, T0, ROTATED_AT)
    assert (new.key_id, new.not_before, new.not_after) == (K2.key_id, ROTATED_AT, None)
    assert (V2.country, V2.node_id, V2.endpoints) == (V1.country, V1.node_id, V1.endpoints)


@pytest.mark.parametrize(
    ("current", "old_key", "new_key"),
    [
        pytest.param(V1, OUTSIDER, K2, id="old key not listed"),
        pytest.param(V1, K1, K1, id="new key already listed"),
        pytest.param(V2, K1, K3, id="old key already rotated out"),
        pytest.param(descriptor(entry(K1, NOW + HOUR)), K1, K2, id="old key not yet valid"),
    ],
)
def test_rotate_preconditions(
    current: Descriptor, old_key: SigningKey, new_key: SigningKey
) -> None:
    with pytest.raises(PreconditionError):
        rotate(current, old_key, new_key, NOW)


# -- accept_update: the rotation rules, one row each -----------------------------------


class Update(NamedTuple):
    current: Descriptor
    envelope: Envelope
    now: datetime
    outcome: Descriptor | type[CredfedError]


def _next(current: Descriptor, **changes: object) -> Descriptor:
    """``current`` with a higher version, then ``changes`` applied."""
    fields: dict[str, object] = {"version": current.version + 1, **changes}
    return dataclasses.replace(current, **fields)  # type: ignore[arg-type]


V5 = descriptor(entry(K1), version=5)
EXPIRING = descriptor(entry(K1, T0, NOW - HOUR))
FUTURE = descriptor(entry(K1, NOW + HOUR))

UPDATES: dict[str, Update] = {
    "rotation signed by the trusted old key": Update(V1, V2_ENV, NOW, V2),
    "rotation fetched long after the handover": Update(V1, V2_ENV, NOW + 1000 * HOUR, V2),
    "same descriptor again is no change": Update(V2, V2_ENV, NOW, V2),
    "same bytes re-signed by an outsider are still no change": Update(
        V2, signed(OUTSIDER, V2), NOW, V2
    ),
    "plain update (new endpoint)": Update(
        V1,
        signed(K1, _next(V1, endpoints=("de2.example.org:7443",))),
        NOW,
        _next(V1, endpoints=("de2.example.org:7443",)),
    ),
    "signed by an untrusted key": Update(
        V1, signed(OUTSIDER, _next(V1)), NOW, UntrustedSignerError
    ),
    "signed by the new key the partner does not know yet": Update(
        V1, signed(K2, V2), NOW, UntrustedSignerError
    ),
    "lower version": Update(V5, signed(K1, _next(V5, version=4)), NOW, DescriptorRollbackError),
    "equal version, other content": Update(
        V5,
        signed(K1, _next(V5, version=5, endpoints=("x.example:1",))),
        NOW,
        DescriptorRollbackError,
    ),
    "changed country": Update(
        V1, signed(K1, _next(V1, country="FR")), NOW, DescriptorMismatchError
    ),
    "changed node id": Update(
        V1, signed(K1, _next(V1, node_id="de-2")), NOW, DescriptorMismatchError
    ),
    "signer key expired": Update(EXPIRING, signed(K1, _next(EXPIRING)), NOW, UntrustedSignerError),
    "signer key not yet valid": Update(
        FUTURE, signed(K1, _next(FUTURE)), NOW, UntrustedSignerError
    ),
    "old key signs again after its handover": Update(
        V2, signed(K1, _next(V2)), NOW, UntrustedSignerError
    ),
    "tampered payload": Update(
        V1, dataclasses.replace(V2_ENV, payload=V2_ENV.payload + b" "), NOW, UntrustedSignerError
    ),
    "wrong payload type": Update(
        V1, sign_envelope(K1, CREDENTIAL_TYPE, V2_ENV.payload), NOW, UntrustedSignerError
    ),
    "validly signed garbage": Update(
        V1, sign_envelope(K1, V2_ENV.payload_type, b'{"version":2}'), NOW, ValidationError
    ),
}


@pytest.mark.parametrize("case", UPDATES.values(), ids=UPDATES.keys())
def test_accept_update(case: Update) -> None:
    if isinstance(case.outcome, Descriptor):
        assert accept_update(case.current, case.envelope, case.now) == case.outcome
    else:
        with pytest.raises(case.outcome):
            accept_update(case.current, case.envelope, case.now)


def test_refusal_names_the_signing_key() -> None:
    with pytest.raises(UntrustedSignerError, match=OUTSIDER.key_id):
        accept_update(V1, signed(OUTSIDER, _next(V1)), NOW)


# -- checkpoints across a rotation --------------------------------------------------

MS = timedelta(milliseconds=1)
CHECKPOINTS = [
    pytest.param(K1, ROTATED_AT - HOUR, True, id="old key, before the handover"),
    pytest.param(K1, ROTATED_AT, True, id="old key, at the handover"),
    pytest.param(K1, ROTATED_AT + MS, False, id="old key, after its not_after"),
    pytest.param(K1, T0 - MS, False, id="old key, before its not_before"),
    pytest.param(K2, ROTATED_AT + HOUR, True, id="new key, after the handover"),
    pytest.param(K2, ROTATED_AT - MS, False, id="new key, backdated before its not_before"),
    pytest.param(OUTSIDER, ROTATED_AT, False, id="a key never listed"),
]


@pytest.mark.parametrize(("key", "at", "accepted"), CHECKPOINTS)
def test_checkpoints_verify_by_their_own_timestamp(
    key: object, at: datetime, accepted: bool
) -> None:
    assert isinstance(key, type(K1))
    cp = MemLog(key=key).append(b"a", b"b").checkpoint(at=at)
    keys_for = partial(keys_at, V2)
    if accepted:
        assert verify_checkpoint_at(cp.envelope, keys_for, "DE") == cp
    else:
        with pytest.raises(UntrustedSignerError):
            verify_checkpoint_at(cp.envelope, keys_for, "DE")


# -- a chain of rotations -------------------------------------------------------------

SECOND_AT = ROTATED_AT + 24 * HOUR
V3, V3_ENV = rotate(V2, K2, K3, SECOND_AT)


def test_a_chain_of_two_rotations() -> None:
    partner = accept_update(V1, V2_ENV, NOW)
    partner = accept_update(partner, V3_ENV, SECOND_AT + HOUR)
    assert partner == V3
    assert [(k.key_id, k.not_before, k.not_after) for k in V3.keys] == [
        (K1.key_id, T0, ROTATED_AT),
        (K2.key_id, ROTATED_AT, SECOND_AT),
        (K3.key_id, SECOND_AT, None),
    ]
    # Each key's past checkpoints still verify; none verifies outside its period.
    keys_for = partial(keys_at, V3)
    chain: list[tuple[SigningKey, datetime, datetime]] = [
        (K1, ROTATED_AT - HOUR, ROTATED_AT + HOUR),
        (K2, SECOND_AT - HOUR, SECOND_AT + HOUR),
        (K3, SECOND_AT + HOUR, SECOND_AT - HOUR),
    ]
    for key, inside, outside in chain:
        log = MemLog(key=key).append(b"x")
        assert verify_checkpoint_at(log.checkpoint(at=inside).envelope, keys_for, "DE")
        with pytest.raises(UntrustedSignerError):
            verify_checkpoint_at(log.checkpoint(at=outside).envelope, keys_for, "DE")


def test_a_partner_cannot_skip_a_rotation() -> None:
    # V3 is signed by K2, which V1 does not list: the partner needs V2 first.
    with pytest.raises(UntrustedSignerError):
        accept_update(V1, V3_ENV, SECOND_AT + HOUR)


def test_a_replayed_older_rotation_is_refused() -> None:
    with pytest.raises(DescriptorRollbackError):
        accept_update(V3, V2_ENV, ROTATED_AT)  # at a time K1 was still valid
