"""The packaged ISCO-08 / ESCO code lists, EQF levels, sector labels, and the
ISCO-08 check of credential drafts."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from credfed import codelists, validation
from credfed.codelists import (
    EQF_LEVELS,
    CodeListError,
    EscoOccupation,
    esco_occupations,
    is_isco_code,
    is_isco_unit_group,
    isco_label,
    isco_level,
    sector_label,
)
from credfed.errors import ValidationError
from credfed.vocabulary import SECTORS

# Every string of 1-4 digits: a superset of all ISCO-08 codes (11,110 strings).
ALL_DIGIT_CODES = [
    "".join(digits)
    for length in range(1, 5)
    for digits in itertools.product("0123456789", repeat=length)
]
ISCO_CODES = [code for code in ALL_DIGIT_CODES if is_isco_code(code)]
UNIT_GROUPS = [code for code in ISCO_CODES if is_isco_unit_group(code)]
ALL_OCCUPATIONS = [occupation for unit in UNIT_GROUPS for occupation in esco_occupations(unit)]
ESCO_URI_PREFIX = "http://data.europa.eu/esco/occupation/"


# -- packaging --------------------------------------------------------------------


def test_the_code_lists_and_their_attribution_are_package_data() -> None:
    folder = resources.files("credfed.data")
    names = {entry.name for entry in folder.iterdir()}
    assert {"isco08-groups.csv", "esco-occupations.csv", "ATTRIBUTION.md"} <= names
    attribution = folder.joinpath("ATTRIBUTION.md").read_text(encoding="utf-8")
    for needle in ("ESCO v1.1.1", "European Commission", "CC BY 4.0", "tabiya", "unmodified"):
        assert needle in attribution


# -- ISCO-08 ----------------------------------------------------------------------


def test_isco08_has_619_groups_by_level() -> None:
    assert len(ISCO_CODES) == 619
    assert Counter(isco_level(code) for code in ISCO_CODES) == {1: 10, 2: 43, 3: 130, 4: 436}
    assert len(UNIT_GROUPS) == 436


def test_the_level_is_the_number_of_digits_and_every_parent_is_known() -> None:
    for code in ISCO_CODES:
        assert isco_level(code) == len(code)
        if len(code) > 1:
            assert is_isco_code(code[:-1]), code


@pytest.mark.parametrize(
    ("code", "level", "label"),
    [
        ("0", 1, "Armed forces occupations"),
        ("01", 2, "Commissioned armed forces officers"),
        ("011", 3, "Commissioned armed forces officers"),
        ("0110", 4, "Commissioned armed forces officers"),
        ("2", 1, "Professionals"),
        ("22", 2, "Health professionals"),
        ("222", 3, "Nursing and midwifery professionals"),
        ("2221", 4, "Nursing professionals"),
        ("7112", 4, "Bricklayers and related workers"),
        ("7411", 4, "Building and related electricians"),
    ],
)
def test_known_groups(code: str, level: int, label: str) -> None:
    assert isco_label(code) == label
    assert isco_level(code) == level
    assert is_isco_code(code)
    assert is_isco_unit_group(code) is (level == 4)


@pytest.mark.parametrize(
    "code",
    ["9999", "00", "0000", "110", "74111", "", "abc", "741a", " 7411", "7411 ", "٧٤١١", "+741"],
)
def test_unknown_codes(code: str) -> None:
    assert isco_label(code) is None
    assert isco_level(code) is None
    assert not is_isco_code(code)
    assert not is_isco_unit_group(code)
    assert esco_occupations(code) == []


def test_only_four_digit_groups_are_unit_groups() -> None:
    assert is_isco_code("741") and not is_isco_unit_group("741")
    assert is_isco_code("74") and not is_isco_unit_group("74")
    assert is_isco_code("7") and not is_isco_unit_group("7")


def test_labels_are_non_empty_and_trimmed() -> None:
    for code in ISCO_CODES:
        label = isco_label(code)
        assert label and label == label.strip(), code


# -- ESCO -------------------------------------------------------------------------


def test_esco_has_3007_occupations_with_unique_codes_and_uris() -> None:
    assert len(ALL_OCCUPATIONS) == 3007
    assert len({o.esco_code for o in ALL_OCCUPATIONS}) == 3007
    assert len({o.uri for o in ALL_OCCUPATIONS}) == 3007


def test_every_occupation_is_under_a_known_unit_group() -> None:
    for unit in UNIT_GROUPS:
        for occupation in esco_occupations(unit):
            assert occupation.isco_code == unit
            assert is_isco_unit_group(occupation.isco_code)
            assert occupation.esco_code.startswith(unit + ".")
            assert occupation.label and occupation.label == occupation.label.strip()
            assert occupation.uri.startswith(ESCO_URI_PREFIX)
            assert len(occupation.uri) > len(ESCO_URI_PREFIX)


def test_only_unit_groups_have_occupations() -> None:
    for code in ISCO_CODES:
        if not is_isco_unit_group(code):
            assert esco_occupations(code) == [], code
    # ESCO places occupations under 426 of the 436 unit groups.
    assert sum(1 for unit in UNIT_GROUPS if esco_occupations(unit)) == 426


def test_electricians() -> None:
    occupations = esco_occupations("7411")
    assert [o.esco_code for o in occupations][:3] == ["7411.1", "7411.1.1", "7411.1.1.1"]
    assert occupations[0] == EscoOccupation(
        esco_code="7411.1",
        isco_code="7411",
        label="electrician",
        uri=occupations[0].uri,
        regulated=False,
    )
    assert {"building electrician", "domestic electrician", "solar energy technician"} <= {
        o.label for o in occupations
    }
    # Electricians are regulated in some member states, but not "regulated"
    # in ESCO's sense (automatic EU-wide recognition).
    assert not any(o.regulated for o in occupations)


def test_the_regulated_flag() -> None:
    nurses = {o.label: o.regulated for o in esco_occupations("2221")}
    assert nurses == {
        "advanced nurse practitioner": True,
        "nurse responsible for general care": True,
        "specialist nurse": False,
    }
    regulated = [o for o in ALL_OCCUPATIONS if o.regulated]
    assert len(regulated) == 15
    # The sectoral professions of Directive 2005/36/EC: architects, doctors,
    # nurses, midwives, veterinarians, dentists, pharmacists.
    assert {o.isco_code for o in regulated} == {
        "2161", "2211", "2212", "2221", "2222", "2250", "2261", "2262"
    }  # fmt: skip
    assert {"architect", "general practitioner", "midwife", "pharmacist"} <= {
        o.label for o in regulated
    }


def test_esco_occupations_returns_a_fresh_list() -> None:
    first = esco_occupations("2221")
    first.clear()
    assert len(esco_occupations("2221")) == 3


# -- EQF levels and sectors -------------------------------------------------------


def test_eqf_levels() -> None:
    assert list(EQF_LEVELS) == list(range(1, 9))
    assert EQF_LEVELS[1] == "basic general knowledge"
    assert EQF_LEVELS[4] == (
        "factual and theoretical knowledge in broad contexts within a field of work or study"
    )
    assert EQF_LEVELS[8] == (
        "knowledge at the most advanced frontier of a field of work or study and at the"
        " interface between fields"
    )
    for descriptor in EQF_LEVELS.values():
        assert "knowledge" in descriptor and descriptor == descriptor.strip()
    assert len(set(EQF_LEVELS.values())) == 8


def test_sector_labels() -> None:
    assert sector_label("information technology") == "Information technology"
    assert sector_label("construction") == "Construction"
    for sector in SECTORS:
        label = sector_label(sector)
        assert label[0].isupper() and label.lower() == sector


def test_a_sector_outside_the_vocabulary_is_still_labelled() -> None:
    # A display label never fails (a partner may use a newer vocabulary).
    assert sector_label("mining") == "Mining"
    assert sector_label("") == ""


# -- loading: once, and strictly --------------------------------------------------


@pytest.fixture
def packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Make the loaders read ``tmp_path`` instead of the packaged folder. The
    real ISCO-08 list is loaded first (the ESCO loader checks against it) and
    every cache is cleared afterwards, so later tests see the real data."""
    codelists._isco()
    monkeypatch.setattr(codelists, "resources", SimpleNamespace(files=lambda _: tmp_path))
    yield tmp_path
    codelists._isco.cache_clear()
    codelists._esco.cache_clear()


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_bytes(text.replace("\n", "\r\n").encode("utf-8"))


