from __future__ import annotations

import contextlib
import string
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credfed.errors import ValidationError
from credfed.ids import (
    ALPHABET,
    country_of,
    is_country_code,
    new_credential_id,
    parse_credential_id,
)

LETTERS = string.ascii_uppercase
CANONICAL_HYPHENS = (2, 7, 12, 17)


def _compact(credential_id: str) -> str:
    return credential_id.replace("-", "")


def _alphabet_at(position: int) -> str:
    """The symbols allowed at ``position`` of the 15-symbol compact form."""
    return LETTERS if position < 2 else ALPHABET


def _with_check(country: str, body: str) -> str:
    """Build an id by trying every check symbol; exactly one must be accepted."""
    valid = []
    for check in ALPHABET:
        with contextlib.suppress(ValidationError):
            valid.append(parse_credential_id(country + body + check))
    assert len(valid) == 1, (country, body, valid)
    return valid[0]


def _rejected(text: str) -> bool:
    try:
        parse_credential_id(text)
    except ValidationError:
        return True
    return False


def _sample_ids() -> list[str]:
    # Every letter in both country positions, several ids per country.
    countries = [a + b for a, b in zip(LETTERS, LETTERS[7:] + LETTERS[:7], strict=True)]
    countries += [b + a for a, b in zip(LETTERS, LETTERS[3:] + LETTERS[:3], strict=True)]
    return [new_credential_id(countries[i % len(countries)]) for i in range(312)]


def test_generated_ids_parse_to_themselves() -> None:
    for _ in range(200):
        cid = new_credential_id("DE")
        assert parse_credential_id(cid) == cid
        assert parse_credential_id(_compact(cid)) == cid
        assert parse_credential_id(f"  {cid.lower()}\n") == cid
        assert country_of(cid) == "DE"


def test_shape_of_generated_ids() -> None:
    cid = new_credential_id("FR")
    assert len(cid) == 19
    assert [i for i, ch in enumerate(cid) if ch == "-"] == list(CANONICAL_HYPHENS)
    assert cid.startswith("FR-")
    assert all(ch in ALPHABET for ch in _compact(cid)[2:])


def test_every_single_substitution_is_rejected() -> None:
    for cid in _sample_ids():
        compact = _compact(cid)
        for pos, original in enumerate(compact):
            for other in _alphabet_at(pos):
                if other == original:
                    continue
                typo = compact[:pos] + other + compact[pos + 1 :]
                assert _rejected(typo), (cid, typo)
        for pos, original in enumerate(cid):
            if pos in CANONICAL_HYPHENS:
                # A hyphen typed over as any id symbol breaks the format.
                alphabet = LETTERS + ALPHABET
            else:
                alphabet = _alphabet_at(pos - sum(h < pos for h in CANONICAL_HYPHENS))
            for other in set(alphabet) - {original}:
                typo = cid[:pos] + other + cid[pos + 1 :]
                assert _rejected(typo), (cid, typo)


def test_every_adjacent_transposition_is_rejected() -> None:
    for cid in _sample_ids():
        for form in (cid, _compact(cid)):
            for pos in range(len(form) - 1):
                a, b = form[pos], form[pos + 1]
                if a == b:
                    continue
                swapped = form[:pos] + b + a + form[pos + 2 :]
                assert _rejected(swapped), (cid, swapped)


def test_transposition_across_country_and_body_is_caught_for_every_letter_pair() -> None:
    # The one place two different symbol sets meet; checked exhaustively.
    body_letters = [ch for ch in ALPHABET if ch.isalpha()]
    for x in LETTERS:
        for y in body_letters:
            if x == y:
                continue
            cid = _with_check("Q" + x, y + "K3FQ9XM2PLA")
            compact = _compact(cid)
            assert _rejected(compact[0] + y + x + compact[3:]), cid


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "malformed"),
        ("DE-7K3F-Q9XM-2PLA", "malformed"),
        ("DE-7K3F-Q9XM-2PLA-88", "malformed"),
        ("DE7K3F-Q9XM-2PLA-8", "malformed"),
        ("DE-7K3FQ-9XM-2PLA-8", "malformed"),
        ("DE 7K3F Q9XM 2PLA 8", "malformed"),
        ("D3-7K3F-Q9XM-2PLA-8", "country"),
        ("DE-7K3F-Q9XM-2PL0-8", "not used in ids"),
        ("DE-7K3F-Q9XM-2PLI-8", "not used in ids"),
        ("DE-7K3F-Q9XM-2PLÄ-8", "non-ASCII"),
        ("\u0131T-7K3F-Q9XM-2PLA-8", "non-ASCII"),  # dotless i upper-cases to I
        ("X" * 65, "too long"),
    ],
)
def test_bad_ids_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment) as info:
        parse_credential_id(text, field="items[3].credential_id")
    assert info.value.field == "items[3].credential_id"


def test_failed_check_suggests_a_typo() -> None:
    cid = new_credential_id("PL")
    last = cid[-1]
    typo = cid[:-1] + ALPHABET[(ALPHABET.index(last) + 1) % len(ALPHABET)]
    with pytest.raises(ValidationError, match="check character does not match: a typo"):
        parse_credential_id(typo)


def test_countries_with_letters_outside_the_alphabet() -> None:
    for country in ("IT", "IO", "UA", "OM", "US"):
        cid = new_credential_id(country)
        assert parse_credential_id(cid) == cid
        assert country_of(cid) == country


def test_new_credential_id_rejects_bad_country() -> None:
    for country in ("de", "D", "DEU", "D1", "ÄÖ", ""):
        with pytest.raises(ValidationError) as info:
            new_credential_id(country)
        assert info.value.field == "country"


def test_is_country_code() -> None:
    assert is_country_code("DE")
    assert not is_country_code("de")
    assert not is_country_code("D")
    assert not is_country_code("DEU")
    assert not is_country_code("D1")
    assert not is_country_code("ÄÖ")


def test_ids_are_distinct_and_uniform() -> None:
    ids = [new_credential_id("NL") for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    counts = Counter(ch for cid in ids for ch in _compact(cid)[2:14])
    total = sum(counts.values())
    expected = total / len(ALPHABET)
    chi2 = sum((counts[ch] - expected) ** 2 / expected for ch in ALPHABET)
    # 30 degrees of freedom: mean 30, sd ~7.7. P(chi2 > 150) is below 1e-16,
    # so this cannot flake, yet any real bias (a symbol never or twice as
    # often drawn) lands in the thousands.
    assert chi2 < 150, chi2


_ID_SYMBOLS = LETTERS + ALPHABET + string.ascii_lowercase + "-01 \t\n"


@given(
    st.one_of(
        st.text(max_size=80),
        st.text(alphabet=_ID_SYMBOLS, min_size=14, max_size=22),
        st.builds(
            lambda country, body, check, sep: sep.join(
                [country, body[:4], body[4:8], body[8:], check]
            ),
            st.text(alphabet=LETTERS, min_size=2, max_size=2),
            st.text(alphabet=ALPHABET, min_size=12, max_size=12),
            st.sampled_from(ALPHABET),
            st.sampled_from(["-", ""]),
        ),
    )
)
def test_parse_returns_canonical_id_or_raises_validation_error(text: str) -> None:
    try:
        cid = parse_credential_id(text)
    except ValidationError:
        return
    assert parse_credential_id(cid) == cid
    assert [i for i, ch in enumerate(cid) if ch == "-"] == list(CANONICAL_HYPHENS)
    assert _compact(cid) == _compact(text.strip().upper())
