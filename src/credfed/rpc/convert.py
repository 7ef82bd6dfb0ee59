"""Conversions between generated messages and domain objects: the only
place both kinds of type meet."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from credfed import validation
from credfed.errors import ValidationError
from credfed.models import (
    CredentialDraft,
    Envelope,
    Issuer,
    IssuerStatus,
    SignedCheckpoint,
    Status,
    StatusState,
    StoredCredential,
)
from credfed.records import Record, decode_record
from credfed.v1 import common_pb2 as c
from credfed.v1 import registry_pb2 as r

STATUS_PB: dict[Status, c.CredentialStatus] = {
    Status.ACTIVE: c.CREDENTIAL_STATUS_ACTIVE,
    Status.SUSPENDED: c.CREDENTIAL_STATUS_SUSPENDED,
    Status.REVOKED: c.CREDENTIAL_STATUS_REVOKED,
    Status.REINSTATED: c.CREDENTIAL_STATUS_REINSTATED,
    Status.SUPERSEDED: c.CREDENTIAL_STATUS_SUPERSEDED,
    Status.EXPIRED: c.CREDENTIAL_STATUS_EXPIRED,
}
ISSUER_STATUS_PB: dict[IssuerStatus, r.IssuerStatus] = {
    IssuerStatus.ACTIVE: r.ISSUER_STATUS_ACTIVE,
    IssuerStatus.SUSPENDED: r.ISSUER_STATUS_SUSPENDED,
}
#: A request whose repeated or text fields exceed this is refused outright.
MAX_FIELD_BYTES = 1024


def timestamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def envelope(env: Envelope) -> c.Envelope:
    return c.Envelope(
        payload=env.payload,
        payload_type=env.payload_type,
        key_id=env.key_id,
        signature=env.signature,
    )


def checkpoint(signed: SignedCheckpoint) -> c.SignedCheckpoint:
    cp = signed.checkpoint
    return c.SignedCheckpoint(
        envelope=envelope(signed.envelope),
        origin=cp.origin,
        tree_size=cp.tree_size,
        root_hash=cp.root_hash,
        timestamp=timestamp(cp.timestamp),
    )


def status_detail(state: StatusState, status: Status | None = None) -> c.StatusDetail:
    return c.StatusDetail(
        status=STATUS_PB[status or state.status],
        reason=state.reason,
        effective_at=timestamp(state.effective_at),
        suspended_until=state.suspended_until.isoformat() if state.suspended_until else "",
        appeal_case_ref=state.appeal_case_ref or "",
        superseded_by=state.superseded_by or "",
    )


def holder(record: Record) -> c.Holder:
    h = record.holder
    return c.Holder(
        given_names=h.given_names, family_name=h.family_name, birth_date=h.birth_date.isoformat()
    )


def qualification(record: Record) -> c.Qualification:
    q = record.qualification
    return c.Qualification(
        national_code=q.national_code,
        title=q.title,
        eqf_level=q.eqf_level,
        isco_code=q.isco_code,
        sector=q.sector,
    )


def credential(stored: StoredCredential, status: Status | None = None) -> c.Credential:
    record = decode_record(stored.record.payload)
    return c.Credential(
        credential_id=stored.credential_id,
        origin=record.origin,
        issuer_id=stored.issuer_id,
        holder=holder(record),
        qualification=qualification(record),
        issued_on=record.issued_on.isoformat(),
        valid_until=record.valid_until.isoformat() if record.valid_until else "",
        supersedes=stored.supersedes or "",
        status=status_detail(stored.state, status),
        signed_record=envelope(stored.record),
    )


def issuer(value: Issuer) -> r.Issuer:
    return r.Issuer(
        issuer_id=value.issuer_id,
        name=value.name,
        sectors=list(value.sectors),
        status=ISSUER_STATUS_PB[value.status],
    )


def draft(pb: c.CredentialDraft, prefix: str) -> CredentialDraft:
    h, q = pb.holder, pb.qualification
    return validation.draft(
        issuer=pb.issuer_id,
        given_names=h.given_names,
        family_name=h.family_name,
        birth_date=h.birth_date,
        national_code=q.national_code,
        title=q.title,
        eqf_level=q.eqf_level,
        isco_code=q.isco_code,
        sector_name=q.sector,
        issued_on=pb.issued_on,
        valid_until=pb.valid_until,
        prefix=prefix,
    )


def bounded(value: str, field: str) -> str:
    """Refuse absurdly long strings before any further work."""
    if len(value) > MAX_FIELD_BYTES:
        raise ValidationError(field, f"is longer than {MAX_FIELD_BYTES} characters")
    return value
