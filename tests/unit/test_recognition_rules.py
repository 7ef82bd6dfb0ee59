"""Recognition rules: validation, the strict canonical wire form, signatures."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credfed.crypto.envelope import DESCRIPTOR_TYPE, sign_envelope
from credfed.crypto.keys import SigningKey
from credfed.errors import PreconditionError, UntrustedSignerError, ValidationError
from credfed.recognition.rules import (
    RULE_TYPE,
    Conditions,
    Outcome,
    Rule,
    RuleMatch,
    decode_rule,
    encode_rule,
    sign_rule,
    tombstone,
    validate_rule,
    verify_rule,
)
from credfed.vocabulary import SECTORS

T0 = datetime(2025, 1, 1, tzinfo=UTC)
K1 = SigningKey.from_seed(bytes(32))
K2 = SigningKey.from_seed(b"\x01" * 32)
DE_KEYS = {K1.key_id: K1.verifying_key()}

BASE = Rule(
    rule_id="fr-electricians",
    version=1,
    country="DE",
    origin="FR",
    match=RuleMatch(eqf_min=4, eqf_max=5, isco_prefix="7411", sector="energy"),
    outcome=Outcome.FULL,
    local_occupation="Elektroniker/in für Energie- und Gebäudetechnik",
    local_code="DE-HWK-EGT",
    conditions=Conditions(),
    legal_basis="§ 40a Handwerksordnung; Richtlinie 2005/36/EG",
    valid_from=date(2025, 1, 1),
    valid_until=None,
    removed=False,
    issued_at=T0,
)
CONDITIONAL = replace(
    BASE,
    outcome=Outcome.CONDITIONAL,
    conditions=Conditions(adaptation_period_months=6, language_level="B1"),
)
PAYLOAD = encode_rule(BASE)


# -- round trip -------------------------------------------------------------------

ISCO_PREFIXES = ["0", "01", "0110", "2", "22", "222", "2221", "7", "74", "741", "7411"]
_TEXT = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "S"), include_characters=" "),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() != "")


@st.composite
def matches(draw: st.DrawFn) -> RuleMatch:
    if draw(st.booleans()):
        return RuleMatch(
            national_code=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,20}", fullmatch=True))
        )
    low = draw(st.integers(1, 8))
    return RuleMatch(
        eqf_min=low,
        eqf_max=draw(st.integers(low, 8)),
        isco_prefix=draw(st.none() | st.sampled_from(ISCO_PREFIXES)),
        sector=draw(st.none() | st.sampled_from(sorted(SECTORS))),
    )


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    outcome = draw(st.sampled_from(list(Outcome)))
    conditions = Conditions()
    if outcome is Outcome.CONDITIONAL:
        conditions = draw(
            st.builds(
                Conditions,
                aptitude_test=st.booleans(),
                adaptation_period_months=st.integers(0, 60),
                language_level=st.none() | st.sampled_from(["A1", "A2", "B1", "B2", "C1", "C2"]),
                supervised_practice_months=st.integers(0, 60),
            ).filter(lambda c: not c.is_empty())
        )
    valid_from = draw(st.dates(date(1990, 1, 1), date(2100, 1, 1)))
    country, origin = draw(st.permutations(["DE", "FR", "PL", "AT"]))[:2]
    millis = draw(st.integers(0, 4_102_444_800_000))
    return Rule(
        rule_id=draw(st.from_regex(r"[a-z0-9][a-z0-9-]{2,63}", fullmatch=True)),
        version=draw(st.integers(1, 2**32 - 1)),
        country=country,
        origin=origin,
        match=draw(matches()),
        outcome=outcome,
        local_occupation=""
        if outcome is Outcome.NOT_RECOGNISED and draw(st.booleans())
        else draw(_TEXT),
        local_code=draw(st.none() | _TEXT),
        conditions=conditions,
        legal_basis=draw(_TEXT),
        valid_from=valid_from,
        valid_until=draw(st.none() | st.dates(valid_from, date(2200, 1, 1))),
        removed=draw(st.booleans()),
        issued_at=datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis),
    )


@settings(max_examples=100)
@given(rules())
def test_round_trip(rule: Rule) -> None:
    normal = validate_rule(rule)
    payload = encode_rule(rule)
    assert decode_rule(payload) == normal
    assert encode_rule(normal) == payload
    assert validate_rule(normal) == normal


def test_canonical_text() -> None:
    obj = json.loads(PAYLOAD)
    assert list(obj) == sorted(obj)
    assert obj["issued_at"] == 1735689600000  # unix milliseconds
    assert obj["valid_from"] == "2025-01-01"
    assert obj["valid_until"] is None  # absent optional values are null, never omitted
    assert obj["match"]["national_code"] is None
    assert obj["conditions"] == {
        "adaptation_period_months": 0,
        "aptitude_test": False,
        "language_level": None,
        "supervised_practice_months": 0,
    }
    assert "Gebäudetechnik".encode() in PAYLOAD  # UTF-8, not \\u escapes


def test_validate_normalises() -> None:
    plus_two = timezone(timedelta(hours=2))
    messy = replace(
        BASE,
        rule_id=" fr-electricians ",
        match=RuleMatch(eqf_min=4, eqf_max=5, isco_prefix=" 741 ", sector=" Energy "),
        local_occupation="  Elektriker ",
        local_code="  ",
        issued_at=datetime(2025, 1, 1, 2, 0, 0, 123456, tzinfo=plus_two),
    )
    normal = validate_rule(messy)
    assert normal.rule_id == "fr-electricians"
    assert normal.match == RuleMatch(eqf_min=4, eqf_max=5, isco_prefix="741", sector="energy")
    assert normal.local_occupation == "Elektriker"
    assert normal.local_code is None
    assert normal.issued_at == datetime(2025, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert normal.issued_at.tzinfo is UTC
    assert decode_rule(encode_rule(messy)) == normal


def test_valid_variants() -> None:
    for rule in (
        CONDITIONAL,
        replace(BASE, outcome=Outcome.NOT_RECOGNISED, local_occupation="", local_code=None),
        replace(BASE, match=RuleMatch(national_code="FR-RNCP-12345")),
        replace(BASE, match=RuleMatch(eqf_min=1, eqf_max=8)),
        replace(BASE, valid_until=BASE.valid_from),
        replace(BASE, removed=True, version=2),
    ):
        assert decode_rule(encode_rule(rule)) == rule


# -- validation -------------------------------------------------------------------

_CRITERIA = RuleMatch(eqf_min=4, eqf_max=5)
INVALID: list[tuple[str, Rule, str]] = [
    (
        "conditional without conditions",
        replace(BASE, outcome=Outcome.CONDITIONAL),
        "rule.conditions",
    ),
    (
        "full with conditions",
        replace(BASE, conditions=Conditions(aptitude_test=True)),
        "rule.conditions",
    ),
    (
        "not recognised with conditions",
        replace(CONDITIONAL, outcome=Outcome.NOT_RECOGNISED),
        "rule.conditions",
    ),
    (
        "eqf_min > eqf_max",
        replace(BASE, match=RuleMatch(eqf_min=5, eqf_max=4)),
        "rule.match.eqf_max",
    ),
    ("eqf 0", replace(BASE, match=RuleMatch(eqf_min=0, eqf_max=4)), "rule.match.eqf_min"),
    ("eqf 9", replace(BASE, match=RuleMatch(eqf_min=4, eqf_max=9)), "rule.match.eqf_max"),
    ("eqf bool", replace(BASE, match=RuleMatch(eqf_min=True, eqf_max=4)), "rule.match.eqf_min"),
    (
        "eqf_max missing",
        replace(BASE, match=RuleMatch(eqf_min=4, isco_prefix="7411")),
        "rule.match.eqf_max",
    ),
    (
        "unknown isco prefix",
        replace(BASE, match=replace(_CRITERIA, isco_prefix="99")),
        "rule.match.isco_prefix",
    ),
    (
        "isco prefix of five digits",
        replace(BASE, match=replace(_CRITERIA, isco_prefix="74111")),
        "rule.match.isco_prefix",
    ),
    (
        "isco prefix not digits",
        replace(BASE, match=replace(_CRITERIA, isco_prefix="74a")),
        "rule.match.isco_prefix",
    ),
    (
        "unknown sector",
        replace(BASE, match=replace(_CRITERIA, sector="mining")),
        "rule.match.sector",
    ),
    (
        "national code with criteria",
        replace(BASE, match=RuleMatch(national_code="FR-1", eqf_min=4, eqf_max=4)),
        "rule.match.eqf_min",
    ),
    (
        "national code with sector",
        replace(BASE, match=RuleMatch(national_code="FR-1", sector="energy")),
        "rule.match.sector",
    ),
    (
        "national code malformed",
        replace(BASE, match=RuleMatch(national_code="FR 1!")),
        "rule.match.national_code",
    ),
    ("neither national code nor EQF range", replace(BASE, match=RuleMatch()), "rule.match.eqf_min"),
    ("origin == country", replace(BASE, origin="DE"), "rule.origin"),
    ("origin lower case", replace(BASE, origin="fr"), "rule.origin"),
    ("country malformed", replace(BASE, country="DEU"), "rule.country"),
    (
        "valid_until < valid_from",
        replace(BASE, valid_until=date(2024, 12, 31)),
        "rule.valid_until",
    ),
    (
        "valid_from a datetime",
        replace(BASE, valid_from=datetime(2025, 1, 1, tzinfo=UTC)),
        "rule.valid_from",
    ),
    (
        "language level D1",
        replace(CONDITIONAL, conditions=Conditions(language_level="D1")),
        "rule.conditions.language_level",
    ),
    (
        "adaptation period of 61 months",
        replace(CONDITIONAL, conditions=Conditions(adaptation_period_months=61)),
        "rule.conditions.adaptation_period_months",
    ),
    (
        "negative supervised practice",
        replace(CONDITIONAL, conditions=Conditions(supervised_practice_months=-1)),
        "rule.conditions.supervised_practice_months",
    ),
    ("legal_basis empty", replace(BASE, legal_basis="  "), "rule.legal_basis"),
    ("legal_basis too long", replace(BASE, legal_basis="x" * 1001), "rule.legal_basis"),
    ("legal_basis with a newline", replace(BASE, legal_basis="a\nb"), "rule.legal_basis"),
    (
        "local_occupation empty for full",
        replace(BASE, local_occupation=""),
        "rule.local_occupation",
    ),
    (
        "local_occupation with a control character",
        replace(BASE, local_occupation="Elektriker\x07"),
        "rule.local_occupation",
    ),
    ("local_code too long", replace(BASE, local_code="x" * 201), "rule.local_code"),
    ("rule_id too short", replace(BASE, rule_id="ab"), "rule.rule_id"),
    ("rule_id upper case", replace(BASE, rule_id="FR-electricians"), "rule.rule_id"),
    ("version 0", replace(BASE, version=0), "rule.version"),
    ("version beyond uint32", replace(BASE, version=2**32), "rule.version"),
    ("outcome unknown", replace(BASE, outcome=cast(Any, "partial")), "rule.outcome"),
    ("issued_at naive", replace(BASE, issued_at=datetime(2025, 1, 1)), "rule.issued_at"),
    (
        "issued_at before 1970",
        replace(BASE, issued_at=datetime(1969, 1, 1, tzinfo=UTC)),
        "rule.issued_at",
    ),
    ("removed not a bool", replace(BASE, removed=cast(Any, 1)), "rule.removed"),
]


@pytest.mark.parametrize(
    ("rule", "field"), [(r, f) for _, r, f in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_validate_names_the_field(rule: Rule, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_rule(rule)
    assert info.value.field == field
    with pytest.raises(ValidationError):
        encode_rule(rule)  # a node can never sign what its partners refuse


# -- strict decoding ----------------------------------------------------------------


def _mutated(change: Callable[[dict[str, Any]], None]) -> bytes:
    obj = copy.deepcopy(json.loads(PAYLOAD))
    change(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = obj
        for p in parents:
            target = target[p]
        target[last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = obj
        for p in parents:
            target = target[p]
        del target[last]

    return change


def test_canonical_mutation_helper_reproduces_the_payload() -> None:
    assert _mutated(lambda obj: None) == PAYLOAD


BAD_PAYLOADS: list[tuple[str, bytes]] = [
    ("extra top-level field", _mutated(_set("comment", "x"))),
    ("extra match field", _mutated(_set("match.eqf", 4))),
    ("extra conditions field", _mutated(_set("conditions.fee", 0))),
    ("missing top-level field", _mutated(_drop("legal_basis"))),
    ("missing nullable field", _mutated(_drop("valid_until"))),
    ("missing match field", _mutated(_drop("match.national_code"))),
    ("missing conditions field", _mutated(_drop("conditions.aptitude_test"))),
    ("version as a string", _mutated(_set("version", "1"))),
    ("version as a float", _mutated(_set("version", 1.0))),
    ("eqf_min as a string", _mutated(_set("match.eqf_min", "4"))),
    ("eqf_min as a bool", _mutated(_set("match.eqf_min", True))),
    ("removed as an integer", _mutated(_set("removed", 0))),
    ("aptitude_test as an integer", _mutated(_set("conditions.aptitude_test", 0))),
    ("issued_at as a string", _mutated(_set("issued_at", "2025-01-01T00:00:00Z"))),
    ("issued_at negative", _mutated(_set("issued_at", -1))),
    ("valid_from as an integer", _mutated(_set("valid_from", 20250101))),
    ("valid_from not a date", _mutated(_set("valid_from", "2025-02-30"))),
    ("match as a list", _mutated(_set("match", []))),
    ("conditions null", _mutated(_set("conditions", None))),
    ("outcome unknown", _mutated(_set("outcome", "partial"))),
    ("outcome as an integer", _mutated(_set("outcome", 1))),
    ("local_code empty rather than null", _mutated(_set("local_code", ""))),
    ("invalid rule: eqf_min > eqf_max", _mutated(_set("match.eqf_min", 6))),
    ("invalid rule: origin == country", _mutated(_set("origin", "DE"))),
    # Not canonical:
    ("whitespace", json.dumps(json.loads(PAYLOAD), sort_keys=True, ensure_ascii=False).encode()),
    (
        "key order",
        json.dumps(
            dict(reversed(json.loads(PAYLOAD).items())), separators=(",", ":"), ensure_ascii=False
        ).encode(),
    ),
    (
        "\\u escapes",
        json.dumps(json.loads(PAYLOAD), sort_keys=True, separators=(",", ":")).encode(),
    ),
    ("untrimmed text", _mutated(_set("local_occupation", " Elektriker"))),
    ("sector not lower case", _mutated(_set("match.sector", "Energy"))),
    ("basic ISO date", _mutated(_set("valid_from", "20250101"))),
    ("not NFC", _mutated(_set("local_occupation", "Gebaüde".replace("ü", "u\u0308")))),
    ("trailing newline", PAYLOAD + b"\n"),
    # Not a JSON object:
    ("not JSON", b"{"),
    ("an array", b"[]"),
    ("not UTF-8", b'{"a":"\xff"}'),
    ("duplicate key", PAYLOAD[:-1] + b',"version":1}'),
    ("too large", b" " * (64 * 1024 + 1)),
]


@pytest.mark.parametrize("payload", [p for _, p in BAD_PAYLOADS], ids=[i for i, _ in BAD_PAYLOADS])
def test_decode_refuses(payload: bytes) -> None:
    with pytest.raises(ValidationError) as info:
        decode_rule(payload)
    assert info.value.field == "rule"


# -- tombstones ---------------------------------------------------------------------


def test_tombstone_is_the_next_version_removed() -> None:
    later = T0 + timedelta(days=30)
    gone = tombstone(CONDITIONAL, later)
    assert gone == replace(CONDITIONAL, version=2, removed=True, issued_at=later)
    assert decode_rule(encode_rule(gone)) == gone
    with pytest.raises(PreconditionError):
        tombstone(gone, later)


# -- signatures -------------------------------------------------------------------


def test_sign_and_verify() -> None:
    env = sign_rule(K1, BASE)
    assert env.payload_type == RULE_TYPE
    assert env.payload == PAYLOAD
    assert verify_rule(env, DE_KEYS, "DE") == BASE


def test_other_key_refused() -> None:
    env = sign_rule(K2, BASE)
    with pytest.raises(UntrustedSignerError):
        verify_rule(env, DE_KEYS, "DE")
    # A key of the same id that is not the signer's: the signature fails.
    forged = replace(env, key_id=K1.key_id)
    with pytest.raises(UntrustedSignerError):
        verify_rule(forged, DE_KEYS, "DE")


def test_tampered_payload_refused() -> None:
    env = sign_rule(K1, BASE)
    tampered = replace(env, payload=env.payload.replace(b'"full"', b'"not_recognised"'))
    assert tampered.payload != env.payload
    with pytest.raises(UntrustedSignerError):
        verify_rule(tampered, DE_KEYS, "DE")


def test_rule_of_another_country_refused() -> None:
    french = replace(BASE, country="FR", origin="DE")
    env = sign_rule(K1, french)
    assert verify_rule(env, DE_KEYS, "FR") == french
    with pytest.raises(UntrustedSignerError, match="rule of FR"):
        verify_rule(env, DE_KEYS, "DE")


def test_other_payload_type_refused() -> None:
    env = sign_envelope(K1, DESCRIPTOR_TYPE, PAYLOAD)
    with pytest.raises(UntrustedSignerError, match="payload type"):
        verify_rule(env, DE_KEYS, "DE")


def test_validly_signed_malformed_rule_refused() -> None:
    env = sign_envelope(K1, RULE_TYPE, b"{}")
    with pytest.raises(ValidationError):
        verify_rule(env, DE_KEYS, "DE")
