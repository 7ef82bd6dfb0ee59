"""Recognition end to end on real node processes: a rule added at FR applies
to the next verify of a German certificate at FR, with the rule id and
version used; the rules travel to partners signed by FR (also through a
relay); `WhereRecognised` answers across partners."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from fednet import STATUS, FedNode, build, eventually, register_issuer

from credfed.v1 import recognition_pb2 as rc
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v

pytestmark = pytest.mark.slow

DEMO_LINKS = [("DE", "FR"), ("FR", "DE"), ("FR", "PL"), ("PL", "FR")]


def electricians(rule_id: str = "de-electricians", **overrides: object) -> rc.RecognitionRule:
    """FR's rule for German electricians (EQF 4, ISCO 7411, energy)."""
    fields: dict[str, object] = {
        "rule_id": rule_id,
        "origin": "DE",
        "eqf_min": 4,
        "eqf_max": 4,
        "isco_prefix": "7411",
        "sector": "energy",
        "outcome": rc.RECOGNITION_OUTCOME_CONDITIONAL,
        "local_occupation": "Électricien (habilitation électrique BR)",
        "local_code": "FR-RNCP-12345",
        "legal_basis": "Directive 2005/36/EC, art. 14; Code du travail R4544-9",
        "valid_from": "2024-01-01",
    }
    fields.update(overrides)
    rule = rc.RecognitionRule(**fields)  # type: ignore[arg-type]
    if rule.outcome == rc.RECOGNITION_OUTCOME_CONDITIONAL:
        rule.conditions.adaptation_period_months = 6
        rule.conditions.language_level = "B1"
    return rule


async def add_rule(node: FedNode, rule: rc.RecognitionRule) -> rc.RecognitionRule:
    got = await node.registry.AddRecognitionRule(
        r.AddRecognitionRuleRequest(rule=rule), metadata=node.md(), timeout=10
    )
    result: rc.RecognitionRule = got.rule
    return result


async def where(node: FedNode, cid: str) -> dict[str, rc.RecognitionDecision]:
    got = await node.verification.WhereRecognised(
        v.WhereRecognisedRequest(credential_id=cid, birth_date="1994-03-17"),
        metadata=node.md("verifier"),
        timeout=10,
    )
    return {d.country: d for d in got.decisions}


@pytest.fixture
async def trio(tmp_path: Path) -> AsyncIterator[dict[str, FedNode]]:
    nodes = await build(tmp_path, ["DE", "FR", "PL"], DEMO_LINKS)
    try:
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            await register_issuer(node)
        yield nodes
    finally:
        for node in nodes.values():
            await node.stop()


async def test_a_rule_applies_to_the_next_verify_with_its_id_and_version(
    trio: dict[str, FedNode],
) -> None:
    de, fr = trio["DE"], trio["FR"]
    cid = await de.issue()
    before = await eventually(lambda: fr.verify(cid))
    assert before.recognition.country == "FR"
    assert before.recognition.outcome == rc.RECOGNITION_OUTCOME_NO_RULE
    # Labels from the shipped code lists, for the codes in DE's signed record.
    assert before.labels.isco_label == "Building and related electricians"
    assert before.labels.sector_label == "Energy"
    assert before.labels.eqf_level_descriptor

    added = await add_rule(fr, electricians())
    assert (added.version, added.country) == (1, "FR")
    after = await fr.verify(cid)  # the very next lookup
    d = after.recognition
    assert d.outcome == rc.RECOGNITION_OUTCOME_CONDITIONAL
    assert (d.rule_id, d.rule_version) == ("de-electricians", 1)
    assert d.conditions.adaptation_period_months == 6 and d.conditions.language_level == "B1"
    assert d.signed_rule.payload  # FR's signature over the rule it applied

    # A change is a new version and applies at once; so does a withdrawal.
    changed = await add_rule(fr, electricians(outcome=rc.RECOGNITION_OUTCOME_FULL))
    assert changed.version == 2
    assert (await fr.verify(cid)).recognition.rule_version == 2
    await fr.registry.RemoveRecognitionRule(
        r.RemoveRecognitionRuleRequest(rule_id="de-electricians"), metadata=fr.md(), timeout=10
    )
    assert (await fr.verify(cid)).recognition.outcome == rc.RECOGNITION_OUTCOME_NO_RULE
    # At the origin a credential is domestic.
    assert (await de.verify(cid)).recognition.outcome == rc.RECOGNITION_OUTCOME_DOMESTIC


