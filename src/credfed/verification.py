"""Verification domain service: what an employer learns about a credential.

A wrong holder attribute and an unknown id raise the same NotFoundError with
the same message, so that a verifier cannot probe which ids exist.
"""

from __future__ import annotations

import enum
import functools
import hmac
from dataclasses import dataclass
from datetime import date, datetime

from credfed.clock import Clock
from credfed.errors import NotFoundError, ProofError, ValidationError
from credfed.lifecycle import effective_status
from credfed.models import Envelope, SignedCheckpoint, Status, StatusState, StoredCredential
from credfed.records import Record, decode_record
from credfed.statuslog import log as statuslog
from credfed.statuslog import merkle
from credfed.storage.base import Store
from credfed.validation import family_key

NOT_FOUND_MESSAGE = "no credential matches this id and holder attribute"


@dataclass(frozen=True, slots=True)
class HolderAttribute:
    """Exactly one of the two is set."""

    birth_date: date | None = None
    family_name: str | None = None


class StatusSource(enum.Enum):
    """Where the status of an answer came from."""

    ORIGIN = "origin"  # this node's own log, or a fresh lookup at the origin
    REPLICA = "replica"  # this node's replica of the origin's log
    CACHED_RECORD = "cached_record"  # the entry that came with a cached lookup answer


@dataclass(frozen=True, slots=True)
class Verification:
    """An answer, with the signed bytes and proof to check it independently:
    ``leaf`` is entry ``entry_index`` of the log, proven by ``proof`` under
    ``checkpoint``. ``status`` is None when the status is unknown: the data
    is older than the origin's staleness limit."""

    credential_id: str
    record: Record
    signed_record: Envelope
    state: StatusState
    status: Status | None
    entry_index: int
    leaf: bytes
    proof: list[bytes]
    checkpoint: SignedCheckpoint
    data_age_seconds: int
    source: StatusSource = StatusSource.ORIGIN
    signature_checked: bool = False
    record_cached: bool = False


class Verifier:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._heartbeat: SignedCheckpoint | None = None

    def heartbeat(self, signed: SignedCheckpoint) -> None:
        """Serve ``signed``, a fresher checkpoint of the latest size, in place
        of the stored one (the origin re-signs its unchanged log so that
        partners can tell a quiet log from a frozen one)."""
        self._heartbeat = signed

    async def verify(self, credential_id: str, attribute: HolderAttribute) -> Verification:
        for _ in range(3):
            checkpoint = await self.checkpoint()
            size = checkpoint.checkpoint.tree_size
            read = await self._store.get_credential_proof(
                credential_id,
                functools.partial(proof_node_ids, size=size),
            )
            if read is None or not _matches(read.credential, attribute):
                raise NotFoundError(NOT_FOUND_MESSAGE)
            # A change committed between the two reads: prove against the newer checkpoint.
            if read.credential.last_entry_index < size:
                break
        else:
            raise ProofError("the log moved on three times during one verification")
        credential = read.credential
        proof = merkle.inclusion_proof(credential.last_entry_index, size, read.nodes)
        now = self._clock()
        return Verification(
            credential_id=credential.credential_id,
            record=decode_record(credential.record.payload),
            signed_record=credential.record,
            state=credential.state,
            status=effective_status(credential.state, credential.valid_until, now.date()),
            entry_index=credential.last_entry_index,
            leaf=read.leaf,
            proof=proof,
            checkpoint=checkpoint,
            data_age_seconds=age_seconds(checkpoint, now),
        )

    async def checkpoint(self) -> SignedCheckpoint:
        checkpoint = await self._store.latest_checkpoint()
        beat = self._heartbeat
        if checkpoint is None:
            if beat is not None and beat.checkpoint.tree_size == 0:
                return beat  # an empty log, signed so that partners can follow it
            raise NotFoundError("the status log is empty: no checkpoint yet")
        if (
            beat is not None
            and beat.checkpoint.tree_size == checkpoint.checkpoint.tree_size
            and beat.checkpoint.timestamp > checkpoint.checkpoint.timestamp
        ):
            return beat
        return checkpoint

    async def consistency(
        self, old_size: int, new_size: int
    ) -> tuple[list[bytes], SignedCheckpoint | None]:
        """Consistency proof old_size -> new_size (0 = latest)."""
        latest = (await self.checkpoint()).checkpoint.tree_size
        size = new_size or latest
        if not 0 < old_size <= min(size, latest):
            raise ValidationError("old_size", f"must be between 1 and {min(size, latest)}")
        if size > latest:
            raise ValidationError("new_size", f"is beyond the log size {latest}")
        proof = await statuslog.consistency_proof(self._store, old_size, size)
        return proof, await self._store.get_checkpoint(size)


def age_seconds(checkpoint: SignedCheckpoint, now: datetime) -> int:
    return max(0, int((now - checkpoint.checkpoint.timestamp).total_seconds()))


def matches_record(record: Record, attribute: HolderAttribute) -> bool:
    """The holder attribute check against a signed record (cross-border)."""
    if attribute.birth_date is not None:
        return record.holder.birth_date == attribute.birth_date
    if attribute.family_name is not None:
        return hmac.compare_digest(
            family_key(attribute.family_name).encode(),
            family_key(record.holder.family_name).encode(),
        )
    return False


def proof_node_ids(index: int, size: int) -> list[tuple[int, int]]:
    return merkle.nodes_for_ranges(merkle.inclusion_proof_ranges(index, size))


def _matches(credential: StoredCredential, attribute: HolderAttribute) -> bool:
    if attribute.birth_date is not None:
        return credential.birth_date == attribute.birth_date
    if attribute.family_name is not None:
        return hmac.compare_digest(
            family_key(attribute.family_name).encode(), credential.family_key.encode()
        )
    return False
