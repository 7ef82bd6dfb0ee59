"""Recognition rules and their signed wire form.

A rule is a deciding country's statement that qualifications of an origin
country, picked out either by their national code or by criteria (an EQF
range, optionally an ISCO-08 prefix and a sector), count as a local
occupation or licence: fully, on conditions (compensation measures), or not
at all. Rules are versioned; a later version replaces an earlier one, and a
*tombstone* (``removed=True``) withdraws the rule.

The payload is canonical JSON with every field always present (``null`` for
an absent optional value), dates as ``YYYY-MM-DD`` and ``issued_at`` as Unix
milliseconds. Decoding is strict (exact field sets, JSON types, then
:func:`validate_rule`) and insists on the canonical spelling, so a rule has
exactly one byte form.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Final

from credfed import validation
from credfed.canonical import EPOCH, MAX_MILLIS, ONE_MS, Strict, canonical_json
from credfed.codelists import is_isco_code
from credfed.crypto.envelope import MAX_PAYLOAD, sign_envelope, verify_envelope
from credfed.crypto.keys import SigningKey, VerifyingKey
from credfed.errors import PreconditionError, SignatureError, UntrustedSignerError, ValidationError
from credfed.ids import is_country_code
from credfed.models import Envelope

RULE_TYPE: Final = "application/vnd.credfed.recognition-rule+json;v=1"

#: Common European Framework of Reference language levels.
CEFR_LEVELS: Final = ("A1", "A2", "B1", "B2", "C1", "C2")
MAX_MONTHS: Final = 60
MAX_LEGAL_BASIS: Final = 1000
#: Versions travel as a protobuf uint32.
MAX_VERSION: Final = 2**32 - 1

_R = Strict("rule")
_RULE_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{2,63}", re.ASCII)
# The shape of Qualification.national_code (credfed.validation.draft).
_NATIONAL_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}", re.ASCII)
_ISCO_PREFIX_RE = re.compile(r"[0-9]{1,4}", re.ASCII)

_TOP_FIELDS = frozenset(
    {
        "rule_id",
        "version",
        "country",
        "origin",
        "match",
        "outcome",
        "local_occupation",
        "local_code",
        "conditions",
        "legal_basis",
        "valid_from",
        "valid_until",
        "removed",
        "issued_at",
    }
)
_MATCH_FIELDS = frozenset({"national_code", "eqf_min", "eqf_max", "isco_prefix", "sector"})
_CONDITION_FIELDS = frozenset(
    {"aptitude_test", "adaptation_period_months", "language_level", "supervised_practice_months"}
)


class Outcome(enum.StrEnum):
    FULL = "full"
    #: Recognised once the compensation measures (:class:`Conditions`) are met.
    CONDITIONAL = "conditional"
    NOT_RECOGNISED = "not_recognised"


@dataclass(frozen=True, slots=True)
class Conditions:
    """Compensation measures a conditional recognition asks of the holder."""

    aptitude_test: bool = False
    adaptation_period_months: int = 0
    #: CEFR level of the local language (one of :data:`CEFR_LEVELS`).
    language_level: str | None = None
    supervised_practice_months: int = 0

    def is_empty(self) -> bool:
        return not (
            self.aptitude_test
            or self.adaptation_period_months
            or self.language_level is not None
            or self.supervised_practice_months
        )


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """Which qualifications of the origin a rule covers.

    Either ``national_code`` alone (every other field ``None``), or criteria:
    ``eqf_min``..``eqf_max`` (required, inclusive), an ISCO-08 code of any
    level as a prefix of the qualification's unit group, and a sector.
    """

    national_code: str | None = None
    eqf_min: int | None = None
    eqf_max: int | None = None
    isco_prefix: str | None = None
    sector: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    version: int
    #: The deciding country.
    country: str
    #: The country whose qualifications the rule covers.
    origin: str
    match: RuleMatch
    outcome: Outcome
    #: Title of the local occupation or licence ("" allowed for NOT_RECOGNISED).
    local_occupation: str
    local_code: str | None
    #: Non-empty exactly when ``outcome`` is CONDITIONAL.
    conditions: Conditions
    legal_basis: str
    valid_from: date
    #: Inclusive; ``None``: open-ended.
    valid_until: date | None
    #: A tombstone: this version withdraws the rule.
    removed: bool
    #: UTC, millisecond precision.
    issued_at: datetime


# -- validation -----------------------------------------------------------------


def validate_rule(rule: Rule) -> Rule:
    """Check every field and return the rule in normal form.

    Text is stripped and NFC-normalised, the sector lower-cased, an empty
    ``local_code`` becomes ``None`` and ``issued_at`` is converted to UTC and
    truncated to milliseconds. Raises ``ValidationError`` naming the field
    (``rule.match.eqf_min``, ``rule.conditions.language_level``, ...).
    """
    rule_id = _str(rule.rule_id, "rule.rule_id").strip()
    if not _RULE_ID_RE.fullmatch(rule_id):
        raise ValidationError(
            "rule.rule_id", "must be 3-64 lower-case letters, digits or '-', starting alphanumeric"
        )
    version = _int_in(rule.version, "rule.version", 1, MAX_VERSION)
    country = _country(rule.country, "rule.country")
    origin = _country(rule.origin, "rule.origin")
    if origin == country:
        raise ValidationError(
            "rule.origin", "is the deciding country itself; a rule covers another country's"
        )
    match = _validate_match(rule.match)
    try:
        outcome = Outcome(rule.outcome)
    except ValueError:
        raise ValidationError(
            "rule.outcome", f"must be one of {', '.join(o.value for o in Outcome)}"
        ) from None
    local_occupation = _text(
        rule.local_occupation,
        "rule.local_occupation",
        required=outcome is not Outcome.NOT_RECOGNISED,
    )
    local_code = None
    if rule.local_code is not None:
        local_code = _text(rule.local_code, "rule.local_code", required=False) or None
    conditions = _validate_conditions(rule.conditions)
    if outcome is Outcome.CONDITIONAL and conditions.is_empty():
        raise ValidationError(
            "rule.conditions", "a conditional outcome needs at least one compensation measure"
        )
    if outcome is not Outcome.CONDITIONAL and not conditions.is_empty():
        raise ValidationError("rule.conditions", f"must be empty for outcome {outcome.value}")
    legal_basis = _text(rule.legal_basis, "rule.legal_basis", max_len=MAX_LEGAL_BASIS)
    valid_from = _date(rule.valid_from, "rule.valid_from")
    valid_until = None if rule.valid_until is None else _date(rule.valid_until, "rule.valid_until")
    if valid_until is not None and valid_until < valid_from:
        raise ValidationError("rule.valid_until", "is before valid_from")
    if not isinstance(rule.removed, bool):
        raise ValidationError("rule.removed", "must be a boolean")
    return Rule(
        rule_id=rule_id,
        version=version,
        country=country,
        origin=origin,
        match=match,
        outcome=outcome,
        local_occupation=local_occupation,
        local_code=local_code,
        conditions=conditions,
        legal_basis=legal_basis,
        valid_from=valid_from,
        valid_until=valid_until,
        removed=rule.removed,
        issued_at=_moment(rule.issued_at, "rule.issued_at"),
    )


def _validate_match(match: RuleMatch) -> RuleMatch:
    if not isinstance(match, RuleMatch):
        raise ValidationError("rule.match", "must be a RuleMatch")
    if match.national_code is not None:
        code = _str(match.national_code, "rule.match.national_code").strip()
        if not _NATIONAL_CODE_RE.fullmatch(code):
            raise ValidationError(
                "rule.match.national_code", "must be 1-64 letters, digits or . _ / -"
            )
        for name in ("eqf_min", "eqf_max", "isco_prefix", "sector"):
            if getattr(match, name) is not None:
                raise ValidationError(
                    f"rule.match.{name}", "must be absent when national_code is given"
                )
        return RuleMatch(national_code=code)
    if match.eqf_min is None:
        raise ValidationError(
            "rule.match.eqf_min", "is required (an EQF range) unless national_code is given"
        )
    if match.eqf_max is None:
        raise ValidationError(
            "rule.match.eqf_max", "is required (an EQF range) unless national_code is given"
        )
    eqf_min = _int_in(match.eqf_min, "rule.match.eqf_min", 1, 8)
    eqf_max = _int_in(match.eqf_max, "rule.match.eqf_max", 1, 8)
    if eqf_min > eqf_max:
        raise ValidationError("rule.match.eqf_max", f"is below eqf_min ({eqf_min})")
    isco_prefix = None
    if match.isco_prefix is not None:
        isco_prefix = _str(match.isco_prefix, "rule.match.isco_prefix").strip()
        if not _ISCO_PREFIX_RE.fullmatch(isco_prefix):
            raise ValidationError("rule.match.isco_prefix", "must be 1-4 digits")
        if not is_isco_code(isco_prefix):
            raise ValidationError(
                "rule.match.isco_prefix", f"{isco_prefix!r} is not an ISCO-08 code"
            )
    sector = None
    if match.sector is not None:
        sector = validation.sector(_str(match.sector, "rule.match.sector"), "rule.match.sector")
    return RuleMatch(eqf_min=eqf_min, eqf_max=eqf_max, isco_prefix=isco_prefix, sector=sector)


def _validate_conditions(conditions: Conditions) -> Conditions:
    if not isinstance(conditions, Conditions):
        raise ValidationError("rule.conditions", "must be Conditions")
    if not isinstance(conditions.aptitude_test, bool):
        raise ValidationError("rule.conditions.aptitude_test", "must be a boolean")
    level = conditions.language_level
    if level is not None and level not in CEFR_LEVELS:
        raise ValidationError(
            "rule.conditions.language_level",
            f"must be a CEFR level ({', '.join(CEFR_LEVELS)})",
        )
    return Conditions(
        aptitude_test=conditions.aptitude_test,
        adaptation_period_months=_int_in(
            conditions.adaptation_period_months,
            "rule.conditions.adaptation_period_months",
            0,
            MAX_MONTHS,
        ),
        language_level=level,
        supervised_practice_months=_int_in(
            conditions.supervised_practice_months,
            "rule.conditions.supervised_practice_months",
            0,
            MAX_MONTHS,
        ),
    )


def _str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    return value


def _text(
    value: object, field: str, *, max_len: int = validation.MAX_TEXT, required: bool = True
) -> str:
    return validation.text(_str(value, field), field, max_len=max_len, required=required)


def _int_in(value: object, field: str, low: int, high: int) -> int:
    # bool is an int in Python, not in JSON.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(field, "must be an integer")
    if not low <= value <= high:
        raise ValidationError(field, f"must be from {low} to {high}")
    return value


def _country(value: object, field: str) -> str:
    if not isinstance(value, str) or not is_country_code(value):
        raise ValidationError(field, "must be a two-letter upper-case country code")
    return value


def _date(value: object, field: str) -> date:
    # datetime is a date subclass; a time of day has no place here.
    if not isinstance(value, date) or isinstance(value, datetime):
        raise ValidationError(field, "must be a date")
    return value


def _moment(value: object, field: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        # A naive time means a different instant on every machine.
        raise ValidationError(field, "must be a timezone-aware datetime")
    millis = (value - EPOCH) // ONE_MS
    if not 0 <= millis <= MAX_MILLIS:
        raise ValidationError(field, "is out of range")
    return EPOCH + millis * ONE_MS


# -- tombstones -----------------------------------------------------------------


def tombstone(rule: Rule, issued_at: datetime) -> Rule:
    """The version that withdraws ``rule``: the same rule, ``removed=True``,
    one version higher. Sign it like any other version."""
    if rule.removed:
        raise PreconditionError(f"rule {rule.rule_id} is already withdrawn")
    return validate_rule(replace(rule, version=rule.version + 1, removed=True, issued_at=issued_at))


# -- encoding -------------------------------------------------------------------


def encode_rule(rule: Rule) -> bytes:
    """The exact bytes to sign: canonical JSON of ``validate_rule(rule)``.

    Validates first, so a node can never sign a rule its partners would
    refuse to parse. What is encoded is the normal form (see
    :func:`validate_rule`); ``decode_rule(encode_rule(r)) == validate_rule(r)``.
    """
    r = validate_rule(rule)
    m, c = r.match, r.conditions
    return canonical_json(
        {
            "rule_id": r.rule_id,
            "version": r.version,
            "country": r.country,
            "origin": r.origin,
            "match": {
                "national_code": m.national_code,
                "eqf_min": m.eqf_min,
                "eqf_max": m.eqf_max,
                "isco_prefix": m.isco_prefix,
                "sector": m.sector,
            },
            "outcome": r.outcome.value,
            "local_occupation": r.local_occupation,
            "local_code": r.local_code,
            "conditions": {
                "aptitude_test": c.aptitude_test,
                "adaptation_period_months": c.adaptation_period_months,
                "language_level": c.language_level,
                "supervised_practice_months": c.supervised_practice_months,
            },
            "legal_basis": r.legal_basis,
            "valid_from": r.valid_from.isoformat(),
            "valid_until": None if r.valid_until is None else r.valid_until.isoformat(),
            "removed": r.removed,
            "issued_at": (r.issued_at - EPOCH) // ONE_MS,
        }
    )


def decode_rule(payload: bytes) -> Rule:
    """Parse ``payload`` strictly; any flaw is a ``ValidationError("rule")``."""
    obj = _R.load(payload, MAX_PAYLOAD)
    _R.exact("the object", obj, _TOP_FIELDS)
    match = _R.obj(obj["match"], "match")
    _R.exact("match", match, _MATCH_FIELDS)
    cond = _R.obj(obj["conditions"], "conditions")
    _R.exact("conditions", cond, _CONDITION_FIELDS)
    s, i, opt = _R.string, _R.integer, _R.optional
    try:
        rule = validate_rule(
            Rule(
                rule_id=s(obj["rule_id"], "rule_id"),
                version=i(obj["version"], "version"),
                country=s(obj["country"], "country"),
                origin=s(obj["origin"], "origin"),
                match=RuleMatch(
                    national_code=opt(match["national_code"], "national_code", s),
                    eqf_min=opt(match["eqf_min"], "eqf_min", i),
                    eqf_max=opt(match["eqf_max"], "eqf_max", i),
                    isco_prefix=opt(match["isco_prefix"], "isco_prefix", s),
                    sector=opt(match["sector"], "sector", s),
                ),
                outcome=Outcome(s(obj["outcome"], "outcome")),
                local_occupation=s(obj["local_occupation"], "local_occupation"),
                local_code=opt(obj["local_code"], "local_code", s),
                conditions=Conditions(
                    aptitude_test=_R.boolean(cond["aptitude_test"], "aptitude_test"),
                    adaptation_period_months=i(
                        cond["adaptation_period_months"], "adaptation_period_months"
                    ),
                    language_level=opt(cond["language_level"], "language_level", s),
                    supervised_practice_months=i(
                        cond["supervised_practice_months"], "supervised_practice_months"
                    ),
                ),
                legal_basis=s(obj["legal_basis"], "legal_basis"),
                valid_from=_R.day(obj["valid_from"], "valid_from"),
                valid_until=opt(obj["valid_until"], "valid_until", _R.day),
                removed=_R.boolean(obj["removed"], "removed"),
                issued_at=_R.moment(obj["issued_at"], "issued_at"),
            )
        )
    except ValidationError as exc:
        if exc.field == _R.field:
            raise
        _R.fail(str(exc))
    except ValueError:
        _R.fail(f"outcome must be one of {', '.join(o.value for o in Outcome)}")
    # One spelling per rule: anything the encoder would write differently
    # (escapes, key order, whitespace, untrimmed text) is refused.
    if encode_rule(rule) != payload:
        _R.fail("not in canonical form")
    return rule


# -- signatures -----------------------------------------------------------------


def sign_rule(key: SigningKey, rule: Rule) -> Envelope:
    return sign_envelope(key, RULE_TYPE, encode_rule(rule))


def verify_rule(envelope: Envelope, keys: Mapping[str, VerifyingKey], country: str) -> Rule:
    """The rule in ``envelope``, if signed by one of ``keys`` (key id to key,
    the keys trusted for ``country``) and decided by ``country``.

    Raises UntrustedSignerError for another payload type, an unknown key, a
    bad signature or a rule of another country; ValidationError("rule") for
    a malformed payload.
    """
    if envelope.payload_type != RULE_TYPE:
        raise UntrustedSignerError(
            f"payload type {envelope.payload_type[:80]!r} is not a recognition rule"
        )
    try:
        payload = verify_envelope(envelope, keys, RULE_TYPE)
    except SignatureError as exc:
        raise UntrustedSignerError(
            f"recognition rule of {country[:40]} is not validly signed by a key of"
            f" {country[:40]} (key {envelope.key_id[:64]!r}): {exc}"
        ) from None
    rule = decode_rule(payload)
    if rule.country != country:
        raise UntrustedSignerError(
            f"a recognition rule of {rule.country} signed by a key of {country[:40]}: refused"
        )
    return rule
