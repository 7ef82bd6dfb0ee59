"""Fork evidence: built from two real diverging logs, checked by a third party."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

import pytest
from fedkit import HOUR, K1, K2, OUTSIDER, T0, MemLog, descriptor, diverging_logs, entry
from hypothesis import given, settings
from hypothesis import strategies as st

from credfed.crypto.envelope import CHECKPOINT_TYPE, CREDENTIAL_TYPE, sign_envelope
from credfed.crypto.keys import VerifyingKey
from credfed.errors import EquivocationError, TrustError, ValidationError
from credfed.federation.descriptor import keys_at
from credfed.federation.evidence import (
    MAX_PROOF,
    ForkEvidence,
    check_fork_evidence,
    decode_evidence,
    encode_evidence,
)
from credfed.models import Checkpoint
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import sign_checkpoint

A, B = diverging_logs(shared=3, total=12)
DE = descriptor(entry(K1))
KEYS_FOR = partial(keys_at, DE)
AT_A, AT_B = T0 + HOUR, T0 + 2 * HOUR


def evidence(m: int, n: int) -> ForkEvidence:
    """A's checkpoint at m against B's at n, with B's own proof m -> n."""
    proof = B.proof(m, n) if 0 < m < n else ()
    alt = B.root(m)
    return ForkEvidence(
        "DE", A.checkpoint(m, at=AT_A).envelope, B.checkpoint(n, at=AT_B).envelope, proof, alt
    )


SIZES = [(7, 7), (12, 12), (4, 12), (5, 9), (8, 11), (11, 12), (4, 5)]


@pytest.mark.parametrize(("m", "n"), SIZES)
def test_real_fork_is_proven(m: int, n: int) -> None:
    first, second = check_fork_evidence(evidence(m, n), KEYS_FOR)
    assert (first.checkpoint.tree_size, second.checkpoint.tree_size) == (m, n)
    assert first.checkpoint.root_hash != second.checkpoint.root_hash


def test_a_non_empty_root_for_the_empty_tree_is_a_fork() -> None:
    bogus = sign_checkpoint(K1, Checkpoint("DE", 0, bytes(32), AT_A))
    ev = ForkEvidence("DE", bogus.envelope, B.checkpoint(5).envelope, (), merkle.EMPTY_ROOT)
    check_fork_evidence(ev, KEYS_FOR)
    # Two size-0 checkpoints: like any equal sizes, the roots just differ.
    empty = B.checkpoint(0).envelope
    check_fork_evidence(ForkEvidence("DE", empty, bogus.envelope, (), bytes(32)), KEYS_FOR)
    check_fork_evidence(ForkEvidence("DE", bogus.envelope, empty, (), merkle.EMPTY_ROOT), KEYS_FOR)


# -- evidence that proves nothing ---------------------------------------------------


def _swap_order() -> ForkEvidence:
    ev = evidence(5, 9)
    return dataclasses.replace(ev, first=ev.second, second=ev.first)


def _consistent(m: int, n: int) -> ForkEvidence:
    return ForkEvidence(
        "DE", B.checkpoint(m).envelope, B.checkpoint(n, at=AT_B).envelope, B.proof(m, n), B.root(m)
    )


def _same_tree_twice() -> ForkEvidence:
    return ForkEvidence(
        "DE", B.checkpoint(9).envelope, B.checkpoint(9, at=AT_B).envelope, (), B.root(9)
    )


def _wrong_key() -> ForkEvidence:
    return dataclasses.replace(
        evidence(5, 9), second=B.checkpoint(9, at=AT_B, key=OUTSIDER).envelope
    )


def _signed_after_key_expiry() -> ForkEvidence:
    return dataclasses.replace(evidence(5, 9), second=B.checkpoint(9, at=T0 + 100 * HOUR).envelope)


def _proof_of_another_tree() -> ForkEvidence:
    # A's honest proof 5 -> 9 does not link B's root at 5 to B's root at 9.
    return dataclasses.replace(evidence(5, 9), proof=A.proof(5, 9))


def _root_from_another_tree() -> ForkEvidence:
    # "Swapped roots": claim the second tree had the first root at m.
    return dataclasses.replace(evidence(5, 9), second_tree_root_at_first_size=A.root(5))


def _alt_equal_first_root_equal_sizes() -> ForkEvidence:
    return dataclasses.replace(evidence(9, 9), second_tree_root_at_first_size=A.root(9))


def _tampered_signature() -> ForkEvidence:
    ev = evidence(5, 9)
    return dataclasses.replace(ev, first=dataclasses.replace(ev.first, signature=bytes(64)))


def _not_a_checkpoint() -> ForkEvidence:
    ev = evidence(5, 9)
    return dataclasses.replace(ev, first=sign_envelope(K1, CREDENTIAL_TYPE, ev.first.payload))


def _signed_garbage() -> ForkEvidence:
    return dataclasses.replace(
        evidence(5, 9), first=sign_envelope(K1, CHECKPOINT_TYPE, b"not a checkpoint\n")
    )


