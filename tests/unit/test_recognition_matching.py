"""Which recognition rule decides: matching, specificity, conflicts, versions."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credfed.codelists import is_isco_code
from credfed.errors import PreconditionError
from credfed.models import Qualification
from credfed.recognition.matching import (
    check_conflicts,
    could_overlap,
    current,
    decide,
    matches,
    specificity,
)
from credfed.recognition.rules import Conditions, Outcome, Rule, RuleMatch, validate_rule

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ON = date(2025, 6, 1)
CODE = "FR-RNCP-12345"
Q = Qualification(
    national_code=CODE,
    title="Électricien",
    eqf_level=4,
    isco_code="7411",
    sector="energy",
)


def crit(
    rule_id: str,
    eqf: tuple[int, int] = (4, 4),
    isco: str | None = None,
    sector: str | None = None,
    **fields: object,
) -> Rule:
    """A criteria rule of DE for French qualifications, valid from 2020."""
    match = RuleMatch(eqf_min=eqf[0], eqf_max=eqf[1], isco_prefix=isco, sector=sector)
    return _rule(rule_id, match, **fields)


def code(rule_id: str, national_code: str = CODE, **fields: object) -> Rule:
    return _rule(rule_id, RuleMatch(national_code=national_code), **fields)


def _rule(rule_id: str, match: RuleMatch, **fields: object) -> Rule:
    rule = Rule(
        rule_id=rule_id,
        version=1,
        country="DE",
        origin="FR",
        match=match,
        outcome=Outcome.FULL,
        local_occupation="Elektroniker/in",
        local_code=None,
        conditions=Conditions(),
        legal_basis="BQFG § 4",
        valid_from=date(2020, 1, 1),
        valid_until=None,
        removed=False,
        issued_at=T0,
    )
    rule = replace(rule, **fields)  # type: ignore[arg-type]
    assert validate_rule(rule) == rule  # every rule here is a valid one
    return rule


def q(**fields: object) -> Qualification:
    return replace(Q, **fields)  # type: ignore[arg-type]


# -- decide ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    rules: list[Rule]
    expected: str | None
    qualification: Qualification = Q
    origin: str = "FR"
    on: date = ON


DECIDE = [
    Case(
        "national code beats the most specific criteria rule",
        [crit("c-7411-energy", isco="7411", sector="energy"), code("n-code")],
        "n-code",
    ),
    Case(
        "national code beats a criteria rule, whatever the rule ids",
        [code("z-code"), crit("a-crit", isco="7411", sector="energy")],
        "z-code",
    ),
    Case(
        "4-digit isco beats 3-digit",
        [crit("isco-3", isco="741"), crit("isco-4", isco="7411")],
        "isco-4",
    ),
    Case("3-digit isco beats none", [crit("isco-0"), crit("isco-3", isco="741")], "isco-3"),
    Case(
        "3-digit isco beats 1-digit",
        [crit("isco-1", isco="7"), crit("isco-3", isco="741")],
        "isco-3",
    ),
    Case(
        "sector given beats sector absent at equal isco length",
        [crit("s-none", isco="741"), crit("s-energy", isco="741", sector="energy")],
        "s-energy",
    ),
    Case(
        "a longer isco prefix beats a sector",
        [crit("i3-energy", isco="741", sector="energy"), crit("isco-4", isco="7411")],
        "isco-4",
    ),
    Case(
        "a sector beats a narrower EQF range",
        [crit("wide-energy", eqf=(1, 8), sector="energy"), crit("narrow", eqf=(4, 4))],
        "wide-energy",
    ),
    Case(
        "narrower EQF range beats wider",
        [crit("eqf-3-5", eqf=(3, 5)), crit("eqf-4-5", eqf=(4, 5)), crit("eqf-1-8", eqf=(1, 8))],
        "eqf-4-5",
    ),
    Case("EQF lower boundary inclusive", [crit("eqf-4-6", eqf=(4, 6))], "eqf-4-6"),
    Case("EQF upper boundary inclusive", [crit("eqf-2-4", eqf=(2, 4))], "eqf-2-4"),
    Case("EQF just above the range", [crit("eqf-5-6", eqf=(5, 6))], None),
    Case("EQF just below the range", [crit("eqf-1-3", eqf=(1, 3))], None),
    Case(
        "ended before the day: not matched",
        [crit("ended", valid_until=date(2025, 5, 31)), crit("i0-wide", eqf=(1, 8))],
        "i0-wide",
    ),
    Case("starts after the day: not matched", [crit("future", valid_from=date(2025, 6, 2))], None),
    Case(
        "validity bounds inclusive",
        [crit("one-day", valid_from=ON, valid_until=ON)],
        "one-day",
    ),
    Case("other origin not matched", [crit("isco-0", origin="PL")], None),
    Case("asked for another origin", [crit("isco-0")], None, origin="PL"),
    Case(
        "removed rule not matched: the less specific one decides",
        [
            crit("isco-4", isco="7411"),
            crit("isco-4", isco="7411", version=2, removed=True),
            crit("isco-0"),
        ],
        "isco-0",
    ),
    Case("a lone tombstone matches nothing", [crit("isco-4", version=2, removed=True)], None),
    Case(
        "the newest version decides: it no longer covers the qualification",
        [crit("moved", isco="7411"), crit("moved", isco="7412", version=2)],
        None,
    ),
    Case(
        "the newest version decides: it now covers the qualification",
        [crit("moved", isco="7412"), crit("moved", isco="7411", version=2)],
        "moved",
    ),
    Case("no rule at all", [], None),
    Case("isco outside the prefix", [crit("isco-3", isco="742")], None),
    Case("other sector", [crit("health", sector="healthcare")], None),
    Case("other national code", [code("n-code", national_code="FR-RNCP-99999")], None),
    Case("national code is case-sensitive", [code("n-code", national_code=CODE.lower())], None),
    Case(
        "national code compared after strip",
        [code("n-code")],
        "n-code",
        qualification=q(national_code=f" {CODE} "),
    ),
    Case(
        "a tie (which check_conflicts refuses) goes to the lowest rule id",
        [crit("tie-b", isco="741"), crit("tie-a", isco="741"), crit("tie-c", isco="741")],
        "tie-a",
    ),
]


@pytest.mark.parametrize("case", DECIDE, ids=[c.id for c in DECIDE])
def test_decide(case: Case) -> None:
    for ordering in (case.rules, case.rules[::-1]):
        got = decide(ordering, case.origin, case.qualification, case.on)
        assert (got.rule_id if got else None) == case.expected


def test_decide_returns_the_rule_itself() -> None:
    newest = crit("isco-4", isco="7411", version=3, outcome=Outcome.NOT_RECOGNISED)
    assert decide([crit("isco-4", isco="7411"), newest], "FR", Q, ON) == newest


def test_matches_ignores_removed_rules_directly() -> None:
    assert matches(crit("isco-0"), "FR", Q, ON)
    assert not matches(crit("isco-0", removed=True), "FR", Q, ON)


def test_specificity_examples() -> None:
    assert specificity(code("n-rule")) == (1, 0, 0, 0)
    assert specificity(crit("c-rule", eqf=(3, 5), isco="7411")) == (0, 4, 0, -2)
    assert specificity(crit("c-rule", eqf=(4, 5), isco="741", sector="energy")) == (0, 3, 1, -1)
    assert specificity(crit("c-rule", eqf=(1, 8))) == (0, 0, 0, -7)


# -- conflicts ------------------------------------------------------------------------


CONFLICTS: list[tuple[str, Rule, list[Rule], str | None]] = [
    (
        "equal specificity, overlapping EQF ranges",
        crit("new", eqf=(4, 5), isco="741"),
        [crit("old", eqf=(5, 6), isco="741")],
        "old",
    ),
    (
        "equal specificity, isco prefixes neither of which extends the other",
        crit("new", isco="741"),
        [crit("old", isco="742")],
        None,
    ),
    (
        "equal specificity, disjoint EQF ranges",
        crit("new", eqf=(4, 5), isco="741"),
        [crit("old", eqf=(6, 7), isco="741")],
        None,
    ),
    (
        "equal specificity, different sectors",
        crit("new", sector="energy"),
        [crit("old", sector="construction")],
        None,
    ),
    (
        "disjoint validity periods",
        crit("new", valid_from=date(2025, 1, 1)),
        [crit("old", valid_until=date(2024, 12, 31))],
        None,
    ),
    (
        "validity periods sharing one day",
        crit("new", valid_from=date(2024, 12, 31)),
        [crit("old", valid_until=date(2024, 12, 31))],
        "old",
    ),
    ("different origins", crit("new"), [crit("old", origin="PL")], None),
    ("different deciding countries", crit("new"), [crit("old", country="AT")], None),
    ("same rule id: a new version", crit("same", version=2), [crit("same")], None),
    (
        "different specificity",
        crit("new", isco="7411"),
        [crit("old", isco="741"), crit("older", eqf=(1, 8))],
        None,
    ),
    ("equal national codes", code("new"), [code("old")], "old"),
    ("different national codes", code("new"), [code("old", national_code="FR-RNCP-99999")], None),
    ("national code vs criteria", code("new"), [crit("old", isco="7411", sector="energy")], None),
    ("removed existing rule", crit("new"), [crit("old", version=2, removed=True)], None),
    ("the new rule is a tombstone", crit("new", version=2, removed=True), [crit("old")], None),
    (
        "the conflicting rule is found among others",
        crit("new", eqf=(4, 5), isco="741", sector="energy"),
        [
            crit("a-rule", isco="7411"),
            crit("b-rule", isco="741", sector="energy", eqf=(3, 4)),
            code("c-rule"),
        ],
        "b-rule",
    ),
]


@pytest.mark.parametrize(
    ("new", "existing", "conflict"),
    [(n, e, c) for _, n, e, c in CONFLICTS],
    ids=[i for i, _, _, _ in CONFLICTS],
)
def test_check_conflicts(new: Rule, existing: list[Rule], conflict: str | None) -> None:
    if conflict is None:
        check_conflicts(new, existing)
        return
    with pytest.raises(PreconditionError, match="equal specificity") as info:
        check_conflicts(new, existing)
    assert f"rule {conflict}" in str(info.value)


def test_could_overlap_is_symmetric_on_the_table() -> None:
    for _, new, existing, _ in CONFLICTS:
        for other in existing:
            assert could_overlap(new, other) == could_overlap(other, new)


def test_national_code_and_criteria_rules_overlap() -> None:
    assert could_overlap(code("n-rule"), crit("c-rule", isco="2221", sector="healthcare"))


# -- versions and tombstones ------------------------------------------------------------


def test_current_keeps_the_highest_version_and_drops_tombstones() -> None:
    a1, a2 = crit("a-rule"), crit("a-rule", version=2, eqf=(3, 4))
    b1 = crit("b-rule")
    b2 = replace(b1, version=2, removed=True)
    c1, c2, c3 = crit("c-rule"), crit("c-rule", version=2, removed=True), crit("c-rule", version=3)
    d1 = crit("d-rule")
    foreign = crit("a-rule", country="AT", version=7)
    history = [a1, a2, a2, b1, b2, c1, c2, c3, d1, d1, foreign]
    expected = [foreign, a2, c3, d1]  # sorted by (country, rule_id)
    for seed in range(10):
        shuffled = history[:]
        random.Random(seed).shuffle(shuffled)
        assert current(shuffled) == expected
    assert current([]) == []
    assert current([b2, b1]) == []


def test_current_is_deterministic_on_conflicting_copies_of_a_version() -> None:
    # An honest node never signs two rules with one version; if a partner did,
    # the tombstone wins, then the later issued_at.
    live = crit("x-rule", version=2)
    dead = replace(live, removed=True)
    later = replace(live, issued_at=T0 + timedelta(days=1), local_occupation="Elektriker")
    assert current([live, dead]) == current([dead, live]) == []
    assert current([live, later]) == current([later, live]) == [later]


# -- property: the winner is the unique most specific match -----------------------------

_PREFIXES = ["7", "74", "741", "7411", "7412", "742", "7421", "2", "22", "2221"]
_UNIT_GROUPS = ["7411", "7412", "7421", "2221"]
_SECTORS = ["energy", "construction"]
_CODES = ["FR-A", "FR-B", "FR-C"]
# Mostly days on which many rules are in force; a few before and after all.
_DAYS = [
    date(2019, 6, 1),
    date(2021, 6, 1),
    date(2023, 1, 1),
    date(2024, 6, 1),
    date(2024, 6, 1),
    date(2027, 1, 1),
]
_ORIGINS = ["FR", "FR", "FR", "PL"]


def test_property_vocabulary_is_real_isco() -> None:
    assert all(is_isco_code(c) for c in _PREFIXES + _UNIT_GROUPS)


@st.composite
def candidate(draw: st.DrawFn, index: int) -> Rule:
    valid_from = draw(st.sampled_from([date(2020, 1, 1), date(2023, 1, 1)]))
    valid_until = draw(
        st.sampled_from([None, date(2022, 12, 31), date(2025, 12, 31)]).filter(
            lambda d: d is None or d >= valid_from
        )
    )
    fields: dict[str, object] = {
        "origin": draw(st.sampled_from(_ORIGINS)),
        "valid_from": valid_from,
        "valid_until": valid_until,
    }
    rule_id = f"rule-{index:02d}"
    if draw(st.integers(0, 4)) == 0:
        return code(rule_id, draw(st.sampled_from(_CODES)), **fields)
    low = draw(st.integers(1, 8))
    return crit(
        rule_id,
        eqf=(low, draw(st.integers(low, 8))),
        isco=draw(st.none() | st.sampled_from(_PREFIXES)),
        sector=draw(st.none() | st.sampled_from(_SECTORS)),
        **fields,
    )


@st.composite
def accepted_rules(draw: st.DrawFn) -> list[Rule]:
    """Rules added one by one, each kept only if check_conflicts lets it in."""
    accepted: list[Rule] = []
    for index in range(draw(st.integers(0, 16))):
        rule = draw(candidate(index))
        try:
            check_conflicts(rule, accepted)
        except PreconditionError:
            continue
        accepted.append(rule)
    return accepted


@st.composite
def qualifications(draw: st.DrawFn, rules: list[Rule]) -> Qualification:
    """Any qualification, or (half the time) one that a random rule covers,
    so that several rules often compete."""
    q = Qualification(
        national_code=draw(st.sampled_from(_CODES)),
        title="Qualification",
        eqf_level=draw(st.integers(1, 8)),
        isco_code=draw(st.sampled_from(_UNIT_GROUPS)),
        sector=draw(st.sampled_from(_SECTORS)),
    )
    if not rules or draw(st.booleans()):
        return q
    m = draw(st.sampled_from(rules)).match
    if m.national_code is not None:
        return replace(q, national_code=m.national_code)
    assert m.eqf_min is not None and m.eqf_max is not None
    groups = [g for g in _UNIT_GROUPS if g.startswith(m.isco_prefix or "")]
    return replace(
        q,
        eqf_level=draw(st.integers(m.eqf_min, m.eqf_max)),
        isco_code=draw(st.sampled_from(groups)),
        sector=m.sector or q.sector,
    )


@settings(max_examples=200)
@given(accepted_rules(), st.data())
def test_decide_picks_the_unique_most_specific_match(
    rules: list[Rule], data: st.DataObject
) -> None:
    qualification = data.draw(qualifications(rules), label="qualification")
    origin = data.draw(st.sampled_from(_ORIGINS), label="origin")
    on = data.draw(st.sampled_from(_DAYS), label="on")
    matching = [r for r in rules if matches(r, origin, qualification, on)]
    got = decide(rules, origin, qualification, on)
    if not matching:
        assert got is None
        return
    assert got is not None
    assert matches(got, origin, qualification, on)
    for other in matching:
        assert specificity(got) >= specificity(other)
        if other is not got:
            # Stronger: check_conflicts leaves no ties among matching rules.
            assert specificity(got) > specificity(other)
    shuffled = data.draw(st.permutations(rules), label="shuffled")
    assert decide(shuffled, origin, qualification, on) == got