def test_each_list_is_parsed_once() -> None:
    codelists._isco.cache_clear()
    codelists._esco.cache_clear()
    for _ in range(3):
        assert isco_label("7411") and esco_occupations("7411")
    assert codelists._isco.cache_info().misses == 1
    assert codelists._esco.cache_info().misses == 1


ISCO_HEADER = "isco_code,level,label\n"
ISCO_GOOD = ISCO_HEADER + "7,1,Craft\n74,2,Electrical\n741,3,Electrical installers\n"


def test_a_well_formed_isco_file_parses(packaged: Path) -> None:
    _write(packaged, "isco08-groups.csv", ISCO_GOOD + "7411,4,Building electricians\n")
    groups = codelists._isco.__wrapped__()
    assert sorted(groups) == ["7", "74", "741", "7411"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "header is None"),
        ("code,level,label\n7,1,Craft\n", "header is"),
        ("\ufeff" + ISCO_GOOD, "header is ['\\ufeffisco_code', 'level', 'label']"),
        (ISCO_GOOD + "7411,4\n", "line 5: 2 fields, expected 3"),
        (ISCO_GOOD + "7411,4,Building electricians,x\n", "line 5: 4 fields"),
        (ISCO_GOOD + "7411,3,Building electricians\n", "line 5: level '3' does not match"),
        (ISCO_GOOD + "74111,5,Too deep\n", "is not 1-4 digits"),
        (ISCO_GOOD + "741a,4,Letters\n", "is not 1-4 digits"),
        (ISCO_GOOD + "741,3,Again\n", "duplicate ISCO-08 code '741'"),
        (ISCO_GOOD + "7511,4,Orphan\n", "not preceded by its parent group '751'"),
        (ISCO_GOOD + "7411,4,\n", "label '' is empty"),
        (ISCO_GOOD + "7411,4, Padded\n", "outer white space"),
        (ISCO_GOOD + '7411,4,"unclosed\n', "line"),
        (ISCO_HEADER, "no ISCO-08 groups"),
    ],
)
def test_a_malformed_isco_file_is_a_clear_error(packaged: Path, text: str, problem: str) -> None:
    _write(packaged, "isco08-groups.csv", text)
    with pytest.raises(CodeListError, match=r"isco08-groups\.csv") as info:
        codelists._isco.__wrapped__()
    assert problem in str(info.value)


