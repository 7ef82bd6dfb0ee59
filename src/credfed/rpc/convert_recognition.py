"""Conversions between recognition messages and domain objects."""

from __future__ import annotations

from datetime import UTC, date, datetime

from credfed import validation
from credfed.errors import ValidationError
from credfed.recognition.rules import Conditions, Outcome, Rule, RuleMatch
from credfed.recognition.service import Decision, DecisionOutcome, SignedRule
from credfed.rpc.convert import bounded, envelope
from credfed.v1 import recognition_pb2 as rc

OUTCOME_PB: dict[DecisionOutcome, rc.RecognitionOutcome] = {
    DecisionOutcome.FULL: rc.RECOGNITION_OUTCOME_FULL,
    DecisionOutcome.CONDITIONAL: rc.RECOGNITION_OUTCOME_CONDITIONAL,
    DecisionOutcome.NOT_RECOGNISED: rc.RECOGNITION_OUTCOME_NOT_RECOGNISED,
    DecisionOutcome.NO_RULE: rc.RECOGNITION_OUTCOME_NO_RULE,
    DecisionOutcome.DOMESTIC: rc.RECOGNITION_OUTCOME_DOMESTIC,
}
_RULE_OUTCOMES: dict[int, Outcome] = {
    rc.RECOGNITION_OUTCOME_FULL: Outcome.FULL,
    rc.RECOGNITION_OUTCOME_CONDITIONAL: Outcome.CONDITIONAL,
    rc.RECOGNITION_OUTCOME_NOT_RECOGNISED: Outcome.NOT_RECOGNISED,
}
#: Only a placeholder: the service sets the real time when it signs.
_UNSIGNED = datetime(1970, 1, 1, tzinfo=UTC)


def conditions_pb(c: Conditions) -> rc.CompensationMeasures:
    return rc.CompensationMeasures(
        aptitude_test=c.aptitude_test,
        adaptation_period_months=c.adaptation_period_months,
        language_level=c.language_level or "",
        supervised_practice_months=c.supervised_practice_months,
    )


def rule_pb(rule: Rule) -> rc.RecognitionRule:
    m = rule.match
    return rc.RecognitionRule(
        rule_id=rule.rule_id,
        version=rule.version,
        country=rule.country,
        origin=rule.origin,
        national_code=m.national_code or "",
        eqf_min=m.eqf_min or 0,
        eqf_max=m.eqf_max or 0,
        isco_prefix=m.isco_prefix or "",
        sector=m.sector or "",
        outcome=OUTCOME_PB[DecisionOutcome(rule.outcome.value)],
        local_occupation=rule.local_occupation,
        local_code=rule.local_code or "",
        conditions=conditions_pb(rule.conditions),
        legal_basis=rule.legal_basis,
        valid_from=rule.valid_from.isoformat(),
        valid_until=rule.valid_until.isoformat() if rule.valid_until else "",
        removed=rule.removed,
    )


def signed_rule_pb(signed: SignedRule) -> rc.RecognitionRule:
    return rule_pb(signed.rule)


def decision_pb(d: Decision) -> rc.RecognitionDecision:
    out = rc.RecognitionDecision(country=d.country, outcome=OUTCOME_PB[d.outcome])
    if d.rule is not None:
        out.rule_id = d.rule.rule_id
        out.rule_version = d.rule.version
        out.local_occupation = d.rule.local_occupation
        out.local_code = d.rule.local_code or ""
        out.conditions.CopyFrom(conditions_pb(d.rule.conditions))
        out.legal_basis = d.rule.legal_basis
    if d.signed_rule is not None:
        out.signed_rule.CopyFrom(envelope(d.signed_rule))
    return out


def rule_draft(pb: rc.RecognitionRule, prefix: str, country: str) -> Rule:
    """A rule as an admin sent it; the service assigns version and time and
    validates everything (fields named ``rule.…``)."""
    outcome = _RULE_OUTCOMES.get(pb.outcome)
    if outcome is None:
        raise ValidationError(f"{prefix}.outcome", "must be FULL, CONDITIONAL or NOT_RECOGNISED")
    text = {
        name: bounded(getattr(pb, name), f"{prefix}.{name}").strip()
        for name in (
            "rule_id", "origin", "national_code", "isco_prefix", "sector",
            "local_occupation", "local_code", "legal_basis",
        )
    }  # fmt: skip
    c = pb.conditions
    language = bounded(c.language_level, f"{prefix}.conditions.language_level").strip()
    return Rule(
        rule_id=text["rule_id"],
        version=1,
        country=country,
        origin=text["origin"].upper(),
        match=RuleMatch(
            national_code=text["national_code"] or None,
            eqf_min=pb.eqf_min or None,
            eqf_max=pb.eqf_max or None,
            isco_prefix=text["isco_prefix"] or None,
            sector=text["sector"] or None,
        ),
        outcome=outcome,
        local_occupation=text["local_occupation"],
        local_code=text["local_code"] or None,
        conditions=Conditions(
            aptitude_test=c.aptitude_test,
            adaptation_period_months=c.adaptation_period_months,
            language_level=language.upper() or None,
            supervised_practice_months=c.supervised_practice_months,
        ),
        legal_basis=text["legal_basis"],
        valid_from=_required_date(pb.valid_from, f"{prefix}.valid_from"),
        valid_until=validation.iso_date(
            bounded(pb.valid_until, f"{prefix}.valid_until"),
            f"{prefix}.valid_until",
            required=False,
        ),
        removed=False,
        issued_at=_UNSIGNED,
    )


def _required_date(value: str, field: str) -> date:
    parsed = validation.iso_date(bounded(value, field), field, required=True)
    assert parsed is not None  # required=True raised otherwise
    return parsed


def pb_field(field: str) -> str:
    """The request's name for a field the domain reports: the message is
    flat where the domain nests the match criteria."""
    return field.replace(".match.", ".")
