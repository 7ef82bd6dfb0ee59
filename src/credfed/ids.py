"""Credential ids: ``DE-7K3F-Q9XM-2PLA-8``.

An id is a two-letter origin country (which routes a lookup), twelve random
body symbols in three groups of four, and one check symbol. Body and check
symbols come from ``ALPHABET``, 31 symbols without 0/1/I/O/U so that ids
read aloud or retyped are not misread. The body is drawn with ``secrets``:
31**12 is about 2**59.5, so ids cannot be guessed or enumerated.

Check symbol
------------
Write the id without hyphens as 15 symbols s1..s15 (country, body, check).
Every symbol has one value, whatever its position: its index in ``ALPHABET``
(0..30). The country may also contain I, O and U, which ``ALPHABET`` lacks;
they take the values 0, 1, 2, which elsewhere belong to the digits 2, 3, 4 --
a clash that cannot matter, because a country never contains a digit. So the
26 letters have 26 distinct values mod 31 and so do the 31 body symbols.
The id is valid iff sum(i * value(s_i)) == 0 (mod 31) for weights i = 1..15.

Why this catches every single typo and every swap of two neighbours:

* A substitution at position i changes the sum by i * d, where d is the
  difference of two distinct values of the symbols allowed there, so
  0 < |d| < 31. Since 31 is prime and 0 < i < 31, i * d is not 0 mod 31.
* Swapping differing neighbours x, y at positions i, i + 1 changes the sum by
  (i * y + (i + 1) * x) - (i * x + (i + 1) * y) = x - y, which is not 0 mod
  31 because the two symbols have distinct values. This holds across the
  country/body boundary only because one value table serves both parts: with
  A=0..Z=25 for the country and ALPHABET indexes for the body, ``DJG...`` and
  ``DGJ...`` would share a checksum. A swap that puts a digit into the
  country or I/O/U into the body is rejected by the format check anyway.
* In the hyphenated form, a swap or substitution involving a hyphen moves or
  removes it, and the format check rejects it.
"""

from __future__ import annotations

import os
import re
import secrets
import threading

from credfed.errors import ValidationError

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTVWXYZ"
_MODULUS = len(ALPHABET)  # 31, prime: the whole argument above rests on it
_BODY_LENGTH = 12
_GROUP = 4
_MAX_INPUT = 64  # long enough for any sane paste, short enough to never be costly

# One value per symbol, shared by all positions (see the module docstring).
_VALUES: dict[str, int] = {ch: i for i, ch in enumerate(ALPHABET)} | {"I": 0, "O": 1, "U": 2}
# The weight of the check symbol is 15; its inverse mod 31 solves for it.
_CHECK_WEIGHT = 2 + _BODY_LENGTH + 1
_CHECK_WEIGHT_INVERSE = pow(_CHECK_WEIGHT, -1, _MODULUS)

_COUNTRY_RE = re.compile(r"[A-Z]{2}", re.ASCII)
_CANONICAL_RE = re.compile(r"[A-Z0-9]{2}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]", re.ASCII)
_COMPACT_RE = re.compile(r"[A-Z0-9]{15}", re.ASCII)
_FORMAT_HINT = "expected CC-XXXX-XXXX-XXXX-X (country, 12 body symbols, check symbol)"


def is_country_code(text: str) -> bool:
    """True for exactly two ASCII upper-case letters (ISO 3166 alpha-2 shape)."""
    return _COUNTRY_RE.fullmatch(text) is not None


def new_credential_id(country: str) -> str:
    """A fresh random id for a credential issued in ``country``."""
    if not is_country_code(country):
        raise ValidationError("country", f"{country!r} is not a two-letter country code")
    return _format(country, (body := _random_body()), _check_symbol(country + body))


class _RandomSymbols:
    """Uniform random alphabet symbols from the OS CSPRNG, read in blocks:
    a bulk import issues thousands of ids a second and a system call per id
    shows in its profile. Rejection sampling keeps every symbol uniform
    (bytes >= 248 = 8 * 31 are discarded). The block is thrown away in a
    forked child, so two processes never hand out the same symbols."""

    _BLOCK = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._symbols = ""
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._symbols = ""

    def take(self, count: int) -> str:
        with self._lock:
            while len(self._symbols) < count:
                limit = 8 * len(ALPHABET)
                block = secrets.token_bytes(self._BLOCK)
                self._symbols += "".join(ALPHABET[b % len(ALPHABET)] for b in block if b < limit)
            taken, self._symbols = self._symbols[:count], self._symbols[count:]
            return taken


_random = _RandomSymbols()


def _random_body() -> str:
    return _random.take(_BODY_LENGTH)


def parse_credential_id(text: str, field: str = "credential_id") -> str:
    """Validate a typed or pasted id and return its canonical form.

    Accepts surrounding whitespace, lower case, and the 15 symbols without
    hyphens. Raises ValidationError(field, ...) saying what is wrong.
    """
    if len(text) > _MAX_INPUT:
        raise ValidationError(field, f"too long ({len(text)} characters); {_FORMAT_HINT}")
    # ASCII before upper-casing: str.upper maps e.g. the dotless i (U+0131) to "I".
    stripped = text.strip()
    if not stripped.isascii():
        raise ValidationError(field, f"contains non-ASCII characters; {_FORMAT_HINT}")
    candidate = stripped.upper()
    if _CANONICAL_RE.fullmatch(candidate):
        compact = candidate.replace("-", "")
    elif _COMPACT_RE.fullmatch(candidate):
        compact = candidate
    else:
        raise ValidationError(field, f"{stripped!r} is malformed; {_FORMAT_HINT}")
    country, rest = compact[:2], compact[2:]
    if not is_country_code(country):
        raise ValidationError(field, f"country {country!r} must be two letters A-Z")
    bad = sorted({ch for ch in rest if ch not in ALPHABET})
    if bad:
        raise ValidationError(
            field, f"symbols {''.join(bad)!r} are not used in ids (no 0, 1, I, O or U)"
        )
    if _weighted_sum(compact) % _MODULUS != 0:
        raise ValidationError(field, "check character does not match: a typo?")
    return _format(country, rest[:_BODY_LENGTH], rest[_BODY_LENGTH])


def country_of(credential_id: str) -> str:
    """The origin country of a (valid) credential id."""
    return parse_credential_id(credential_id)[:2]


def _weighted_sum(symbols: str) -> int:
    return sum(weight * _VALUES[ch] for weight, ch in enumerate(symbols, start=1))


def _check_symbol(country_and_body: str) -> str:
    # Solve weighted_sum + 15 * c == 0 (mod 31) for c.
    remainder = _weighted_sum(country_and_body) % _MODULUS
    return ALPHABET[(-remainder * _CHECK_WEIGHT_INVERSE) % _MODULUS]


def _format(country: str, body: str, check: str) -> str:
    groups = [body[i : i + _GROUP] for i in range(0, _BODY_LENGTH, _GROUP)]
    return "-".join([country, *groups, check])