async def test_equal_specificity_is_refused_when_added_and_bad_rules_name_the_field(
    trio: dict[str, FedNode],
) -> None:
    fr = trio["FR"]
    await add_rule(fr, electricians())
    with pytest.raises(grpc.aio.AioRpcError) as clash:
        await add_rule(fr, electricians("another-rule"))
    assert clash.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "de-electricians" in (clash.value.details() or "")
    # A more specific rule (by national code) is fine and wins.
    await add_rule(
        fr,
        electricians(
            "de-egt-2019", eqf_min=0, eqf_max=0, isco_prefix="", sector="",
            national_code="DE-HWK-EGT-2019", outcome=rc.RECOGNITION_OUTCOME_FULL,
        ),
    )  # fmt: skip
    for bad, field in (
        (electricians("bad-eqf", eqf_min=5, eqf_max=3), "rule.eqf_max"),
        (electricians("bad-isco", isco_prefix="99"), "rule.isco_prefix"),
        (electricians("x"), "rule.rule_id"),
        (electricians("no-basis", legal_basis=""), "rule.legal_basis"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await add_rule(fr, bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (refused.value.details() or "").startswith(field), refused.value.details()
    # Import is all or nothing: one bad rule, nothing added.
    listed = await fr.registry.ListRecognitionRules(
        r.ListRecognitionRulesRequest(), metadata=fr.md(), timeout=10
    )
    with pytest.raises(grpc.aio.AioRpcError) as bulk:
        await fr.registry.ImportRecognitionRules(
            r.ImportRecognitionRulesRequest(
                rules=[electricians("fine-one", origin="PL"), electricians("bad", eqf_max=9)]
            ),
            metadata=fr.md(),
            timeout=10,
        )
    assert bulk.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (bulk.value.details() or "").startswith("rules[1]")
    again = await fr.registry.ListRecognitionRules(
        r.ListRecognitionRulesRequest(), metadata=fr.md(), timeout=10
    )
    assert list(again.rules) == list(listed.rules)


async def test_where_recognised_answers_across_partners_with_their_signed_rules(
    trio: dict[str, FedNode],
) -> None:
    de, fr, pl = trio["DE"], trio["FR"], trio["PL"]
    cid = await de.issue()
    await add_rule(fr, electricians())
    await add_rule(
        pl,
        electricians(
            "de-electricians-pl", outcome=rc.RECOGNITION_OUTCOME_FULL,
            local_occupation="Elektryk (uprawnienia SEP)", local_code="",
        ),
    )  # fmt: skip

    async def everyone_knows() -> dict[str, rc.RecognitionDecision] | None:
        found = await where(de, cid)  # DE got PL's rules only through FR (relay)
        ok = found.get("PL") and found["PL"].outcome == rc.RECOGNITION_OUTCOME_FULL
        return found if ok and found["FR"].rule_id else None

    at_de = await eventually(everyone_knows, timeout=20)
    assert at_de["DE"].outcome == rc.RECOGNITION_OUTCOME_DOMESTIC
    assert at_de["FR"].outcome == rc.RECOGNITION_OUTCOME_CONDITIONAL
    assert at_de["FR"].local_occupation.startswith("Électricien")
    assert at_de["PL"].local_occupation == "Elektryk (uprawnienia SEP)"
    # Asked at PL about the same DE credential (cross-border), the same picture.
    at_pl = await eventually(lambda: where(pl, cid), timeout=20)
    assert at_pl["PL"].outcome == rc.RECOGNITION_OUTCOME_FULL
    assert at_pl["DE"].outcome == rc.RECOGNITION_OUTCOME_DOMESTIC
    # A wrong holder attribute learns nothing.
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await fr.verification.WhereRecognised(
            v.WhereRecognisedRequest(credential_id=cid, family_name="Schmidt"),
            metadata=fr.md("verifier"),
            timeout=10,
        )
    assert wrong.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await fr.verify(cid)).status == STATUS.CREDENTIAL_STATUS_ACTIVE