TAMPERED: dict[str, Callable[[], ForkEvidence]] = {
    "sizes out of order": _swap_order,
    "swapped roots (alt root is the first root)": _root_from_another_tree,
    "built on the first tree instead of the second": lambda: dataclasses.replace(
        evidence(5, 9), proof=A.proof(5, 9), second_tree_root_at_first_size=A.root(5)
    ),
    "consistent checkpoints": lambda: _consistent(5, 9),
    "consistent checkpoints, power-of-two size": lambda: _consistent(4, 9),
    "the same tree signed twice": _same_tree_twice,
    "signed by a key the origin never listed": _wrong_key,
    "signed after the key expired": _signed_after_key_expiry,
    "a proof from a different tree": _proof_of_another_tree,
    "alt root equal to the first root, equal sizes": _alt_equal_first_root_equal_sizes,
    "truncated proof": lambda: dataclasses.replace(evidence(5, 9), proof=B.proof(5, 9)[:-1]),
    "no proof for different sizes": lambda: dataclasses.replace(evidence(5, 9), proof=()),
    "a proof for equal sizes": lambda: dataclasses.replace(evidence(9, 9), proof=B.proof(5, 9)),
    "equal sizes, alt root not the second root": lambda: dataclasses.replace(
        evidence(9, 9), second_tree_root_at_first_size=bytes(32)
    ),
    "tampered signature": _tampered_signature,
    "not a checkpoint": _not_a_checkpoint,
    "validly signed garbage": _signed_garbage,
    "evidence names another origin": lambda: dataclasses.replace(evidence(5, 9), origin="FR"),
}


@pytest.mark.parametrize("make", TAMPERED.values(), ids=TAMPERED.keys())
def test_evidence_that_proves_nothing_is_refused(make: Callable[[], ForkEvidence]) -> None:
    expiring = partial(keys_at, descriptor(entry(K1, T0, T0 + 10 * HOUR)))
    with pytest.raises(TrustError) as info:
        check_fork_evidence(make(), expiring)
    assert not isinstance(info.value, EquivocationError)


def test_key_validity_is_judged_at_each_checkpoint_time() -> None:
    # K1 until 1:30, K2 after: each checkpoint is checked against its own time.
    handover = T0 + HOUR + HOUR / 2
    rotated = descriptor(entry(K1, T0, handover), entry(K2, handover))
    ev = dataclasses.replace(evidence(5, 9), second=B.checkpoint(9, at=AT_B, key=K2).envelope)
    check_fork_evidence(ev, partial(keys_at, rotated))
    seen: list[datetime] = []

    def recording(moment: datetime) -> dict[str, VerifyingKey]:
        seen.append(moment)
        return keys_at(rotated, moment)

    check_fork_evidence(ev, recording)
    assert seen == [AT_A, AT_B]


# -- wire form --------------------------------------------------------------------


@pytest.mark.parametrize(("m", "n"), [(9, 9), (5, 9)])
def test_round_trip(m: int, n: int) -> None:
    ev = evidence(m, n)
    data = encode_evidence(ev)
    assert decode_evidence(data) == ev
    check_fork_evidence(decode_evidence(data), KEYS_FOR)


def _edit(change: Callable[[dict[str, Any]], object]) -> bytes:
    obj = json.loads(encode_evidence(evidence(5, 9)))
    change(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


GOOD = encode_evidence(evidence(5, 9))
ROOT_B64 = base64.b64encode(B.root(5)).decode()
MALFORMED: dict[str, bytes] = {
    "not json": b"\xff",
    "array": b"[]",
    "whitespace": GOOD.replace(b",", b", ", 1),
    "unknown field": _edit(lambda o: o.update(extra=1)),
    "missing field": _edit(lambda o: o.pop("proof")),
    "unknown format": _edit(lambda o: o.update(format="v2")),
    "origin not a country": _edit(lambda o: o.update(origin="de")),
    "proof not a list": _edit(lambda o: o.update(proof=ROOT_B64)),
    "proof too long": _edit(lambda o: o.update(proof=[ROOT_B64] * (MAX_PROOF + 1))),
    "short hash": _edit(lambda o: o.update(root_at_first_size=base64.b64encode(b"x").decode())),
    "bad base64": _edit(lambda o: o.update(root_at_first_size="!!")),
    "non-canonical base64": _edit(
        lambda o: o.update(root_at_first_size=ROOT_B64[:-2] + chr(ord(ROOT_B64[-2]) ^ 1) + "=")
    ),
    "envelope not an object": _edit(lambda o: o.update(first="x")),
    "envelope with extra field": _edit(lambda o: o["first"].update(x=1)),
    "short signature": _edit(lambda o: o["first"].update(signature="AAAA")),
    "key id not a string": _edit(lambda o: o["first"].update(key_id=7)),
    "too large": b" " * (64 * 1024 + 1),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_evidence_is_refused(data: bytes) -> None:
    with pytest.raises(ValidationError) as info:
        decode_evidence(data)
    assert info.value.field == "evidence"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600) | st.sampled_from([GOOD[:i] for i in range(0, len(GOOD), 7)]))
def test_arbitrary_bytes_decode_or_raise_validation_error(data: bytes) -> None:
    try:
        ev = decode_evidence(data)
    except ValidationError:
        return
    assert encode_evidence(ev) == data


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(GOOD) - 1), st.integers(min_value=0, max_value=255))
def test_single_byte_corruption_never_crashes(position: int, value: int) -> None:
    data = GOOD[:position] + bytes([value]) + GOOD[position + 1 :]
    try:
        ev = decode_evidence(data)
    except ValidationError:
        return
    # Whatever still parses is only evidence if it still proves the fork.
    try:
        check_fork_evidence(ev, KEYS_FOR)
    except TrustError:
        return
    assert ev == evidence(5, 9)


def test_in_memory_log_matches_the_merkle_module() -> None:
    # Sanity of the test log: B really extends its own prefix and diverges from A.
    log = MemLog()
    for i in range(12):
        log.append(b"entry-%d" % i)
    assert log.root() == A.root()
    assert A.root(3) == B.root(3)
    assert A.root(4) != B.root(4)
    merkle.verify_consistency(5, 12, B.root(5), B.root(), B.proof(5))