def test_a_non_utf8_file_is_a_clear_error(packaged: Path) -> None:
    (packaged / "isco08-groups.csv").write_bytes(ISCO_GOOD.encode() + b"7411,4,\xff\r\n")
    with pytest.raises(CodeListError, match=r"isco08-groups\.csv: not UTF-8: .*0xff"):
        codelists._isco.__wrapped__()


def test_a_missing_file_is_a_clear_error(packaged: Path) -> None:
    with pytest.raises(CodeListError, match="cannot read the packaged code list"):
        codelists._isco.__wrapped__()


ESCO_HEADER = "esco_code,isco_code,label,esco_uri,regulated_profession_note\n"
URI = ESCO_URI_PREFIX + "0f2b1e4c-0000-4000-8000-000000000000"
NOTE = "http://data.europa.eu/esco/regulated-professions/"


def _esco_row(
    esco: str = "7411.1",
    isco: str = "7411",
    label: str = "electrician",
    uri: str = URI,
    note: str = NOTE + "unregulated",
) -> str:
    return f"{esco},{isco},{label},{uri},{note}\n"


def test_a_well_formed_esco_file_parses(packaged: Path) -> None:
    _write(
        packaged,
        "esco-occupations.csv",
        ESCO_HEADER + _esco_row() + _esco_row("2221.2", "2221", "nurse", note=NOTE + "regulated"),
    )
    parsed = codelists._esco.__wrapped__()
    assert [o.regulated for o in parsed["7411"]] == [False]
    assert [o.regulated for o in parsed["2221"]] == [True]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (_esco_row(note=NOTE + "see-details"), "unknown regulated-profession note"),
        (_esco_row(note=""), "unknown regulated-profession note ''"),
        (_esco_row(isco="9999", esco="9999.1"), "'9999' is not a known ISCO-08 unit group"),
        (_esco_row(isco="741", esco="741.1"), "ESCO code '741.1' is malformed"),
        (_esco_row(isco="741"), "'741' is not a known ISCO-08 unit group"),
        (_esco_row(esco="7412.1"), "ESCO code '7412.1' is not under '7411'"),
        (_esco_row(esco="7411"), "ESCO code '7411' is malformed"),
        (_esco_row(uri="https://example.org/x"), "is not an ESCO occupation URI"),
        (_esco_row(uri=ESCO_URI_PREFIX), "is not an ESCO occupation URI"),
        (_esco_row(label=""), "label '' is empty"),
        (_esco_row() + _esco_row(), "line 3: duplicate ESCO code '7411.1'"),
        ("7411.1,7411,electrician\n", "3 fields, expected 5"),
    ],
)
def test_a_malformed_esco_file_is_a_clear_error(packaged: Path, row: str, problem: str) -> None:
    _write(packaged, "esco-occupations.csv", ESCO_HEADER + row)
    with pytest.raises(CodeListError, match=r"esco-occupations\.csv") as info:
        codelists._esco.__wrapped__()
    assert problem in str(info.value)


