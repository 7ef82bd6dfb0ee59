"""Checkpoints: an origin's signed statement of its log's size and root.

The signed body is five newline-terminated lines of ASCII text::

    credfed-checkpoint/v1
    DE
    1234
    <base64 of the 32-byte root hash>
    <unix time in milliseconds>

The grammar admits exactly one body per checkpoint (no leading zeros, no
optional whitespace, canonical base64), so ``encode(decode(b)) == b``: two
bodies with the same meaning are the same bytes, and an equivocation can only
be two different statements, never two spellings of one.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from credfed.crypto.envelope import CHECKPOINT_TYPE, sign_envelope, verify_envelope
from credfed.crypto.keys import SigningKey, VerifyingKey
from credfed.errors import CheckpointFormatError, SignatureError
from credfed.ids import is_country_code
from credfed.models import Checkpoint, Envelope, SignedCheckpoint

HEADER = "credfed-checkpoint/v1"
MAX_BODY = 1024
# Sizes are stored as SQLite integers; anything larger is not a real log.
MAX_TREE_SIZE = 2**63 - 1
_HASH_SIZE = 32
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}", re.ASCII)  # fits an int64, no leading zeros


def encode_checkpoint(cp: Checkpoint) -> bytes:
    """The exact bytes to sign. The timestamp is truncated to milliseconds."""
    if not is_country_code(cp.origin):
        raise CheckpointFormatError(f"origin {cp.origin!r} is not a two-letter country code")
    if not 0 <= cp.tree_size <= MAX_TREE_SIZE:
        raise CheckpointFormatError(f"tree size {cp.tree_size} is out of range")
    if len(cp.root_hash) != _HASH_SIZE:
        raise CheckpointFormatError(f"root hash must be {_HASH_SIZE} bytes")
    if cp.timestamp.tzinfo is None or cp.timestamp.utcoffset() is None:
        # A naive time means a different instant on every machine.
        raise CheckpointFormatError("timestamp must be timezone-aware")
    millis = (cp.timestamp - _EPOCH) // _ONE_MS
    if millis < 0:
        raise CheckpointFormatError("timestamp is before 1970")
    root = base64.b64encode(cp.root_hash).decode("ascii")
    return f"{HEADER}\n{cp.origin}\n{cp.tree_size}\n{root}\n{millis}\n".encode("ascii")


def decode_checkpoint(body: bytes) -> Checkpoint:
    """Parse a body strictly; CheckpointFormatError names the first problem."""
    if len(body) > MAX_BODY:
        raise CheckpointFormatError(f"checkpoint body exceeds {MAX_BODY} bytes")
    try:
        text = bytes(body).decode("ascii")
    except UnicodeDecodeError:
        raise CheckpointFormatError("checkpoint body is not ASCII text") from None
    if not text.endswith("\n"):
        raise CheckpointFormatError("checkpoint body must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) != 5:
        raise CheckpointFormatError(f"checkpoint body has {len(lines)} lines, expected 5")
    header, origin, size_text, root_text, millis_text = lines
    if header != HEADER:
        raise CheckpointFormatError(f"unknown checkpoint header {header[:40]!r}")
    if not is_country_code(origin):
        raise CheckpointFormatError(f"origin {origin[:40]!r} is not a two-letter country code")
    tree_size = _decimal("tree size", size_text)
    if tree_size > MAX_TREE_SIZE:
        raise CheckpointFormatError(f"tree size {tree_size} is out of range")
    root_hash = _root(root_text)
    millis = _decimal("timestamp", millis_text)
    try:
        timestamp = _EPOCH + millis * _ONE_MS
    except OverflowError:
        raise CheckpointFormatError(f"timestamp {millis} is out of range") from None
    return Checkpoint(origin=origin, tree_size=tree_size, root_hash=root_hash, timestamp=timestamp)


def sign_checkpoint(key: SigningKey, cp: Checkpoint) -> SignedCheckpoint:
    """Sign ``cp``; the returned checkpoint is what the body says (ms precision)."""
    body = encode_checkpoint(cp)
    return SignedCheckpoint(decode_checkpoint(body), sign_envelope(key, CHECKPOINT_TYPE, body))


def verify_checkpoint(
    envelope: Envelope, keys: Mapping[str, VerifyingKey], origin: str
) -> SignedCheckpoint:
    """Verify the signature, then parse, then check the checkpoint is ``origin``'s.

    Parsing comes after verification so unauthenticated bytes never reach the
    parser; the origin check stops a key trusted for one origin vouching for
    another's log.
    """
    body = verify_envelope(envelope, keys, CHECKPOINT_TYPE)
    cp = decode_checkpoint(body)
    if cp.origin != origin:
        raise SignatureError(f"checkpoint is for origin {cp.origin}, expected {origin}")
    return SignedCheckpoint(cp, envelope)


def _decimal(what: str, text: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise CheckpointFormatError(
            f"{what} {text[:40]!r} is not a decimal number without leading zeros"
        )
    return int(text)


def _root(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointFormatError(f"root hash {text[:60]!r} is not standard base64") from None
    # Re-encoding rejects the non-canonical spellings b64decode tolerates
    # (non-zero padding bits).
    if len(raw) != _HASH_SIZE or base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointFormatError(f"root hash must be canonical base64 of {_HASH_SIZE} bytes")
    return raw
