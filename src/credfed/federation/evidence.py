"""Proof that an origin equivocated, checkable by any third party.

Evidence is two checkpoints signed by the origin, of sizes ``m <= n``, plus
what shows they cannot both be true: the second tree's root at size ``m``
(with an RFC 6962 consistency proof from ``m`` to ``n`` inside the second
tree) differs from the first checkpoint's root. For ``m == n`` the second
tree's root at ``m`` is simply its root, and no proof is needed; for
``m == 0`` it is the empty-tree hash. Nothing in the evidence has to be
trusted except the origin's keys: a node hands it to its peers, and each
checks it for itself.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from credfed.canonical import Strict, canonical_json
from credfed.crypto.envelope import CHECKPOINT_TYPE
from credfed.crypto.keys import SIGNATURE_SIZE, VerifyingKey
from credfed.errors import (
    CheckpointFormatError,
    ProofError,
    SignatureError,
    TrustError,
    UntrustedSignerError,
)
from credfed.ids import is_country_code
from credfed.models import Envelope, SignedCheckpoint
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import MAX_BODY, decode_checkpoint, verify_checkpoint

KeysFor = Callable[[datetime], Mapping[str, VerifyingKey]]
"""The keys an origin may sign with at a given moment."""

FORMAT = "credfed-fork-evidence/v1"
MAX_EVIDENCE = 64 * 1024
MAX_PROOF = 128  # twice the longest consistency proof of a 2**63-leaf tree

_E = Strict("evidence")
_FIELDS = frozenset({"format", "origin", "first", "second", "proof", "root_at_first_size"})
_ENVELOPE_FIELDS = frozenset({"payload", "payload_type", "key_id", "signature"})
_MAX_KEY_ID = 64
_MAX_PAYLOAD_TYPE = 256


@dataclass(frozen=True, slots=True)
class ForkEvidence:
    """Two checkpoint envelopes of ``origin`` that cannot both be true.

    ``first`` has size m and ``second`` size n, m <= n.
    ``second_tree_root_at_first_size`` is the second tree's root at m and
    differs from the first checkpoint's root; for m < n, ``proof`` is the
    consistency proof from m to n within the second tree, otherwise empty.
    """

    origin: str
    first: Envelope
    second: Envelope
    proof: tuple[bytes, ...]
    second_tree_root_at_first_size: bytes


def verify_checkpoint_at(envelope: Envelope, keys_for: KeysFor, origin: str) -> SignedCheckpoint:
    """Verify a checkpoint of ``origin`` with the keys valid at its own timestamp.

    The key set depends on the claimed time, so the body is parsed before the
    signature is checked; the checkpoint parser is strict and reads at most
    1 KiB, and the signature then binds the time that chose the keys.
    Raises UntrustedSignerError, or CheckpointFormatError for a malformed body.
    """
    if envelope.payload_type != CHECKPOINT_TYPE:
        raise UntrustedSignerError(
            f"payload type {envelope.payload_type[:80]!r} is not a checkpoint"
        )
    claimed = decode_checkpoint(envelope.payload)
    try:
        return verify_checkpoint(envelope, keys_for(claimed.timestamp), origin)
    except SignatureError as exc:
        raise UntrustedSignerError(
            f"checkpoint of {origin} at {claimed.timestamp.isoformat()} is not validly signed"
            f" by a key of {origin} valid then (key {envelope.key_id[:64]!r}): {exc}"
        ) from None


def check_fork_evidence(
    ev: ForkEvidence, keys_for: KeysFor
) -> tuple[SignedCheckpoint, SignedCheckpoint]:
    """The two checkpoints, if ``ev`` proves that ``ev.origin`` forked its log.

    Raises TrustError when it does not: a bad signature, a wrong origin,
    sizes out of order, a proof that fails, or checkpoints that agree.
    """
    try:
        first = verify_checkpoint_at(ev.first, keys_for, ev.origin)
        second = verify_checkpoint_at(ev.second, keys_for, ev.origin)
    except (UntrustedSignerError, CheckpointFormatError) as exc:
        raise TrustError(f"fork evidence for {ev.origin}: {exc}") from None
    m, n = first.checkpoint.tree_size, second.checkpoint.tree_size
    if m > n:
        raise TrustError(f"fork evidence for {ev.origin}: sizes {m} > {n} are out of order")
    alt = ev.second_tree_root_at_first_size
    _check_alt_root(ev, m, n, alt, second.checkpoint.root_hash)
    if alt == first.checkpoint.root_hash:
        raise TrustError(
            f"fork evidence for {ev.origin}: checkpoints of sizes {m} and {n} are consistent"
        )
    return first, second


def _check_alt_root(ev: ForkEvidence, m: int, n: int, alt: bytes, second_root: bytes) -> None:
    """Check ``alt`` is the second tree's root at size m."""
    if m in (n, 0):
        # Nothing to prove: the root at n is signed, the root at 0 is fixed.
        expected = second_root if m == n else merkle.EMPTY_ROOT
        if ev.proof or alt != expected:
            raise TrustError(
                f"fork evidence for {ev.origin}: for sizes {m} and {n} the proof must be"
                " empty and the root at the first size must be the "
                + ("second root" if m == n else "empty-tree hash")
            )
        return
    try:
        merkle.verify_consistency(m, n, alt, second_root, ev.proof)
    except ProofError as exc:
        raise TrustError(f"fork evidence for {ev.origin}: {exc}") from None


