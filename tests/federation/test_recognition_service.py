"""The recognition service in process, over a real SQLite file and real
Ed25519 keys: this node's own rules (versions, tombstones, conflicts, all or
nothing imports), decisions, partners' rules (kept only when signed by the
pinned keys of their country; newest version wins), ``where`` and a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from credfed.crypto.keys import SigningKey, VerifyingKey
from credfed.errors import NotFoundError, PreconditionError, ValidationError
from credfed.models import Qualification
from credfed.recognition.rules import (
    Conditions,
    Outcome,
    Rule,
    RuleMatch,
    decode_rule,
    sign_rule,
    verify_rule,
)
from credfed.recognition.service import DecisionOutcome, Recognition
from credfed.storage.sqlite import SqliteStore

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
ON = date(2025, 6, 1)
#: A placeholder the service must replace with its clock's time.
UNSIGNED = datetime(1970, 1, 1, tzinfo=UTC)

FR_KEY = SigningKey.generate()
PL_KEY = SigningKey.generate()
AT_KEY = SigningKey.generate()
OUTSIDER = SigningKey.generate()
PINNED: dict[str, dict[str, VerifyingKey]] = {
    "PL": {PL_KEY.key_id: PL_KEY.verifying_key()},
    "AT": {AT_KEY.key_id: AT_KEY.verifying_key()},
}
#: A German electrician's qualification (what a DE credential carries).
ELECTRICIAN = Qualification(
    national_code="DE-HWK-EGT-2019",
    title="Elektroniker/in",
    eqf_level=4,
    isco_code="7411",
    sector="energy",
)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def keys_of(country: str) -> Mapping[str, VerifyingKey] | None:
    return PINNED.get(country)


def draft(
    rule_id: str,
    *,
    origin: str = "DE",
    eqf: tuple[int, int] = (4, 4),
    isco: str | None = "7411",
    sector: str | None = "energy",
    national_code: str | None = None,
    **fields: object,
) -> Rule:
    """A rule as an operator would write it; the service sets country,
    version, removed and issued_at."""
    match = (
        RuleMatch(national_code=national_code)
        if national_code is not None
        else RuleMatch(eqf_min=eqf[0], eqf_max=eqf[1], isco_prefix=isco, sector=sector)
    )
    rule = Rule(
        rule_id=rule_id,
        version=1,
        country="FR",
        origin=origin,
        match=match,
        outcome=Outcome.FULL,
        local_occupation="Électricien",
        local_code=None,
        conditions=Conditions(),
        legal_basis="Directive 2005/36/EC, art. 13",
        valid_from=date(2024, 1, 1),
        valid_until=None,
        removed=False,
        issued_at=UNSIGNED,
    )
    return replace(rule, **fields)  # type: ignore[arg-type]


def partner_rule(
    country: str, rule_id: str, version: int = 1, *, removed: bool = False, **fields: object
) -> Rule:
    """A partner's signed-ready rule for German qualifications."""
    return replace(
        draft(rule_id, **fields),  # type: ignore[arg-type]
        country=country,
        version=version,
        removed=removed,
        issued_at=T0 + timedelta(minutes=version),
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "fr.sqlite"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(db)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def fr(store: SqliteStore, clock: FakeClock) -> Recognition:
    service = Recognition(store, FR_KEY, "FR", clock, keys_of)
    await service.load()
    return service


def stored_versions(db: Path, country: str, rule_id: str) -> list[int]:
    """Every version of a rule in the database file, read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT version FROM recognition_rules WHERE country = ? AND rule_id = ?"
            " ORDER BY version",
            (country, rule_id),
        ).fetchall()
    finally:
        conn.close()
    return [int(r[0]) for r in rows]


def served_versions(service: Recognition, country: str) -> dict[str, tuple[int, bool]]:
    rules = [decode_rule(e.payload) for e in service.served(country)]
    return {r.rule_id: (r.version, r.removed) for r in rules}


# -- this node's own rules -----------------------------------------------------------------


async def test_add_assigns_versions_signs_and_keeps_history(
    fr: Recognition, store: SqliteStore, clock: FakeClock, db: Path
) -> None:
    # Whatever the draft says, the service sets country, version, removed, time.
    first = await fr.add(replace(draft("de-electricians"), country="ZZ", version=42, removed=True))
    assert (first.rule.version, first.rule.country) == (1, "FR")
    assert first.rule.removed is False
    assert first.rule.issued_at == T0
    assert first.envelope.key_id == FR_KEY.key_id

    clock.advance(timedelta(days=1))
    second = await fr.add(draft("de-electricians", local_occupation="Électricien (BR)"))
    assert second.rule.version == 2
    assert second.rule.issued_at == T0 + timedelta(days=1)
    assert [(s.rule.rule_id, s.rule.version) for s in fr.rules()] == [("de-electricians", 2)]

    served = fr.served("FR")
    assert len(served) == 1
    checked = verify_rule(served[0], {FR_KEY.key_id: FR_KEY.verifying_key()}, "FR")
    assert checked == second.rule
    assert checked.local_occupation == "Électricien (BR)"

    # The store answers only the newest; the older version is still in the file.
    current = await store.current_recognition_rules("FR")
    assert [(s.rule_id, s.version) for s in current] == [("de-electricians", 2)]
    assert stored_versions(db, "FR", "de-electricians") == [1, 2]
    assert await store.recognition_countries() == ["FR"]


async def test_remove_signs_a_tombstone_and_readding_continues_versions(
    fr: Recognition, db: Path
) -> None:
    await fr.add(draft("de-electricians"))
    assert fr.decide("DE", ELECTRICIAN, ON).outcome is DecisionOutcome.FULL

    gone = await fr.remove("de-electricians")
    assert (gone.rule.version, gone.rule.removed) == (2, True)
    assert fr.rules() == []
    assert fr.decide("DE", ELECTRICIAN, ON).outcome is DecisionOutcome.NO_RULE
    assert served_versions(fr, "FR") == {"de-electricians": (2, True)}
    tomb = verify_rule(fr.served("FR")[0], {FR_KEY.key_id: FR_KEY.verifying_key()}, "FR")
    assert tomb.removed

    with pytest.raises(NotFoundError):
        await fr.remove("no-such-rule")
    with pytest.raises(NotFoundError):
        await fr.remove("de-electricians")  # already withdrawn

    back = await fr.add(draft("de-electricians"))
    assert back.rule.version == 3 and not back.rule.removed
    assert fr.decide("DE", ELECTRICIAN, ON).rule == back.rule
    assert stored_versions(db, "FR", "de-electricians") == [1, 2, 3]


async def test_equal_specificity_conflict_is_refused_naming_the_other_rule(
    fr: Recognition, db: Path
) -> None:
    await fr.add(draft("de-electricians"))
    with pytest.raises(
        PreconditionError, match=r"rule de-electricians-2 .* rule de-electricians\b"
    ):
        await fr.add(draft("de-electricians-2"))
    # Equal specificity (ISCO prefix length, sector, EQF width) and overlapping
    # without being the same criteria: EQF 3-4 and 4-5 share level 4.
    await fr.add(draft("de-eqf-3-4", isco="7412", eqf=(3, 4)))
    with pytest.raises(PreconditionError, match="de-eqf-3-4"):
        await fr.add(draft("de-eqf-4-5", isco="7412", eqf=(4, 5)))
    for refused in ("de-electricians-2", "de-eqf-4-5"):
        assert stored_versions(db, "FR", refused) == []
    # More specific, less specific, disjoint EQF range, another origin, or
    # disjoint validity: fine.
    await fr.add(draft("de-egt-2019", national_code="DE-HWK-EGT-2019"))
    await fr.add(draft("de-electrical", isco="741"))
    await fr.add(draft("de-electricians-5", eqf=(5, 5)))
    await fr.add(draft("pl-electricians", origin="PL"))
    await fr.add(draft("at-2024", origin="AT", valid_until=date(2024, 12, 31)))
    await fr.add(draft("at-2025", origin="AT", valid_from=date(2025, 1, 1)))
    # A new version of a rule never conflicts with its predecessor.
    assert (await fr.add(draft("de-electricians", local_code="X-1"))).rule.version == 2
    # A withdrawn rule conflicts with nothing.
    await fr.remove("de-electricians")
    assert (await fr.add(draft("de-electricians-2"))).rule.version == 1
    assert sorted(s.rule.rule_id for s in fr.rules()) == [
        "at-2024",
        "at-2025",
        "de-egt-2019",
        "de-electrical",
        "de-electricians-2",
        "de-electricians-5",
        "de-eqf-3-4",
        "pl-electricians",
    ]


async def test_add_many_is_all_or_nothing(fr: Recognition, db: Path) -> None:
    await fr.add(draft("pl-electricians", origin="PL"))
    before = fr.served("FR")

    # Two drafts of one import that tie with each other.
    with pytest.raises(PreconditionError, match="de-a"):
        await fr.add_many([draft("de-a"), draft("de-b")])
    # A validation error at index 1 names the draft; nothing is stored.
    with pytest.raises(ValidationError) as invalid:
        await fr.add_many(
            [draft("de-fine", origin="AT"), draft("de-bad", eqf=(5, 3)), draft("de-later")]
        )
    assert invalid.value.field.startswith("rules[1].")
    assert invalid.value.field == "rules[1].match.eqf_max"
    # The same rule id twice in one import.
    with pytest.raises(ValidationError) as twice:
        await fr.add_many([draft("de-same"), draft("de-same", origin="AT")])
    assert twice.value.field == "rules"

    assert fr.served("FR") == before
    for rule_id in ("de-a", "de-b", "de-fine", "de-bad", "de-later", "de-same"):
        assert stored_versions(db, "FR", rule_id) == [], rule_id

    added = await fr.add_many(
        [draft("de-a"), draft("de-b", eqf=(3, 5)), draft("de-c", national_code="DE-X-1")]
    )
    assert [(s.rule.rule_id, s.rule.version) for s in added] == [
        ("de-a", 1),
        ("de-b", 1),
        ("de-c", 1),
    ]


# -- decisions ---------------------------------------------------------------------------------


def rule_id_on(service: Recognition, q: Qualification, on: date) -> str | None:
    """The id of the rule of this node deciding for ``q`` of DE on ``on``."""
    rule = service.decide("DE", q, on).rule
    return None if rule is None else rule.rule_id


async def test_decide_domestic_no_rule_most_specific_and_validity(
    fr: Recognition, clock: FakeClock
) -> None:
    own = replace(ELECTRICIAN, national_code="FR-RNCP-1")
    assert fr.decide("FR", own, ON).outcome is DecisionOutcome.DOMESTIC
    assert fr.decide("DE", ELECTRICIAN, ON).outcome is DecisionOutcome.NO_RULE

    await fr.add(draft("de-level-4", isco=None, sector=None, outcome=Outcome.NOT_RECOGNISED))
    await fr.add(
        draft(
            "de-electrical",
            isco="741",
            sector=None,
            eqf=(3, 5),
            outcome=Outcome.CONDITIONAL,
            conditions=Conditions(aptitude_test=True),
        )
    )
    assert rule_id_on(fr, ELECTRICIAN, ON) == "de-electrical"  # ISCO 741 beats no ISCO
    assert fr.decide("DE", ELECTRICIAN, ON).outcome is DecisionOutcome.CONDITIONAL
    await fr.add(
        draft("de-electricians", valid_from=date(2025, 1, 1), valid_until=date(2025, 12, 31))
    )
    decision = fr.decide("DE", ELECTRICIAN, clock().date())
    assert decision.outcome is DecisionOutcome.FULL
    assert decision.rule is not None and decision.rule.rule_id == "de-electricians"
    assert decision.signed_rule is not None
    assert (
        verify_rule(decision.signed_rule, {FR_KEY.key_id: FR_KEY.verifying_key()}, "FR")
        == decision.rule
    )

    # Validity, both ends inclusive: outside it the less specific rule decides.
    assert rule_id_on(fr, ELECTRICIAN, date(2024, 12, 31)) == "de-electrical"
    assert rule_id_on(fr, ELECTRICIAN, date(2025, 1, 1)) == "de-electricians"
    assert rule_id_on(fr, ELECTRICIAN, date(2025, 12, 31)) == "de-electricians"
    assert rule_id_on(fr, ELECTRICIAN, date(2026, 1, 1)) == "de-electrical"
    assert rule_id_on(fr, ELECTRICIAN, date(2023, 12, 31)) is None  # before every valid_from
    clock.advance(timedelta(days=365))  # 2026-03-01
    assert rule_id_on(fr, ELECTRICIAN, clock().date()) == "de-electrical"

    # A national-code rule beats every criteria rule and matches only its code.
    await fr.add(
        draft(
            "de-egt-2019",
            national_code="DE-HWK-EGT-2019",
            outcome=Outcome.NOT_RECOGNISED,
            local_occupation="",
        )
    )
    assert rule_id_on(fr, ELECTRICIAN, ON) == "de-egt-2019"
    assert fr.decide("DE", ELECTRICIAN, ON).outcome is DecisionOutcome.NOT_RECOGNISED
    nurse = Qualification("DE-OTHER", "Pflegefachfrau", 4, "2221", "healthcare")
    assert rule_id_on(fr, nurse, ON) == "de-level-4"
    assert fr.decide("DE", replace(nurse, eqf_level=7), ON).outcome is DecisionOutcome.NO_RULE
    # Rules cover one origin: the same qualification from Poland has none.
    assert fr.decide("PL", ELECTRICIAN, ON).outcome is DecisionOutcome.NO_RULE


# -- partners' rules -------------------------------------------------------------------------


async def test_accept_keeps_rules_signed_by_the_partners_pinned_key(
    fr: Recognition, store: SqliteStore
) -> None:
    rule = partner_rule("PL", "de-electricians-pl", local_occupation="Elektryk")
    assert await fr.accept("PL", [sign_rule(PL_KEY, rule)]) == 1
    assert served_versions(fr, "PL") == {"de-electricians-pl": (1, False)}
    assert fr.rules() == []  # partners' rules are not this node's own
    by_country = {d.country: d for d in fr.where("DE", ELECTRICIAN, ON)}
    assert by_country["PL"].outcome is DecisionOutcome.FULL
    assert by_country["PL"].rule == rule
    assert await store.recognition_countries() == ["PL"]


async def test_accept_refuses_foreign_signers_and_other_countries_rules(
    fr: Recognition, db: Path
) -> None:
    good = sign_rule(PL_KEY, partner_rule("PL", "de-good"))
    forged = sign_rule(OUTSIDER, partner_rule("PL", "de-forged", isco="7412"))
    by_at = sign_rule(AT_KEY, partner_rule("PL", "de-by-at", isco="7413"))  # a key, not PL's
    german = sign_rule(PL_KEY, partner_rule("DE", "de-german", origin="FR"))
    with capture_logs() as logs:
        kept = await fr.accept("PL", [forged, good, by_at, german])
    assert kept == 1
    assert set(served_versions(fr, "PL")) == {"de-good"}
    for rule_id in ("de-forged", "de-by-at"):
        assert stored_versions(db, "PL", rule_id) == []
    assert stored_versions(db, "DE", "de-german") == []
    assert stored_versions(db, "PL", "de-german") == []
    refused = [e for e in logs if e["event"] == "recognition.rule_refused"]
    assert len(refused) == 3
    assert all(e["log_level"] == "warning" and e["country"] == "PL" for e in refused)
    assert any("DE" in str(e["reason"]) for e in refused)
    # Served as DE's, the German rule is not taken either: DE is not pinned.
    assert await fr.accept("DE", [german]) == 0
    assert fr.served("DE") == []


async def test_accept_newest_version_wins_and_replays_add_nothing(
    fr: Recognition, db: Path
) -> None:
    v1 = sign_rule(PL_KEY, partner_rule("PL", "de-electricians-pl"))
    v2 = sign_rule(
        PL_KEY,
        partner_rule(
            "PL",
            "de-electricians-pl",
            2,
            outcome=Outcome.CONDITIONAL,
            conditions=Conditions(language_level="B2"),
        ),
    )
    assert await fr.accept("PL", [v2]) == 1
    await fr.accept("PL", [v1])  # late: kept as history, never current
    assert served_versions(fr, "PL") == {"de-electricians-pl": (2, False)}
    assert fr.served("PL") == [v2]
    pl = {d.country: d for d in fr.where("DE", ELECTRICIAN, ON)}["PL"]
    assert pl.outcome is DecisionOutcome.CONDITIONAL and pl.signed_rule == v2

    assert await fr.accept("PL", [v1, v2]) == 0
    assert await fr.accept("PL", [v2, v2]) == 0
    assert stored_versions(db, "PL", "de-electricians-pl") == [1, 2]

    # A partner's tombstone withdraws its rule.
    v3 = sign_rule(PL_KEY, partner_rule("PL", "de-electricians-pl", 3, removed=True))
    assert await fr.accept("PL", [v3]) == 1
    assert served_versions(fr, "PL") == {"de-electricians-pl": (3, True)}
    pl = {d.country: d for d in fr.where("DE", ELECTRICIAN, ON)}["PL"]
    assert pl.outcome is DecisionOutcome.NO_RULE
    assert await fr.accept("PL", [v2]) == 0
    assert served_versions(fr, "PL") == {"de-electricians-pl": (3, True)}


async def test_accept_takes_nothing_for_our_own_or_an_unpinned_country(
    fr: Recognition, db: Path
) -> None:
    # Even validly signed by our own key, "our" rules come only from add().
    ours = sign_rule(FR_KEY, partner_rule("FR", "de-smuggled"))
    assert await fr.accept("FR", [ours]) == 0
    assert fr.rules() == [] and fr.served("FR") == []
    assert stored_versions(db, "FR", "de-smuggled") == []

    cz_key = SigningKey.generate()
    cz = sign_rule(cz_key, partner_rule("CZ", "de-cz"))
    assert await fr.accept("CZ", [cz]) == 0
    assert fr.served("CZ") == []
    assert stored_versions(db, "CZ", "de-cz") == []


# -- where, restart --------------------------------------------------------------------------


async def test_where_own_decision_first_then_partners_by_country(fr: Recognition) -> None:
    await fr.add(draft("de-electricians", outcome=Outcome.NOT_RECOGNISED, local_occupation=""))
    await fr.accept("PL", [sign_rule(PL_KEY, partner_rule("PL", "de-pl"))])
    await fr.accept(
        "AT",
        [sign_rule(AT_KEY, partner_rule("AT", "de-at", national_code="DE-OTHER-CODE"))],
    )
    decisions = fr.where("DE", ELECTRICIAN, ON)
    assert [(d.country, d.outcome) for d in decisions] == [
        ("FR", DecisionOutcome.NOT_RECOGNISED),
        ("AT", DecisionOutcome.NO_RULE),
        ("DE", DecisionOutcome.DOMESTIC),
        ("PL", DecisionOutcome.FULL),
    ]
    # A French qualification: domestic here, first; partners after.
    own = fr.where("FR", ELECTRICIAN, ON)
    assert [(d.country, d.outcome) for d in own] == [
        ("FR", DecisionOutcome.DOMESTIC),
        ("AT", DecisionOutcome.NO_RULE),
        ("PL", DecisionOutcome.NO_RULE),
    ]
    # A Czech one: the origin is listed as domestic even with no rules of its own.
    cz = fr.where("CZ", ELECTRICIAN, ON)
    assert [d.country for d in cz] == ["FR", "AT", "CZ", "PL"]
    assert cz[2].outcome is DecisionOutcome.DOMESTIC


async def test_restart_loads_the_same_rules_and_partner_rules(
    fr: Recognition, store: SqliteStore, clock: FakeClock, db: Path
) -> None:
    await fr.add_many([draft("de-electricians"), draft("pl-electricians", origin="PL")])
    await fr.add(draft("de-electricians", local_occupation="Électricien (BR)"))
    await fr.add(draft("at-gone", origin="AT"))
    await fr.remove("at-gone")
    await fr.accept("PL", [sign_rule(PL_KEY, partner_rule("PL", "de-pl"))])
    before_rules = fr.rules()
    before_fr, before_pl = fr.served("FR"), fr.served("PL")
    before_where = fr.where("DE", ELECTRICIAN, ON)
    await store.close()

    reopened = await SqliteStore.open(db)
    try:
        again = Recognition(reopened, FR_KEY, "FR", clock, keys_of)
        assert again.rules() == []  # nothing until loaded
        await again.load()
        assert again.rules() == before_rules
        assert again.served("FR") == before_fr
        assert again.served("PL") == before_pl
        assert again.where("DE", ELECTRICIAN, ON) == before_where
        # Versions continue from the stored history.
        assert (await again.add(draft("at-gone", origin="AT"))).rule.version == 3
    finally:
        await reopened.close()
