"""Reference code lists: ISCO-08 groups, ESCO occupations, EQF levels and
sector labels.

The ISCO-08 and ESCO lists are shipped as package data in ``credfed.data``
(ESCO v1.1.1, European Commission, CC BY 4.0; see ``data/ATTRIBUTION.md``).
Each is read and parsed once, on first use. The files are part of the
package, so a file that does not parse is a bug of the build, not bad input:
it raises :class:`CodeListError` naming the file, line and problem.

Codes are compared exactly as given (strings such as ``"0110"``: the leading
zero matters); callers strip user input first.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

from credfed.errors import CredfedError

__all__ = [
    "EQF_LEVELS",
    "CodeListError",
    "EscoOccupation",
    "esco_occupations",
    "is_isco_code",
    "is_isco_unit_group",
    "isco_label",
    "isco_level",
    "sector_label",
]

_PACKAGE = "credfed.data"
_ISCO_FILE = "isco08-groups.csv"
_ESCO_FILE = "esco-occupations.csv"
_ISCO_HEADER = ("isco_code", "level", "label")
_ESCO_HEADER = ("esco_code", "isco_code", "label", "esco_uri", "regulated_profession_note")
_ISCO_CODE = re.compile(r"^[0-9]{1,4}$")
# An ESCO occupation code extends its ISCO-08 unit group: 7411.1, 7411.1.1.2 ...
_ESCO_CODE = re.compile(r"^[0-9]{4}(?:\.[0-9]+)+$")
_ESCO_URI_PREFIX = "http://data.europa.eu/esco/occupation/"
# The regulated-profession note of ESCO v1.1.1 as republished is one of two
# concept URIs, and every one of the 3,007 occupations has one. "regulated"
# marks exactly 15 occupations: those of the seven professions with automatic
# EU-wide recognition under Directive 2005/36/EC (doctors, nurses, dental
# practitioners, veterinary surgeons, midwives, pharmacists, architects) and
# their specialisms. "unregulated" does NOT mean unregulated everywhere: many
# such occupations (electricians, 7411) are regulated by some member states,
# which only the Commission's regulated professions database records.
_REGULATED_NOTES: Final[dict[str, bool]] = {
    "http://data.europa.eu/esco/regulated-professions/regulated": True,
    "http://data.europa.eu/esco/regulated-professions/unregulated": False,
}

#: The eight levels of the European Qualifications Framework, each with its
#: official short descriptor of knowledge (Council Recommendation of 22 May
#: 2017, Annex II). National frameworks are referenced to these levels.
EQF_LEVELS: Final[dict[int, str]] = {
    1: "basic general knowledge",
    2: "basic factual knowledge of a field of work or study",
    3: (
        "knowledge of facts, principles, processes and general concepts, in a field of work"
        " or study"
    ),
    4: "factual and theoretical knowledge in broad contexts within a field of work or study",
    5: (
        "comprehensive, specialised, factual and theoretical knowledge within a field of work"
        " or study and an awareness of the boundaries of that knowledge"
    ),
    6: (
        "advanced knowledge of a field of work or study, involving a critical understanding"
        " of theories and principles"
    ),
    7: (
        "highly specialised knowledge, some of which is at the forefront of knowledge in a field"
        " of work or study, as the basis for original thinking and/or research"
    ),
    8: (
        "knowledge at the most advanced frontier of a field of work or study and at the"
        " interface between fields"
    ),
}


class CodeListError(CredfedError):
    """A packaged code list is missing or malformed (a packaging bug)."""


@dataclass(frozen=True, slots=True)
class EscoOccupation:
    """One ESCO v1.1.1 occupation.

    ``regulated`` is True when ESCO's regulated-profession note is
    ``.../regulated-professions/regulated`` (in this list: the professions
    with automatic EU-wide recognition under Directive 2005/36/EC) and False
    when it is ``.../unregulated``, which does not exclude regulation by some
    member states.
    """

    esco_code: str
    isco_code: str
    label: str
    uri: str
    regulated: bool


@dataclass(frozen=True, slots=True)
class _IscoGroup:
    level: int
    label: str


def _rows(name: str, header: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """The data rows of a packaged CSV file with their line numbers, after
    checking the header. Every row must have exactly the header's fields."""
    where = f"{_PACKAGE}/{name}"
    try:
        raw = resources.files(_PACKAGE).joinpath(name).read_bytes()
    except (OSError, ModuleNotFoundError) as e:
        raise CodeListError(f"{where}: cannot read the packaged code list: {e}") from e
    try:
        text = raw.decode("utf-8")  # strict; a byte order mark would fail the header check
    except UnicodeDecodeError as e:
        raise CodeListError(f"{where}: not UTF-8: {e}") from e
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        first = next(reader, None)
        if first is None or tuple(first) != header:
            raise CodeListError(f"{where}: header is {first!r}, expected {list(header)!r}")
        for row in reader:
            if len(row) != len(header):
                raise CodeListError(
                    f"{where} line {reader.line_num}: {len(row)} fields, expected {len(header)}"
                )
            yield reader.line_num, row
    except csv.Error as e:
        raise CodeListError(f"{where} line {reader.line_num}: {e}") from e


