"""Domain data: plain frozen dataclasses, no I/O, no grpc."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime


class Status(enum.StrEnum):
    """Credential status. ``EXPIRED`` is derived from ``valid_until`` and is
    never written to the status log."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    REINSTATED = "reinstated"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"


class IssuerStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signature over exact bytes: never re-serialise ``payload``."""

    payload: bytes
    payload_type: str
    key_id: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class Holder:
    given_names: str
    family_name: str
    birth_date: date


@dataclass(frozen=True, slots=True)
class Qualification:
    national_code: str
    title: str
    eqf_level: int
    isco_code: str
    sector: str


@dataclass(frozen=True, slots=True)
class CredentialDraft:
    """A validated request to issue a credential (no id yet)."""

    issuer_id: str
    holder: Holder
    qualification: Qualification
    issued_on: date
    valid_until: date | None


@dataclass(frozen=True, slots=True)
class Issuer:
    issuer_id: str
    name: str
    sectors: tuple[str, ...]
    status: IssuerStatus


@dataclass(frozen=True, slots=True)
class StatusState:
    """The logged status of a credential (what its newest log entry says)."""

    status: Status
    reason: str
    effective_at: datetime
    suspended_until: date | None = None
    appeal_case_ref: str | None = None
    superseded_by: str | None = None


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A credential as the origin node stores it.

    ``record`` is the signed record (holder, qualification, issuer, dates);
    the other fields are indexes and the current status. ``family_key`` is the
    normalised family name used to match a verifier's holder attribute.
    """

    credential_id: str
    issuer_id: str
    family_key: str
    birth_date: date
    valid_until: date | None
    supersedes: str | None
    record: Envelope
    state: StatusState
    last_entry_index: int


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A statement by ``origin`` that its log had ``tree_size`` entries with
    Merkle root ``root_hash`` at ``timestamp``."""

    origin: str
    tree_size: int
    root_hash: bytes
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    envelope: Envelope


class RoleKind(enum.StrEnum):
    ADMIN = "admin"
    ISSUER = "issuer"
    VERIFIER = "verifier"
    PEER = "peer"


@dataclass(frozen=True, slots=True)
class Role:
    kind: RoleKind
    issuer_id: str | None = None

    def __str__(self) -> str:
        return f"issuer:{self.issuer_id}" if self.kind is RoleKind.ISSUER else self.kind.value


@dataclass(frozen=True, slots=True)
class Client:
    """An API client. Only the SHA-256 of its token is stored.

    ``expires_at``: the token works before that instant only (None: never
    expires). ``revoked_at``: when the client was revoked (None: not revoked);
    a revoked client's token no longer works, whatever the time.
    ``partner``: for a ``peer`` client, the country of the partner it was
    issued to; on the mutual-TLS federation port its token works only with
    a certificate of that partner's CA (None: created before this was
    recorded, refused there; always None for other roles).
    """

    client_id: str
    name: str
    role: Role
    token_hash: bytes
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    partner: str | None = None

    def refusal(self, now: datetime) -> str | None:
        """Why this client's token is refused at ``now`` ("token revoked",
        "token expired"), or None while it is valid."""
        if self.revoked_at is not None:
            return "token revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "token expired"
        return None


def parse_role(text: str) -> Role:
    """Parse ``admin``, ``verifier``, ``peer`` or ``issuer:<issuer-id>``.

    Raises ValueError with a human-readable message on anything else.
    """
    if text.startswith("issuer:"):
        issuer_id = text.removeprefix("issuer:")
        if not issuer_id:
            raise ValueError("role issuer:<issuer-id> needs an issuer id")
        return Role(RoleKind.ISSUER, issuer_id)
    try:
        kind = RoleKind(text)
    except ValueError:
        raise ValueError(
            f"unknown role {text!r} (admin, verifier, peer or issuer:<issuer-id>)"
        ) from None
    if kind is RoleKind.ISSUER:
        raise ValueError("role issuer:<issuer-id> needs an issuer id")
    return Role(kind)
