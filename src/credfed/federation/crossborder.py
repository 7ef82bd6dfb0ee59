"""Cross-border verify: an employer asks this node about another country's
credential.

Rules:

1. Only an origin this node pinned is asked, and nothing an origin (or a
   relay) sends is believed before it is checked with that origin's pinned
   keys: the record's signature, the record naming the asked id and origin,
   the checkpoint's signature, the status entry naming the credential, and
   the entry's inclusion proof under the checkpoint.
2. The lookup answer's checkpoint must agree with the replica where the
   replica covers it; a disagreement is a fork, recorded like any other.
3. The status is the newer of the lookup answer's entry and this node's
   replica of the origin's log (by log position; the later checkpoint on a
   tie), and the answer says which it used.
4. Signed records of other countries are cached in memory only, for at most
   ``record_ttl`` seconds and ``max_records`` entries. A cached record
   answers without asking the origin, so an answer still comes while the
   origin is unreachable; an expired record is never used.
5. Past the origin's maximum staleness (the age of the checkpoint the status
   is proven under), the status is unknown (``status=None``), never valid.
6. A wrong holder attribute and an unknown id get the same NotFoundError.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from credfed.clock import Clock
from credfed.crypto.envelope import CREDENTIAL_TYPE, verify_envelope
from credfed.errors import (
    NotFoundError,
    PreconditionError,
    ProofError,
    SignatureError,
    UntrustedSignerError,
    ValidationError,
)
from credfed.federation.descriptor import all_keys
from credfed.federation.replica import Replicas
from credfed.lifecycle import effective_status
from credfed.models import Envelope, SignedCheckpoint, StatusState
from credfed.records import Record, decode_record
from credfed.statuslog import merkle
from credfed.statuslog.entries import decode_entry
from credfed.storage.base import Store
from credfed.verification import (
    NOT_FOUND_MESSAGE,
    HolderAttribute,
    StatusSource,
    Verification,
    age_seconds,
    matches_record,
    proof_node_ids,
)


@dataclass(frozen=True, slots=True)
class LookupAnswer:
    """An origin's answer to a lookup, unchecked as received."""

    signed_record: Envelope
    entry_index: int
    leaf: bytes
    proof: list[bytes]
    checkpoint: Envelope


class Lookup(Protocol):
    async def __call__(
        self, country: str, credential_id: str, attribute: HolderAttribute
    ) -> LookupAnswer:
        """Ask ``country`` (directly or through a relay). Raises NotFoundError
        when the origin has no such credential, UnavailableError when no
        route answers."""
        ...


@dataclass(frozen=True, slots=True)
class _Checked:
    """A lookup answer after every check of rule 1."""

    record: Record
    signed_record: Envelope
    state: StatusState
    entry_index: int
    leaf: bytes
    proof: list[bytes]
    checkpoint: SignedCheckpoint