def _label(value: str, where: str) -> str:
    if not value or value != value.strip():
        raise CodeListError(f"{where}: label {value!r} is empty or has outer white space")
    return value


@cache
def _isco() -> dict[str, _IscoGroup]:
    groups: dict[str, _IscoGroup] = {}
    for line, (code, level, label) in _rows(_ISCO_FILE, _ISCO_HEADER):
        where = f"{_PACKAGE}/{_ISCO_FILE} line {line}"
        if not _ISCO_CODE.match(code):
            raise CodeListError(f"{where}: ISCO-08 code {code!r} is not 1-4 digits")
        if level != str(len(code)):
            raise CodeListError(f"{where}: level {level!r} does not match code {code!r}")
        if code in groups:
            raise CodeListError(f"{where}: duplicate ISCO-08 code {code!r}")
        if len(code) > 1 and code[:-1] not in groups:
            raise CodeListError(
                f"{where}: {code!r} is not preceded by its parent group {code[:-1]!r}"
            )
        groups[code] = _IscoGroup(len(code), _label(label, where))
    if not groups:
        raise CodeListError(f"{_PACKAGE}/{_ISCO_FILE}: no ISCO-08 groups")
    return groups


@cache
def _esco() -> dict[str, tuple[EscoOccupation, ...]]:
    groups = _isco()
    by_unit: dict[str, list[EscoOccupation]] = {}
    seen: set[str] = set()
    for line, (esco_code, isco_code, label, uri, note) in _rows(_ESCO_FILE, _ESCO_HEADER):
        where = f"{_PACKAGE}/{_ESCO_FILE} line {line}"
        if not _ESCO_CODE.match(esco_code):
            raise CodeListError(f"{where}: ESCO code {esco_code!r} is malformed")
        if esco_code in seen:
            raise CodeListError(f"{where}: duplicate ESCO code {esco_code!r}")
        seen.add(esco_code)
        group = groups.get(isco_code)
        if group is None or group.level != 4:
            raise CodeListError(f"{where}: {isco_code!r} is not a known ISCO-08 unit group")
        if not esco_code.startswith(isco_code + "."):
            raise CodeListError(f"{where}: ESCO code {esco_code!r} is not under {isco_code!r}")
        if not uri.startswith(_ESCO_URI_PREFIX) or uri == _ESCO_URI_PREFIX:
            raise CodeListError(f"{where}: {uri!r} is not an ESCO occupation URI")
        if note not in _REGULATED_NOTES:
            raise CodeListError(f"{where}: unknown regulated-profession note {note!r}")
        by_unit.setdefault(isco_code, []).append(
            EscoOccupation(
                esco_code=esco_code,
                isco_code=isco_code,
                label=_label(label, where),
                uri=uri,
                regulated=_REGULATED_NOTES[note],
            )
        )
    if not by_unit:
        raise CodeListError(f"{_PACKAGE}/{_ESCO_FILE}: no ESCO occupations")
    return {unit: tuple(occupations) for unit, occupations in by_unit.items()}


def isco_label(code: str) -> str | None:
    """The English label of an ISCO-08 group of any level (1-4 digits), or
    None if ``code`` is not a known group."""
    group = _isco().get(code)
    return None if group is None else group.label


def isco_level(code: str) -> int | None:
    """1 (major), 2 (sub-major), 3 (minor) or 4 (unit group) for a known
    ISCO-08 code, None for an unknown one."""
    group = _isco().get(code)
    return None if group is None else group.level


def is_isco_code(code: str) -> bool:
    """True for a known ISCO-08 group of any level (major, sub-major, minor, unit)."""
    return code in _isco()


def is_isco_unit_group(code: str) -> bool:
    """True for a known four-digit ISCO-08 unit group (the level credentials use)."""
    group = _isco().get(code)
    return group is not None and group.level == 4


def esco_occupations(isco_unit: str) -> list[EscoOccupation]:
    """The ESCO occupations classified under an ISCO-08 unit group, in the
    order of the file (ESCO codes sorted as text: 7411.1, 7411.1.1, ...).
    Empty for an unknown code, for a code of another level, and for the unit
    groups that ESCO has no occupation under."""
    return list(_esco().get(isco_unit, ()))


def sector_label(sector: str) -> str:
    """The display label of a sector of :data:`credfed.vocabulary.SECTORS`:
    its name with the first letter capitalised (``"Information technology"``).

    Total on purpose: a name outside this node's vocabulary (a partner's
    record made under a newer vocabulary) is capitalised the same way rather
    than failing the answer that displays it."""
    return sector[:1].upper() + sector[1:]
