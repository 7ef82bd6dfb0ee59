"""The signed credential record: exact payload bytes the origin signs.

The payload is canonical JSON so that any client can check it with nothing
but an Ed25519 library and a JSON parser. It is signed once, stored as
bytes and served as bytes; it is never rebuilt from the database columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from credfed.canonical import canonical_json, load_json_object
from credfed.errors import ValidationError
from credfed.models import CredentialDraft, Holder, Qualification

RECORD_VERSION = 1


@dataclass(frozen=True, slots=True)
class Record:
    credential_id: str
    origin: str
    issuer_id: str
    issuer_name: str
    holder: Holder
    qualification: Qualification
    issued_on: date
    valid_until: date | None
    supersedes: str | None


def encode_record(record: Record) -> bytes:
    q = record.qualification
    return canonical_json(
        {
            "v": RECORD_VERSION,
            "credential_id": record.credential_id,
            "origin": record.origin,
            "issuer": {"id": record.issuer_id, "name": record.issuer_name},
            "holder": {
                "given_names": record.holder.given_names,
                "family_name": record.holder.family_name,
                "birth_date": record.holder.birth_date.isoformat(),
            },
            "qualification": {
                "national_code": q.national_code,
                "title": q.title,
                "eqf_level": q.eqf_level,
                "isco_code": q.isco_code,
                "sector": q.sector,
            },
            "issued_on": record.issued_on.isoformat(),
            "valid_until": record.valid_until.isoformat() if record.valid_until else None,
            "supersedes": record.supersedes,
        }
    )


def record_from_draft(
    credential_id: str,
    origin: str,
    issuer_name: str,
    draft: CredentialDraft,
    supersedes: str | None,
) -> Record:
    return Record(
        credential_id=credential_id,
        origin=origin,
        issuer_id=draft.issuer_id,
        issuer_name=issuer_name,
        holder=draft.holder,
        qualification=draft.qualification,
        issued_on=draft.issued_on,
        valid_until=draft.valid_until,
        supersedes=supersedes,
    )


def decode_record(payload: bytes) -> Record:
    """Decode a payload whose signature was already checked."""
    try:
        obj = load_json_object(payload)
        issuer = _obj(obj["issuer"])
        holder = _obj(obj["holder"])
        q = _obj(obj["qualification"])
        if obj["v"] != RECORD_VERSION:
            raise ValueError(f"record version {obj['v']!r}")
        until = obj["valid_until"]
        supersedes = obj["supersedes"]
        level = q["eqf_level"]
        if not isinstance(level, int):
            raise TypeError("eqf_level")
        return Record(
            credential_id=str(obj["credential_id"]),
            origin=str(obj["origin"]),
            issuer_id=str(issuer["id"]),
            issuer_name=str(issuer["name"]),
            holder=Holder(
                given_names=str(holder["given_names"]),
                family_name=str(holder["family_name"]),
                birth_date=date.fromisoformat(str(holder["birth_date"])),
            ),
            qualification=Qualification(
                national_code=str(q["national_code"]),
                title=str(q["title"]),
                eqf_level=level,
                isco_code=str(q["isco_code"]),
                sector=str(q["sector"]),
            ),
            issued_on=date.fromisoformat(str(obj["issued_on"])),
            valid_until=date.fromisoformat(str(until)) if until is not None else None,
            supersedes=str(supersedes) if supersedes is not None else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(
            "signed_record.payload", f"malformed credential record: {exc}"
        ) from exc


def _obj(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value
