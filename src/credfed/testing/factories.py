"""Test-data constructors: valid domain objects with overridable fields."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

from credfed.crypto.keys import SigningKey
from credfed.models import (
    Checkpoint,
    Client,
    Envelope,
    Issuer,
    IssuerStatus,
    Role,
    RoleKind,
    SignedCheckpoint,
    Status,
    StatusState,
    StoredCredential,
)
from credfed.statuslog.checkpoint import sign_checkpoint

#: A fixed, microsecond-precise instant, so round trips compare exactly.
T0 = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def digest(*parts: object) -> bytes:
    """A deterministic 32-byte value (stands in for hashes and signatures)."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).digest()


def make_issuer(
    issuer_id: str = "ISS-1",
    *,
    name: str | None = None,
    sectors: tuple[str, ...] = ("construction", "electrical"),
    status: IssuerStatus = IssuerStatus.ACTIVE,
) -> Issuer:
    return Issuer(
        issuer_id=issuer_id,
        name=name if name is not None else f"Chamber of Crafts {issuer_id}",
        sectors=sectors,
        status=status,
    )


def make_client(
    client_id: str = "client-1",
    *,
    role: Role | None = None,
    token_hash: bytes | None = None,
    name: str | None = None,
    created_at: datetime = T0,
) -> Client:
    return Client(
        client_id=client_id,
        name=name if name is not None else f"Client {client_id}",
        role=role if role is not None else Role(RoleKind.VERIFIER),
        token_hash=token_hash if token_hash is not None else digest("token", client_id),
        created_at=created_at,
    )


def make_state(
    status: Status = Status.ACTIVE,
    *,
    reason: str = "issued",
    effective_at: datetime = T0,
    suspended_until: date | None = None,
    appeal_case_ref: str | None = None,
    superseded_by: str | None = None,
) -> StatusState:
    return StatusState(
        status=status,
        reason=reason,
        effective_at=effective_at,
        suspended_until=suspended_until,
        appeal_case_ref=appeal_case_ref,
        superseded_by=superseded_by,
    )


def make_credential(
    credential_id: str = "XX-0001",
    *,
    issuer_id: str = "ISS-1",
    family_key: str = "muller",
    birth_date: date = date(1990, 2, 28),
    valid_until: date | None = date(2030, 12, 31),
    supersedes: str | None = None,
    record: Envelope | None = None,
    state: StatusState | None = None,
    last_entry_index: int = 0,
) -> StoredCredential:
    return StoredCredential(
        credential_id=credential_id,
        issuer_id=issuer_id,
        family_key=family_key,
        birth_date=birth_date,
        valid_until=valid_until,
        supersedes=supersedes,
        record=record
        if record is not None
        else Envelope(
            # NUL and high bytes: the payload must survive byte for byte.
            payload=b'{"id":"' + credential_id.encode() + b'"}\x00\xff',
            payload_type="application/vnd.credfed.record+json",
            key_id="XX-key-1",
            signature=digest("signature", credential_id) * 2,
        ),
        state=state if state is not None else make_state(),
        last_entry_index=last_entry_index,
    )


def make_checkpoint(
    tree_size: int,
    *,
    origin: str = "XX",
    root_hash: bytes | None = None,
    timestamp: datetime = T0,
) -> SignedCheckpoint:
    root = root_hash if root_hash is not None else digest("root", tree_size)
    body = f"{origin}\n{tree_size}\n{root.hex()}\n".encode()
    return SignedCheckpoint(
        checkpoint=Checkpoint(
            origin=origin, tree_size=tree_size, root_hash=root, timestamp=timestamp
        ),
        envelope=Envelope(
            payload=body,
            payload_type="application/vnd.credfed.checkpoint",
            key_id=f"{origin}-key-1",
            signature=digest("checkpoint-signature", origin, tree_size) * 2,
        ),
    )


def origin_key(origin: str) -> SigningKey:
    """A deterministic signing key for ``origin`` (the same on every call)."""
    return SigningKey.from_seed(digest("origin-key", origin))


def make_signed_checkpoint(
    origin: str,
    tree_size: int,
    *,
    root_hash: bytes | None = None,
    timestamp: datetime = T0,
    key: SigningKey | None = None,
) -> SignedCheckpoint:
    """A really signed checkpoint of ``origin`` (a two-letter country code),
    as a partner's log publishes it. The timestamp is truncated to
    milliseconds, as the signed body says."""
    return sign_checkpoint(
        key if key is not None else origin_key(origin),
        Checkpoint(
            origin=origin,
            tree_size=tree_size,
            root_hash=root_hash if root_hash is not None else digest("root", origin, tree_size),
            timestamp=timestamp,
        ),
    )


def leaf(index: int) -> bytes:
    """Distinct leaf bytes, including a NUL, for log index ``index``."""
    return b"leaf\x00" + index.to_bytes(8, "big")


def completed_nodes(start: int, end: int) -> list[tuple[int, int, bytes]]:
    """The ``(level, index, hash)`` perfect subtrees that appending leaves
    ``[start, end)`` completes, with stand-in hashes (the store does not check
    them)."""
    nodes: list[tuple[int, int, bytes]] = []
    level = 0
    while (1 << level) <= end:
        width = 1 << level
        # Subtrees whose last leaf, (index + 1) * width - 1, is in [start, end).
        nodes.extend(
            (level, index, digest("node", level, index))
            for index in range(start // width, end // width)
        )
        level += 1
    return nodes
