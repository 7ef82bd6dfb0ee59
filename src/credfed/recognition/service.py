"""Recognition rules of this node and of its partners: add, withdraw, decide.

Rules:

1. **Signed here, only our own.** This node signs only its own rules. A new
   rule id starts at version 1; a change of an existing rule is its next
   version; a withdrawal is a signed tombstone (the next version, marked
   removed). Every version is kept.
2. **Conflicts refused when added.** A rule that could match the same
   credential as another current rule of equal specificity is refused
   (:func:`credfed.recognition.matching.check_conflicts`), so a decision is
   never a tie at verify time. An import is checked as a whole, all or
   nothing.
3. **Partners' rules verified before kept.** A partner's rule is kept only
   after its signature was checked with the deciding country's pinned keys;
   the highest version of each rule counts, so a late or replayed older
   version never replaces a newer one.
4. **In force at the moment asked.** Decisions use the rules current when
   asked: a change applies to the next lookup.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

import structlog

from credfed.clock import Clock
from credfed.crypto.keys import SigningKey, VerifyingKey
from credfed.errors import CredfedError, NotFoundError, ValidationError
from credfed.models import Envelope, Qualification
from credfed.recognition import matching
from credfed.recognition.rules import Rule, decode_rule, sign_rule, validate_rule, verify_rule
from credfed.storage.base import Store, StoredRule

log = structlog.get_logger("credfed.recognition")

#: Rules in one import.
MAX_IMPORT = 1000


class DecisionOutcome(enum.StrEnum):
    FULL = "full"
    CONDITIONAL = "conditional"
    NOT_RECOGNISED = "not_recognised"
    NO_RULE = "no_rule"  # no rule covers it: decided case by case
    DOMESTIC = "domestic"  # issued in the deciding country itself


@dataclass(frozen=True, slots=True)
class Decision:
    country: str
    outcome: DecisionOutcome
    rule: Rule | None = None
    signed_rule: Envelope | None = None


@dataclass(frozen=True, slots=True)
class SignedRule:
    rule: Rule
    envelope: Envelope


KeysOf = Callable[[str], Mapping[str, VerifyingKey] | None]
"""The pinned keys of a partner country (every key of its descriptor), or
None for a country this node has not pinned."""


class Recognition:
    def __init__(
        self, store: Store, key: SigningKey, country: str, clock: Clock, keys_of: KeysOf
    ) -> None:
        self._store = store
        self._key = key
        self.country = country
        self._clock = clock
        self._keys_of = keys_of
        self._lock = asyncio.Lock()
        # Newest version of each rule, per deciding country (tombstones included).
        self._newest: dict[str, list[SignedRule]] = {}
        # The same, by rule id, and the bare rules: built when a country's rules
        # change, not on every verify that asks for a decision.
        self._by_id: dict[str, dict[str, SignedRule]] = {}
        self._rules: dict[str, list[Rule]] = {}

    async def load(self) -> None:
        for country in await self._store.recognition_countries():
            await self._reload(country)

    async def _reload(self, country: str) -> None:
        stored = await self._store.current_recognition_rules(country)
        newest = [SignedRule(decode_rule(s.envelope.payload), s.envelope) for s in stored]
        self._newest[country] = newest
        self._by_id[country] = {r.rule.rule_id: r for r in newest}
        self._rules[country] = [r.rule for r in newest]

    # -- this node's own rules ---------------------------------------------------------

    def rules(self) -> list[SignedRule]:
        """This node's current rules (withdrawn ones left out), by rule id."""
        return [r for r in self._newest.get(self.country, []) if not r.rule.removed]

    async def add(self, draft: Rule) -> SignedRule:
        """One rule; a refused field is named ``rule.…``."""
        return (await self._add([draft], indexed=False))[0]

    async def add_many(self, drafts: Sequence[Rule]) -> list[SignedRule]:
        """Sign and keep new rules or new versions (rule 1), refusing any that
        conflicts with a current rule or with another of ``drafts`` (rule 2).
        All or nothing; a refused field is named ``rules[n].…``."""
        return await self._add(drafts, indexed=True)

    async def _add(self, drafts: Sequence[Rule], *, indexed: bool) -> list[SignedRule]:
        if len(drafts) > MAX_IMPORT:
            raise ValidationError("rules", f"at most {MAX_IMPORT} rules at once")
        ids = [d.rule_id for d in drafts]
        if len(set(ids)) != len(ids):
            raise ValidationError("rules", "a rule id appears twice")
        async with self._lock:
            newest = {rid: r.rule for rid, r in self._by_id.get(self.country, {}).items()}
            now = self._clock()
            signed: list[SignedRule] = []
            for n, draft in enumerate(drafts):
                previous = newest.get(draft.rule_id)
                rule = replace(
                    draft,
                    country=self.country,
                    version=previous.version + 1 if previous else 1,
                    removed=False,
                    issued_at=now,
                )
                try:
                    rule = validate_rule(rule)
                except ValidationError as exc:
                    field = f"rules[{n}]{exc.field.removeprefix('rule')}" if indexed else exc.field
                    raise ValidationError(field, exc.message) from None
                matching.check_conflicts(rule, [r for r in newest.values() if not r.removed])
                newest[rule.rule_id] = rule
                signed.append(SignedRule(rule, sign_rule(self._key, rule)))
            await self._keep(self.country, signed)
        for s in signed:
            log.info("recognition.rule_added", rule_id=s.rule.rule_id, version=s.rule.version)
        return signed

    async def remove(self, rule_id: str) -> SignedRule:
        """Withdraw a rule: its next version, marked removed and signed."""
        async with self._lock:
            current = {r.rule.rule_id: r.rule for r in self.rules()}.get(rule_id)
            if current is None:
                raise NotFoundError(f"no current recognition rule {rule_id[:64]!r}")
            tombstone = replace(
                current, version=current.version + 1, removed=True, issued_at=self._clock()
            )
            signed = SignedRule(tombstone, sign_rule(self._key, tombstone))
            await self._keep(self.country, [signed])
        log.info("recognition.rule_removed", rule_id=rule_id, version=tombstone.version)
        return signed

    async def _keep(self, country: str, rules: Sequence[SignedRule]) -> None:
        await self._store.add_recognition_rules(
            [StoredRule(country, r.rule.rule_id, r.rule.version, r.envelope) for r in rules]
        )
        await self._reload(country)

    # -- partners' rules ------------------------------------------------------------------

    async def accept(self, country: str, envelopes: Iterable[Envelope]) -> int:
        """Keep the rules a partner (or a relay) served for ``country``,
        each checked with that country's pinned keys (rule 3). A rule that
        fails its check is left out and logged; returns how many were new."""
        if country == self.country:
            return 0  # our own rules are never taken from anyone else
        keys = self._keys_of(country)
        if keys is None:
            return 0
        held = {(r.rule.rule_id, r.rule.version) for r in self._newest.get(country, [])}
        fresh: list[SignedRule] = []
        for envelope in envelopes:
            try:
                rule = verify_rule(envelope, keys, country)
            except CredfedError as exc:
                log.warning("recognition.rule_refused", country=country, reason=str(exc)[:200])
                continue
            if (rule.rule_id, rule.version) not in held:
                fresh.append(SignedRule(rule, envelope))
        if not fresh:
            return 0
        async with self._lock:
            added = await self._store.add_recognition_rules(
                [StoredRule(country, r.rule.rule_id, r.rule.version, r.envelope) for r in fresh]
            )
            await self._reload(country)
        return added

    def served(self, country: str) -> list[Envelope]:
        """The newest version of each rule of ``country`` (tombstones
        included), as signed by it: what GetRecognitionRules answers."""
        return [r.envelope for r in self._newest.get(country, [])]

    # -- decisions ---------------------------------------------------------------------------

    def decide(self, origin: str, qualification: Qualification, on: date) -> Decision:
        """This node's decision (rule 4)."""
        return self._decide(self.country, origin, qualification, on)

    def where(self, origin: str, qualification: Qualification, on: date) -> list[Decision]:
        """This node's decision, then each partner's whose rules it holds or
        that is the origin itself, by country code."""
        partners = {c for c in self._newest if c != self.country}
        if origin != self.country:
            partners.add(origin)
        return [self.decide(origin, qualification, on)] + [
            self._decide(country, origin, qualification, on) for country in sorted(partners)
        ]

    def _decide(self, country: str, origin: str, q: Qualification, on: date) -> Decision:
        if country == origin:
            return Decision(country, DecisionOutcome.DOMESTIC)
        chosen = matching.decide(self._rules.get(country, []), origin, q, on)
        if chosen is None:
            return Decision(country, DecisionOutcome.NO_RULE)
        return Decision(
            country,
            DecisionOutcome(chosen.outcome.value),
            chosen,
            self._by_id[country][chosen.rule_id].envelope,
        )