class CrossBorder:
    def __init__(
        self,
        replicas: Replicas,
        store: Store,
        lookup: Lookup,
        clock: Clock,
        *,
        record_ttl: float,
        max_records: int,
        max_staleness: Callable[[str], float],
    ) -> None:
        self._replicas = replicas
        self._store = store
        #: How the origin is asked; the server sets it once links are open.
        self.lookup = lookup
        self._clock = clock
        self._ttl = record_ttl
        self._max_records = max_records
        self._max_staleness = max_staleness
        # credential id -> (monotonic expiry, checked answer)
        self._cache: OrderedDict[str, tuple[float, _Checked]] = OrderedDict()

    async def verify(self, credential_id: str, attribute: HolderAttribute) -> Verification:
        country = credential_id[:2]
        trust = self._replicas.trust
        if trust.descriptor(country) is None:
            raise PreconditionError(
                f"credential_id: this node has no partnership with {country}; its"
                " credentials cannot be verified here"
            )
        if trust.is_forked(country):
            raise PreconditionError(
                f"{country} is proven to have forked its status log; its credentials"
                " cannot be verified until the operators resolve it"
            )
        answer = self._cached(credential_id)
        cached = answer is not None
        if answer is None:
            received = await self.lookup(country, credential_id, attribute)
            answer = self._check(country, credential_id, received)
            # The origin must show employers the tree it shows its partners.
            await self._replicas.audit(country, answer.checkpoint)
            self._remember(credential_id, answer)
        if not matches_record(answer.record, attribute):
            raise NotFoundError(NOT_FOUND_MESSAGE)
        return await self._answer(country, credential_id, answer, cached)

    async def _answer(
        self, country: str, credential_id: str, answer: _Checked, cached: bool
    ) -> Verification:
        state, index, leaf, proof, checkpoint = (
            answer.state,
            answer.entry_index,
            answer.leaf,
            answer.proof,
            answer.checkpoint,
        )
        source = StatusSource.CACHED_RECORD if cached else StatusSource.ORIGIN
        read = await self._store.get_replica_proof(country, credential_id, proof_node_ids)
        if read is not None and (
            read.index > index
            or (
                read.index == index
                and read.checkpoint.checkpoint.timestamp >= checkpoint.checkpoint.timestamp
            )
        ):
            entry = decode_entry(read.leaf)  # verified when it entered the replica
            state, index, leaf, checkpoint = entry.state, read.index, read.leaf, read.checkpoint
            proof = merkle.inclusion_proof(index, checkpoint.checkpoint.tree_size, read.nodes)
            source = StatusSource.REPLICA
        now = self._clock()
        age = age_seconds(checkpoint, now)
        status = (
            None
            if age > self._max_staleness(country)
            else effective_status(state, answer.record.valid_until, now.date())
        )
        return Verification(
            credential_id=credential_id,
            record=answer.record,
            signed_record=answer.signed_record,
            state=state,
            status=status,
            entry_index=index,
            leaf=leaf,
            proof=proof,
            checkpoint=checkpoint,
            data_age_seconds=age,
            source=source,
            signature_checked=True,
            record_cached=cached,
        )

    def _check(self, country: str, credential_id: str, got: LookupAnswer) -> _Checked:
        trust = self._replicas.trust
        descriptor = trust.descriptor(country)
        if descriptor is None:  # removed while the lookup ran
            raise PreconditionError(f"{country} is no longer pinned")
        # Records carry no signing time; any key the origin ever listed (a
        # rotated-out key too) vouches for what it signed.
        keys = all_keys(descriptor)
        try:
            record = decode_record(verify_envelope(got.signed_record, keys, CREDENTIAL_TYPE))
        except (SignatureError, ValidationError) as exc:
            raise UntrustedSignerError(f"record from {country} refused: {exc}") from None
        if record.credential_id != credential_id or record.origin != country:
            raise UntrustedSignerError(
                f"{country} answered with a record of another credential: refused"
            )
        checkpoint = trust.check_checkpoint(country, got.checkpoint)
        try:
            entry = decode_entry(got.leaf)
        except ValidationError as exc:
            raise ProofError(f"status entry from {country} is malformed: {exc}") from None
        if (
            entry.origin != country
            or entry.credential_id != credential_id
            or entry.index != got.entry_index
        ):
            raise ProofError(f"status entry from {country} is not this credential's: refused")
        merkle.verify_inclusion(
            merkle.leaf_hash(got.leaf),
            got.entry_index,
            checkpoint.checkpoint.tree_size,
            got.proof,
            checkpoint.checkpoint.root_hash,
        )
        return _Checked(
            record=record,
            signed_record=got.signed_record,
            state=entry.state,
            entry_index=got.entry_index,
            leaf=got.leaf,
            proof=list(got.proof),
            checkpoint=checkpoint,
        )

    # -- the record cache (rule 4) ----------------------------------------------

    def _cached(self, credential_id: str) -> _Checked | None:
        hit = self._cache.get(credential_id)
        if hit is None:
            return None
        expires, answer = hit
        if time.monotonic() >= expires:
            del self._cache[credential_id]
            return None
        return answer

    def _remember(self, credential_id: str, answer: _Checked) -> None:
        if self._ttl <= 0 or self._max_records <= 0:
            return
        self._cache[credential_id] = (time.monotonic() + self._ttl, answer)
        self._cache.move_to_end(credential_id)
        while len(self._cache) > self._max_records:
            self._cache.popitem(last=False)

    def purge(self) -> int:
        """Drop every cached record; returns how many there were."""
        count = len(self._cache)
        self._cache.clear()
        return count

    def cached_records(self) -> int:
        return len(self._cache)
