"""The recognition commands against a real node process (DE): add, list,
remove, import of a TOML file (all or nothing), where, and the recognition
line of verify; refusals are one line with a non-zero exit code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from clikit import credfed, one_line_error
from test_cli import DRAFT, Served
from test_cli import served as served  # noqa: PLC0414 - the module's node

pytestmark = pytest.mark.slow

BIRTH = ["--birth-date", "1994-03-17"]  # of test_cli's DRAFT


def criteria_rule(rule_id: str, origin: str = "FR", *extra: str) -> list[str]:
    """Options of a conditional rule for electricians of ``origin``."""
    return [
        "--rule-id", rule_id, "--origin", origin,
        "--eqf-min", "4", "--eqf-max", "5", "--isco", "7411", "--sector", "energy",
        "--outcome", "conditional", "--adaptation-months", "6", "--language-level", "B1",
        "--local-occupation", "Elektroniker/in für Energie- und Gebäudetechnik",
        "--legal-basis", "BQFG § 4; Directive 2005/36/EC, art. 14",
        "--valid-from", "2024-01-01", *extra,
    ]  # fmt: skip


def listed(served: Served) -> list[dict[str, object]]:
    res = credfed("recognition", "list", "--json", *served.admin)
    assert res.code == 0, res.err
    rules = res.json()
    assert isinstance(rules, list)
    return rules


def ids(served: Served) -> dict[str, int]:
    """Rule id to version, of the node's current rules."""
    return {str(r["rule_id"]): int(str(r["version"])) for r in listed(served)}


def test_add_list_remove(served: Served) -> None:
    res = credfed("recognition", "add", *criteria_rule("fr-electricians"), *served.admin)
    assert res.code == 0, res.err
    assert res.out.startswith("added fr-electricians v1  FR: EQF 4-5, ISCO 7411, energy")
    assert "conditional" in res.out

    res = credfed(
        "recognition", "add", "--rule-id", "fr-rncp-12345", "--origin", "fr",
        "--national-code", "RNCP12345", "--outcome", "full",
        "--local-occupation", "Elektroniker/in", "--local-code", "DE-EGT",
        "--legal-basis", "BQFG § 9", "--valid-from", "2024-01-01",
        "--valid-until", "2030-12-31", "--json", *served.admin,
    )  # fmt: skip
    assert res.code == 0, res.err
    added = res.json()
    assert isinstance(added, dict)
    assert added["rule_id"] == "fr-rncp-12345" and added["national_code"] == "RNCP12345"
    assert (added["version"], added["country"], added["origin"]) == (1, "DE", "FR")
    assert added["outcome"] == "RECOGNITION_OUTCOME_FULL"
    assert added["valid_until"] == "2030-12-31"

    human = credfed("recognition", "list", *served.admin)
    assert human.code == 0, human.err
    lines = {line.split()[0]: line for line in human.out.splitlines()}
    assert lines["fr-electricians"].startswith("fr-electricians v1  FR: EQF 4-5, ISCO 7411")
    assert "2024-01-01 – open-ended" in lines["fr-electricians"]
    assert lines["fr-rncp-12345"].startswith("fr-rncp-12345 v1  FR: national code RNCP12345")
    assert "-> full 'Elektroniker/in'" in lines["fr-rncp-12345"]
    assert "2030-12-31" in lines["fr-rncp-12345"]
    rules = {r["rule_id"]: r for r in listed(served)}
    assert rules["fr-electricians"]["conditions"] == {
        "adaptation_period_months": 6,
        "language_level": "B1",
    }

    # The same id again: its next version.
    res = credfed(
        "recognition", "add", *criteria_rule("fr-electricians", "FR", "--aptitude-test"),
        "--json", *served.admin,
    )  # fmt: skip
    assert res.code == 0, res.err
    again = res.json()
    assert isinstance(again, dict) and again["version"] == 2
    assert ids(served)["fr-electricians"] == 2

    res = credfed("recognition", "remove", "fr-rncp-12345", *served.admin)
    assert res.code == 0, res.err
    assert res.out.strip() == "withdrew fr-rncp-12345 (version 2)"
    assert "fr-rncp-12345" not in ids(served)
    res = credfed("recognition", "remove", "fr-rncp-12345", *served.admin)
    assert one_line_error(res).startswith("error: NOT_FOUND:")
    assert "fr-rncp-12345" in res.err


