"""Which recognition rule decides for a credential (docs/recognition.md).

Pure functions over :class:`~credfed.recognition.rules.Rule` values.

Matching order
--------------
1. Only the *current* rules count: the highest version of each
   ``(country, rule_id)``; a rule whose highest version is a tombstone is
   withdrawn (:func:`current`).
2. A rule matches a qualification of ``origin`` on day ``on`` when it is not
   removed, covers that origin, ``valid_from <= on <= valid_until`` (both
   inclusive, no ``valid_until``: open-ended) and its match applies: the
   exact national code (compared after stripping, case-sensitive), or all
   given criteria: ``eqf_min <= eqf_level <= eqf_max``, the ISCO-08 unit
   group starts with ``isco_prefix``, the sector is ``sector``
   (:func:`matches`).
3. Of the matching rules the most specific decides (:func:`specificity`,
   larger is more specific):

   * a national-code rule beats every criteria rule;
   * criteria rules compare, in this order, the length of ``isco_prefix``
     (0-4), whether a sector is given, and the width of the EQF range
     (narrower wins).

   E.g. ``isco 7411, any sector, EQF 3-5`` beats ``isco 741, energy, EQF 4``
   (longer prefix first), which beats ``isco 741, any sector, EQF 4``
   (sector), which beats ``isco 741, any sector, EQF 3-5`` (narrower range).
4. Two current rules of a country that could match the same credential on
   the same day must differ in specificity: :func:`check_conflicts` refuses
   a rule that ties with one already in force, when the rule is added. So
   among rules that passed it the winner is unique. Should a tie reach
   :func:`decide` anyway (rules that bypassed the check), the lowest
   ``rule_id`` (then country) wins, so the answer never depends on the order
   of the input.

:func:`decide` expects the rules of one deciding country: rules of different
countries never conflict (:func:`could_overlap`) and are not meant to be
weighed against each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from credfed.errors import PreconditionError
from credfed.models import Qualification
from credfed.recognition.rules import Rule


def matches(rule: Rule, origin: str, q: Qualification, on: date) -> bool:
    """Whether ``rule`` applies to qualification ``q`` of ``origin`` on ``on``."""
    if rule.removed or rule.origin != origin:
        return False
    if on < rule.valid_from or (rule.valid_until is not None and on > rule.valid_until):
        return False
    m = rule.match
    if m.national_code is not None:
        return q.national_code.strip() == m.national_code
    if m.eqf_min is None or m.eqf_max is None:  # not a valid rule
        return False
    if not m.eqf_min <= q.eqf_level <= m.eqf_max:
        return False
    if m.isco_prefix is not None and not q.isco_code.startswith(m.isco_prefix):
        return False
    return m.sector is None or q.sector == m.sector


def specificity(rule: Rule) -> tuple[int, int, int, int]:
    """A sort key: larger is more specific.

    ``(1, 0, 0, 0)`` for a national-code rule; for a criteria rule
    ``(0, len(isco_prefix), 1 if sector else 0, -(eqf_max - eqf_min))``.
    Compared lexicographically. Examples:

    * national code ``DE-HWK-EGT-2019``: ``(1, 0, 0, 0)``
    * ISCO ``7411``, any sector, EQF 3-5: ``(0, 4, 0, -2)``
    * ISCO ``741``, energy, EQF 4-5: ``(0, 3, 1, -1)``
    * ISCO ``741``, any sector, EQF 4: ``(0, 3, 0, 0)``
    * no ISCO, any sector, EQF 1-8: ``(0, 0, 0, -7)``
    """
    m = rule.match
    if m.national_code is not None:
        return (1, 0, 0, 0)
    width = (m.eqf_max or 0) - (m.eqf_min or 0)
    return (0, len(m.isco_prefix or ""), 0 if m.sector is None else 1, -width)


def could_overlap(a: Rule, b: Rule) -> bool:
    """Whether ``a`` and ``b`` could both match one credential on one day.

    Same deciding country and origin, intersecting validity periods, and:
    two national-code rules with the same code; two criteria rules with
    intersecting EQF ranges, ISCO prefixes of which one extends the other
    (or either absent) and equal sectors (or either absent). A national-code
    rule and a criteria rule are taken to overlap (the code's qualification
    may meet the criteria); they never tie in specificity.
    """
    if a.country != b.country or a.origin != b.origin:
        return False
    if b.valid_until is not None and a.valid_from > b.valid_until:
        return False
    if a.valid_until is not None and b.valid_from > a.valid_until:
        return False
    ma, mb = a.match, b.match
    if ma.national_code is not None and mb.national_code is not None:
        return ma.national_code == mb.national_code
    if ma.national_code is not None or mb.national_code is not None:
        return True
    if ma.eqf_min is None or ma.eqf_max is None or mb.eqf_min is None or mb.eqf_max is None:
        return False  # not valid rules
    if ma.eqf_min > mb.eqf_max or mb.eqf_min > ma.eqf_max:
        return False
    pa, pb = ma.isco_prefix or "", mb.isco_prefix or ""
    if not (pa.startswith(pb) or pb.startswith(pa)):
        return False
    return ma.sector is None or mb.sector is None or ma.sector == mb.sector


def check_conflicts(new: Rule, current: Iterable[Rule]) -> None:
    """Refuse ``new`` if it ties with a rule in force.

    Raises PreconditionError if a rule of ``current`` that is not removed and
    is not an earlier version of ``new`` (same country and rule id) could
    overlap with ``new`` and has the same specificity: :func:`decide` could
    not choose between them. A tombstone withdraws and never conflicts.
    """
    if new.removed:
        return
    rank = specificity(new)
    for other in current:
        if other.removed or (other.country, other.rule_id) == (new.country, new.rule_id):
            continue
        if specificity(other) == rank and could_overlap(new, other):
            raise PreconditionError(
                f"rule {new.rule_id} has equal specificity with rule {other.rule_id}"
                " and both could match the same credential; make one of them more"
                " specific, narrow its validity period or withdraw it"
            )


def decide(rules: Iterable[Rule], origin: str, q: Qualification, on: date) -> Rule | None:
    """The current rule that decides for ``q`` of ``origin`` on ``on``, or None.

    ``rules`` may be a history (several versions, tombstones): only the
    :func:`current` ones count. The most specific matching rule wins; on a
    tie (impossible among rules that passed :func:`check_conflicts`) the
    lowest ``rule_id``, then country.
    """
    candidates = [r for r in current(rules) if matches(r, origin, q, on)]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda r: (tuple(-x for x in specificity(r)), r.rule_id, r.country),
    )


def current(rules: Iterable[Rule]) -> list[Rule]:
    """The rules in force: the highest version per ``(country, rule_id)``,
    without those whose highest version is a tombstone.

    Duplicates are fine. Two different rules with the same version (which an
    honest node never signs) resolve deterministically, the tombstone first,
    then the latest ``issued_at``. Sorted by country and rule id.
    """
    best: dict[tuple[str, str], Rule] = {}
    for rule in rules:
        key = (rule.country, rule.rule_id)
        held = best.get(key)
        if held is None or _precedence(rule) > _precedence(held):
            best[key] = rule
    return [r for _, r in sorted(best.items()) if not r.removed]


def _precedence(rule: Rule) -> tuple[int, bool, float, str]:
    # repr: a last, total tie-break so that input order never matters.
    return (rule.version, rule.removed, rule.issued_at.timestamp(), repr(rule))
