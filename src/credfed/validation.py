"""Syntactic validation of domain input, shared by the rpc layer and the CLI
(CSV import). Every failure is a ValidationError naming the field."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from credfed import codelists
from credfed.errors import ValidationError
from credfed.models import CredentialDraft, Holder, Qualification, Status
from credfed.vocabulary import REASONS, SECTORS

MAX_TEXT = 200
MAX_NAME = 120
_ISSUER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_ISCO = re.compile(r"^[0-9]{4}$")
_NATIONAL_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
_CASE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/ -]{0,63}$")
_EARLIEST = date(1900, 1, 1)


def text(value: str, field: str, *, max_len: int = MAX_TEXT, required: bool = True) -> str:
    value = value.strip()
    if len(value) > max_len:
        raise ValidationError(field, f"is longer than {max_len} characters")
    # isprintable() is False for every control, format and unassigned code
    # point (categories C*) and for separators other than the ASCII space.
    if not value.isprintable():
        raise ValidationError(field, "contains control or separator characters")
    if not unicodedata.is_normalized("NFC", value):
        value = unicodedata.normalize("NFC", value)
    if required and not value:
        raise ValidationError(field, "is required")
    return value


def iso_date(value: str, field: str, *, required: bool = True) -> date | None:
    value = value.strip()
    if not value:
        if required:
            raise ValidationError(field, "is required (YYYY-MM-DD)")
        return None
    if len(value) != 10:
        raise ValidationError(field, "must be a date YYYY-MM-DD")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, "must be a date YYYY-MM-DD") from None
    if parsed < _EARLIEST:
        raise ValidationError(field, "is before 1900-01-01")
    return parsed


def required_date(value: str, field: str) -> date:
    parsed = iso_date(value, field)
    assert parsed is not None  # required=True never returns None
    return parsed


def issuer_id(value: str, field: str = "issuer_id") -> str:
    value = value.strip()
    if not _ISSUER_ID.match(value):
        raise ValidationError(
            field, "must be 2-63 lower-case letters, digits or '-', starting alphanumeric"
        )
    return value


def _quote(value: str, limit: int = 40) -> str:
    """Input quoted back in an error, cut short: an error message travels in
    a gRPC trailer, and echoing 100 KB would exceed the client's limit."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "…"


def sector(value: str, field: str) -> str:
    value = value.strip().lower()
    if value not in SECTORS:
        raise ValidationError(
            field, f"unknown sector {_quote(value)} (one of {', '.join(sorted(SECTORS))})"
        )
    return value


def sectors(values: list[str], field: str = "sectors") -> tuple[str, ...]:
    if not values:
        raise ValidationError(field, "at least one sector is required")
    if len(values) > len(SECTORS):
        raise ValidationError(field, "too many sectors")
    return tuple(sorted({sector(v, f"{field}[{i}]") for i, v in enumerate(values)}))


def reason(value: str, status: Status, field: str = "reason") -> str:
    value = value.strip()
    allowed = REASONS[status]
    if value not in allowed:
        raise ValidationError(
            field,
            f"{_quote(value)} is not a {status.value} reason (one of {', '.join(sorted(allowed))})",
        )
    return value


def case_ref(value: str, field: str = "appeal_case_ref") -> str | None:
    value = value.strip()
    if not value:
        return None
    if not _CASE_REF.match(value):
        raise ValidationError(field, "must be 1-64 letters, digits or . _ / - and spaces")
    return value


def family_key(family_name: str) -> str:
    """The form in which family names are compared: NFKC, case-folded,
    inner white space collapsed. ``Müller`` and ``MÜLLER `` match."""
    folded = unicodedata.normalize("NFKC", family_name).casefold()
    return " ".join(folded.split())


def draft(
    *,
    issuer: str,
    given_names: str,
    family_name: str,
    birth_date: str,
    national_code: str,
    title: str,
    eqf_level: int,
    isco_code: str,
    sector_name: str,
    issued_on: str,
    valid_until: str,
    prefix: str = "draft",
) -> CredentialDraft:
    """Validate the fields of a credential to issue. ``prefix`` is prepended
    to field names in errors (``draft.holder.birth_date``)."""
    holder = Holder(
        given_names=text(given_names, f"{prefix}.holder.given_names", max_len=MAX_NAME),
        family_name=text(family_name, f"{prefix}.holder.family_name", max_len=MAX_NAME),
        birth_date=required_date(birth_date, f"{prefix}.holder.birth_date"),
    )
    q = f"{prefix}.qualification"
    code = national_code.strip()
    if not _NATIONAL_CODE.match(code):
        raise ValidationError(f"{q}.national_code", "must be 1-64 letters, digits or . _ / -")
    if not 1 <= eqf_level <= 8:
        raise ValidationError(f"{q}.eqf_level", "must be an EQF level from 1 to 8")
    isco = isco_code.strip()
    if not _ISCO.match(isco):
        raise ValidationError(f"{q}.isco_code", "must be a four-digit ISCO-08 unit group")
    if not codelists.is_isco_unit_group(isco):
        raise ValidationError(f"{q}.isco_code", f"unknown ISCO-08 unit group {isco!r}")
    qualification = Qualification(
        national_code=code,
        title=text(title, f"{q}.title"),
        eqf_level=eqf_level,
        isco_code=isco,
        sector=sector(sector_name, f"{q}.sector"),
    )
    issued = required_date(issued_on, f"{prefix}.issued_on")
    until = iso_date(valid_until, f"{prefix}.valid_until", required=False)
    if until is not None and until < issued:
        raise ValidationError(f"{prefix}.valid_until", "is before issued_on")
    if holder.birth_date >= issued:
        raise ValidationError(f"{prefix}.holder.birth_date", "is not before issued_on")
    return CredentialDraft(
        issuer_id=issuer_id(issuer, f"{prefix}.issuer_id"),
        holder=holder,
        qualification=qualification,
        issued_on=issued,
        valid_until=until,
    )