def test_add_and_remove_refusals_are_one_line(served: Served) -> None:
    res = credfed("recognition", "add", *criteria_rule("lu-electricians", "LU"), *served.admin)
    assert res.code == 0, res.err
    before = listed(served)

    clash = credfed("recognition", "add", *criteria_rule("lu-other", "LU"), *served.admin)
    line = one_line_error(clash)
    assert line.startswith("error: FAILED_PRECONDITION:")
    assert "lu-electricians" in line and "equal specificity" in line

    bad_isco = criteria_rule("lu-bad-isco", "LU")
    bad_isco[bad_isco.index("--isco") + 1] = "99"
    line = one_line_error(credfed("recognition", "add", *bad_isco, *served.admin))
    assert line.startswith("error: INVALID_ARGUMENT: rule.isco_prefix:"), line
    assert "'99'" in line

    no_basis = criteria_rule("lu-no-basis", "LU")
    at = no_basis.index("--legal-basis")
    del no_basis[at : at + 2]
    res = credfed("recognition", "add", *no_basis, *served.admin)
    assert res.code == 2, (res.code, res.err)  # a usage error, before any call
    assert "--legal-basis" in res.err

    line = one_line_error(credfed("recognition", "remove", "no-such-rule", *served.admin))
    assert line.startswith("error: NOT_FOUND:") and "no-such-rule" in line

    assert listed(served) == before


RULES_TOML = """\
[[rule]]
rule_id = "pl-electricians"
origin = "PL"
eqf_min = 4
eqf_max = 5
isco_prefix = "7411"
sector = "energy"
outcome = "conditional"
adaptation_period_months = 6
language_level = "B2"
local_occupation = "Elektroniker/in"
legal_basis = "BQFG § 4"
valid_from = "2024-01-01"

[[rule]]
rule_id = "pl-sep-e1"
origin = "PL"
national_code = "SEP-E1"
outcome = "full"
local_occupation = "Elektroniker/in"
local_code = "DE-EGT"
legal_basis = "BQFG § 9"
valid_from = "2024-01-01"
valid_until = "2029-12-31"

[[rule]]
rule_id = "pl-level-2"
origin = "PL"
eqf_min = 2
eqf_max = 2
outcome = "not_recognised"
legal_basis = "BQFG § 11"
valid_from = "2024-01-01"
"""


def _with_third(third: str) -> str:
    """RULES_TOML with other rule ids (origin CZ) and ``third`` in place of
    the third table."""
    first_two = RULES_TOML[: RULES_TOML.index('[[rule]]\nrule_id = "pl-level-2"')]
    return first_two.replace('"PL"', '"CZ"').replace('"pl-', '"cz-') + third


def test_import_file_all_or_nothing(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES_TOML, encoding="utf-8")
    res = credfed("recognition", "import", str(path), *served.admin)
    assert res.code == 0, res.err
    assert res.out.startswith("imported 3 rules\n")
    current = ids(served)
    for rule_id in ("pl-electricians", "pl-sep-e1", "pl-level-2"):
        assert current[rule_id] == 1
    rules = {r["rule_id"]: r for r in listed(served)}
    assert rules["pl-level-2"]["outcome"] == "RECOGNITION_OUTCOME_NOT_RECOGNISED"
    assert rules["pl-sep-e1"]["valid_until"] == "2029-12-31"

    before = listed(served)
    invalid = tmp_path / "invalid.toml"
    invalid.write_text(
        _with_third(
            '[[rule]]\nrule_id = "cz-bad"\norigin = "CZ"\neqf_min = 4\neqf_max = 9\n'
            'outcome = "full"\nlocal_occupation = "X"\nlegal_basis = "Y"\n'
            'valid_from = "2024-01-01"\n'
        ),
        encoding="utf-8",
    )
    line = one_line_error(credfed("recognition", "import", str(invalid), *served.admin))
    assert line.startswith("error: INVALID_ARGUMENT: rules[2]"), line
    assert "eqf_max" in line
    assert listed(served) == before

    # An unknown key is refused by the command itself: nothing is sent (the
    # server named here does not even exist).
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(
        RULES_TOML.replace('rule_id = "pl-sep-e1"', 'rule_id = "pl-sep-e1"\ncolour = "red"'),
        encoding="utf-8",
    )
    nowhere = ["--server", "127.0.0.1:1", "--token", "cf_" + "x" * 43]
    line = one_line_error(credfed("recognition", "import", str(unknown), *nowhere))
    assert line == f"error: {unknown}: rule 2: unknown key 'colour'"
    wrong_type = tmp_path / "wrong-type.toml"
    wrong_type.write_text(RULES_TOML.replace("eqf_min = 2", 'eqf_min = "2"'), encoding="utf-8")
    line = one_line_error(credfed("recognition", "import", str(wrong_type), *nowhere))
    assert line.startswith(f"error: {wrong_type}: rule 3: eqf_min must be"), line
    assert listed(served) == before


