"""Check a verification answer without trusting the node that gave it.

What a careful client does with the answer of ``Verify``: the status entry
must be in the log (inclusion proof against the checkpoint's root), must be
about this credential, and — when the origin's public key is known from
elsewhere — the record and the checkpoint must carry the origin's signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from credfed.crypto.envelope import CHECKPOINT_TYPE, CREDENTIAL_TYPE, verify_envelope
from credfed.crypto.keys import VerifyingKey
from credfed.errors import ProofError
from credfed.models import Envelope
from credfed.records import decode_record
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import decode_checkpoint, verify_checkpoint
from credfed.statuslog.entries import LogEntryData, decode_entry


@dataclass(frozen=True, slots=True)
class IndependentCheck:
    entry: LogEntryData
    tree_size: int
    signatures_checked: bool


def check_answer(
    *,
    credential_id: str,
    record: Envelope,
    leaf: bytes,
    leaf_index: int,
    proof: list[bytes],
    checkpoint: Envelope,
    origin: str,
    keys: Mapping[str, VerifyingKey] | None,
) -> IndependentCheck:
    """Raise ProofError or SignatureError unless the answer holds together."""
    if keys is not None:
        signed = verify_checkpoint(checkpoint, keys, origin).checkpoint
        payload = verify_envelope(record, keys, CREDENTIAL_TYPE)
        if decode_record(payload).credential_id != credential_id:
            raise ProofError("the signed record is about another credential")
    else:
        if checkpoint.payload_type != CHECKPOINT_TYPE:
            raise ProofError("not a checkpoint envelope")
        signed = decode_checkpoint(checkpoint.payload)
        if signed.origin != origin:
            raise ProofError(f"checkpoint is of origin {signed.origin}, not {origin}")
    entry = decode_entry(leaf)
    if entry.credential_id != credential_id or entry.index != leaf_index or entry.origin != origin:
        raise ProofError("the status entry is about another credential, position or origin")
    merkle.verify_inclusion(
        merkle.leaf_hash(leaf), leaf_index, signed.tree_size, proof, signed.root_hash
    )
    return IndependentCheck(entry, signed.tree_size, keys is not None)