# -- wire form ------------------------------------------------------------------


def encode_evidence(ev: ForkEvidence) -> bytes:
    """Canonical JSON, binary fields in standard base64."""
    if not is_country_code(ev.origin):
        _E.fail(f"origin {ev.origin[:40]!r} is not a two-letter country code")
    if len(ev.proof) > MAX_PROOF:
        _E.fail(f"proof has more than {MAX_PROOF} hashes")
    data = canonical_json(
        {
            "format": FORMAT,
            "origin": ev.origin,
            "first": _encode_envelope("first", ev.first),
            "second": _encode_envelope("second", ev.second),
            "proof": [_b64(_hash("proof[]", h)) for h in ev.proof],
            "root_at_first_size": _b64(
                _hash("root_at_first_size", ev.second_tree_root_at_first_size)
            ),
        }
    )
    if len(data) > MAX_EVIDENCE:
        _E.fail(f"encoded evidence exceeds {MAX_EVIDENCE} bytes")
    return data


def decode_evidence(data: bytes) -> ForkEvidence:
    """Parse strictly; any flaw is a ValidationError("evidence")."""
    obj = _E.load(data, MAX_EVIDENCE)
    _E.exact("the object", obj, _FIELDS)
    if obj["format"] != FORMAT:
        _E.fail(f"unknown format {str(obj['format'])[:40]!r}")
    proof = obj["proof"]
    if not isinstance(proof, list) or len(proof) > MAX_PROOF:
        _E.fail(f"proof must be a list of at most {MAX_PROOF} hashes")
    ev = ForkEvidence(
        origin=_E.string(obj["origin"], "origin"),
        first=_decode_envelope("first", obj["first"]),
        second=_decode_envelope("second", obj["second"]),
        proof=tuple(_unb64(p, "proof[]") for p in proof),
        second_tree_root_at_first_size=_unb64(obj["root_at_first_size"], "root_at_first_size"),
    )
    if encode_evidence(ev) != data:
        _E.fail("not in canonical form")
    return ev


def _encode_envelope(name: str, env: Envelope) -> dict[str, object]:
    if len(env.payload) > MAX_BODY:
        _E.fail(f"{name}.payload exceeds {MAX_BODY} bytes")
    if len(env.signature) != SIGNATURE_SIZE:
        _E.fail(f"{name}.signature must be {SIGNATURE_SIZE} bytes")
    if not 0 < len(env.key_id) <= _MAX_KEY_ID:
        _E.fail(f"{name}.key_id must be 1-{_MAX_KEY_ID} characters")
    if not 0 < len(env.payload_type) <= _MAX_PAYLOAD_TYPE:
        _E.fail(f"{name}.payload_type must be 1-{_MAX_PAYLOAD_TYPE} characters")
    return {
        "payload": _b64(env.payload),
        "payload_type": env.payload_type,
        "key_id": env.key_id,
        "signature": _b64(env.signature),
    }


def _decode_envelope(name: str, value: object) -> Envelope:
    env = _E.obj(value, name)
    _E.exact(name, env, _ENVELOPE_FIELDS)
    return Envelope(
        payload=_unb64(env["payload"], f"{name}.payload"),
        payload_type=_E.string(env["payload_type"], f"{name}.payload_type"),
        key_id=_E.string(env["key_id"], f"{name}.key_id"),
        signature=_unb64(env["signature"], f"{name}.signature"),
    )


def _hash(name: str, h: bytes) -> bytes:
    if len(h) != merkle.HASH_SIZE:
        _E.fail(f"{name} must be a {merkle.HASH_SIZE}-byte hash")
    return h


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(value: object, name: str) -> bytes:
    text = _E.string(value, name)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
        _E.fail(f"{name} is not standard base64")