def test_import_of_one_invalid_rule_names_it_like_any_other(served: Served, tmp_path: Path) -> None:
    """A one-rule file is an import like any other: the refused field is
    named ``rules[0]....`` whether the request or the rule itself is wrong."""
    before = listed(served)
    bad = (
        '[[rule]]\nrule_id = "sk-bad"\norigin = "SK"\neqf_min = 4\neqf_max = {eqf_max}\n'
        'outcome = "full"\nlocal_occupation = "X"\nlegal_basis = "Y"\n'
        'valid_from = "{valid_from}"\n'
    )
    for n, (eqf_max, valid_from, field) in enumerate(
        [(4, "2024-13-01", "valid_from"), (9, "2024-01-01", "eqf_max")]
    ):
        path = tmp_path / f"one-{n}.toml"
        path.write_text(bad.format(eqf_max=eqf_max, valid_from=valid_from), encoding="utf-8")
        line = one_line_error(credfed("recognition", "import", str(path), *served.admin))
        assert line.startswith("error: INVALID_ARGUMENT: rules[0]"), line
        assert field in line
    assert listed(served) == before


@pytest.mark.parametrize(
    "text",
    [
        "this is = not [toml",
        "\x00\xff binary",
        "[other]\nkey = 1\n",
        "rule = []\n",
        'rule = ["not a table"]\n',
    ],
    ids=["syntax", "binary", "no-rule-tables", "empty", "not-tables"],
)
def test_import_of_a_file_that_is_not_rule_tables_is_one_line(
    served: Served, tmp_path: Path, text: str
) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(text.encode("latin-1"))
    line = one_line_error(credfed("recognition", "import", str(path), *served.admin))
    assert line.startswith(f"error: {path}:"), line


def test_where_and_verify_show_recognition(served: Served) -> None:
    res = credfed("issue", *DRAFT, *served.admin)
    assert res.code == 0, res.err
    cid = res.out.strip()

    res = credfed("recognition", "where", cid, *BIRTH, *served.admin)
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0] == f"{cid}:"
    assert lines[1] == "  DE: domestic"

    res = credfed("recognition", "where", cid, *BIRTH, "--json", *served.admin)
    assert res.code == 0, res.err
    answer = res.json()
    assert isinstance(answer, dict) and answer["credential_id"] == cid
    decisions = answer["decisions"]
    assert isinstance(decisions, list)
    assert decisions[0] == {"country": "DE", "outcome": "RECOGNITION_OUTCOME_DOMESTIC"}

    res = credfed("recognition", "where", cid, *served.admin)
    assert res.code == 2 and "--birth-date" in res.err
    res = credfed("recognition", "where", cid, "--family-name", "Schmidt", *served.admin)
    assert one_line_error(res).startswith("error: NOT_FOUND:")

    res = credfed("verify", cid, *BIRTH, *served.admin)
    assert res.code == 0, res.err
    recognition = [line for line in res.out.splitlines() if line.startswith("recognition:")]
    assert recognition == ["recognition:   DE: domestic"]