# -- validation of credential drafts ------------------------------------------------


def _draft(**overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "issuer": "de-hwk-muenchen",
        "given_names": "Jana",
        "family_name": "Novák",
        "birth_date": "1994-03-17",
        "national_code": "DE-HWK-EGT-2019",
        "title": "Elektroniker/in für Energie- und Gebäudetechnik",
        "eqf_level": 4,
        "isco_code": "7411",
        "sector_name": "energy",
        "issued_on": "2019-07-01",
        "valid_until": "2039-06-30",
    }
    fields.update(overrides)
    return validation.draft(**fields)


@pytest.mark.parametrize("code", ["7411", "7112", "2221", "0110", " 2514 "])
def test_a_draft_with_a_known_unit_group_is_accepted(code: str) -> None:
    assert _draft(isco_code=code).qualification.isco_code == code.strip()


@pytest.mark.parametrize("code", ["9999", "0000", "7410", "1000"])
def test_a_draft_with_an_unknown_unit_group_is_refused(code: str) -> None:
    with pytest.raises(ValidationError) as info:
        _draft(isco_code=code)
    assert info.value.field == "draft.qualification.isco_code"
    assert info.value.message == f"unknown ISCO-08 unit group '{code}'"


@pytest.mark.parametrize("code", ["741", "7", "74111", "", "abcd"])
def test_a_draft_with_a_code_of_another_shape_is_refused(code: str) -> None:
    with pytest.raises(ValidationError) as info:
        _draft(isco_code=code, prefix="drafts[3]")
    assert info.value.field == "drafts[3].qualification.isco_code"
    assert "four-digit ISCO-08 unit group" in info.value.message
