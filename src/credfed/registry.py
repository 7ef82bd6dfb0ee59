"""Registry domain service: issuers and the credential lifecycle.

Callers pass an already-authenticated :class:`Role`; the coarse role check
(which roles may call what) happens at the rpc edge, the fine one (an issuer
touches only its own credentials) happens here, where the data is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from credfed import ids
from credfed import logging as clog
from credfed.clock import Clock
from credfed.crypto.envelope import CREDENTIAL_TYPE, sign_envelope
from credfed.crypto.keys import SigningKey
from credfed.errors import (
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    ValidationError,
)
from credfed.lifecycle import check_transition
from credfed.models import (
    CredentialDraft,
    Envelope,
    Issuer,
    IssuerStatus,
    Role,
    RoleKind,
    SignedCheckpoint,
    Status,
    StatusState,
    StoredCredential,
)
from credfed.records import encode_record, record_from_draft
from credfed.statuslog.log import LogEntry, StatusLog
from credfed.statuslog.watch import LogWatch
from credfed.storage.base import LogReader, Store, WriteTx
from credfed.validation import family_key

log = clog.get("credfed.registry")

#: Builds the new logged state from "now".
_StateFactory = Callable[[datetime], StatusState]

#: Upper bound of drafts in one bulk stream. The whole stream is one
#: transaction and its response lists every new id: 100,000 ids (about 2.3 MB)
#: stay well inside the 4 MiB message limit, so a committed import is never
#: reported as failed for want of room in its answer.
MAX_BULK_TOTAL = 100_000


@dataclass(frozen=True, slots=True)
class Receipt:
    """A committed change: the credential now, the entry appended, the
    checkpoint that covers it."""

    credential: StoredCredential
    entry: LogEntry
    checkpoint: SignedCheckpoint


@dataclass(frozen=True, slots=True)
class BulkResult:
    credential_ids: list[str]
    checkpoint: SignedCheckpoint | None


class Registry:
    def __init__(
        self,
        store: Store,
        log: StatusLog,
        key: SigningKey,
        origin: str,
        clock: Clock,
        *,
        watch: LogWatch | None = None,
        max_bulk: int = MAX_BULK_TOTAL,
    ) -> None:
        self._watch = watch or LogWatch()
        self._max_bulk = max_bulk
        self._store = store
        self._log = log
        self._key = key
        self._origin = origin
        self._clock = clock

    # -- issuers ----------------------------------------------------------------
    async def register_issuer(self, issuer_id: str, name: str, sectors: tuple[str, ...]) -> Issuer:
        issuer = Issuer(issuer_id, name, sectors, IssuerStatus.ACTIVE)
        await self._store.add_issuer(issuer)
        return issuer

    async def list_issuers(self) -> list[Issuer]:
        return await self._store.list_issuers()

    async def suspend_issuer(self, issuer_id: str) -> Issuer:
        return await self._store.set_issuer_status(issuer_id, IssuerStatus.SUSPENDED)

    # -- credentials ------------------------------------------------------------
    async def get_credential(self, actor: Role, credential_id: str) -> StoredCredential:
        credential = await self._store.get_credential(credential_id)
        if credential is None:
            raise NotFoundError(f"no credential {credential_id}")
        _check_owner(actor, credential.issuer_id)
        return credential

    async def issue(self, actor: Role, draft: CredentialDraft) -> Receipt:
        _check_owner(actor, draft.issuer_id)
        async with self._store.write() as tx:
            credential = await self._prepare(tx, draft, supersedes=None)
            receipt = await self._record_new(tx, [credential])
        await self._watch.published(receipt.checkpoint.checkpoint.tree_size)
        log.info(
            "credential.issued",
            credential_id=credential.credential_id,
            issuer_id=credential.issuer_id,
            log_index=receipt.entry.index,
        )
        return receipt

    async def bulk_issue(
        self, actor: Role, batches: AsyncIterator[Sequence[CredentialDraft]]
    ) -> BulkResult:
        """Issue every draft of every batch in one transaction: all or nothing.

        An exception from ``batches`` (a malformed draft, a cancelled stream)
        rolls everything back.
        """
        issued: list[str] = []
        seen = 0
        checkpoint: SignedCheckpoint | None = None
        # A two-stage pipeline: batch k is signed in a worker thread (the
        # Ed25519 code releases the GIL) while this thread validates batch
        # k + 1 and writes batch k - 1.
        pending: tuple[list[_Unsigned], asyncio.Future[list[Envelope]]] | None = None
        async with self._store.write() as tx:
            issuers: dict[str, Issuer] = {}
            try:
                async for batch in batches:
                    if seen + len(batch) > self._max_bulk:
                        raise ValidationError(
                            "drafts", f"more than {self._max_bulk} drafts in one stream"
                        )
                    unsigned = []
                    for n, draft in enumerate(batch):
                        _check_owner(actor, draft.issuer_id)
                        issuer = issuers.get(draft.issuer_id)
                        if issuer is None:
                            issuer = issuers[draft.issuer_id] = await _usable_issuer(
                                tx, draft.issuer_id
                            )
                        _check_sector(issuer, draft, f"drafts[{seen + n}]")
                        unsigned.append(self._unsigned(issuer, draft, supersedes=None))
                    seen += len(batch)
                    signing = asyncio.ensure_future(asyncio.to_thread(self._sign_all, unsigned))
                    if pending is not None:
                        issued.extend(await self._write_signed(tx, *pending))
                    pending = (unsigned, signing)
                if pending is not None:
                    issued.extend(await self._write_signed(tx, *pending))
                    pending = None
            finally:
                if pending is not None:
                    pending[1].cancel()
            if issued:
                checkpoint = await self._log.checkpoint(tx)
        if checkpoint is not None:
            await self._watch.published(checkpoint.checkpoint.tree_size)
        log.info(
            "credentials.bulk_issued",
            count=len(issued),
            tree_size=checkpoint.checkpoint.tree_size if checkpoint else None,
        )
        return BulkResult(issued, checkpoint)

    async def suspend(
        self,
        actor: Role,
        credential_id: str,
        reason: str,
        until: date | None,
        appeal_case_ref: str | None,
    ) -> Receipt:
        if until is not None and until < self._today():
            raise ValidationError("until", "is in the past")
        return await self._change(
            actor,
            credential_id,
            lambda now: StatusState(
                Status.SUSPENDED,
                reason,
                now,
                suspended_until=until,
                appeal_case_ref=appeal_case_ref,
            ),
        )

    async def reinstate(
        self, actor: Role, credential_id: str, reason: str, appeal_case_ref: str | None
    ) -> Receipt:
        return await self._change(
            actor,
            credential_id,
            lambda now: StatusState(
                Status.REINSTATED, reason, now, appeal_case_ref=appeal_case_ref
            ),
        )

    async def revoke(self, actor: Role, credential_id: str, reason: str) -> Receipt:
        return await self._change(
            actor, credential_id, lambda now: StatusState(Status.REVOKED, reason, now)
        )

    async def supersede(
        self, actor: Role, credential_id: str, reason: str, replacement: CredentialDraft
    ) -> tuple[Receipt, StoredCredential]:
        """Issue ``replacement`` and mark ``credential_id`` superseded by it,
        atomically. Returns the old credential's receipt and the new credential."""
        _check_owner(actor, replacement.issuer_id)
        async with self._store.write() as tx:
            old = await _existing(tx, credential_id)
            _check_owner(actor, old.issuer_id)
            check_transition(old, Status.SUPERSEDED, self._today())
            new = await self._prepare(tx, replacement, supersedes=credential_id)
            now = new.state.effective_at
            old_state = StatusState(Status.SUPERSEDED, reason, now, superseded_by=new.credential_id)
            new_entry, old_entry = await self._log.append(
                tx, [(new.credential_id, new.state), (credential_id, old_state)]
            )
            new = _with_index(new, new_entry.index)
            await tx.insert_credentials([new])
            await tx.update_credential_state(credential_id, old_state, old_entry.index)
            checkpoint = await self._log.checkpoint(tx)
            old = await _existing(tx, credential_id)
        await self._watch.published(checkpoint.checkpoint.tree_size)
        log.info(
            "credential.superseded",
            credential_id=credential_id,
            superseded_by=new.credential_id,
            reason=reason,
            log_index=old_entry.index,
        )
        return Receipt(old, old_entry, checkpoint), new

    # -- internals --------------------------------------------------------------
    async def _change(self, actor: Role, credential_id: str, make: _StateFactory) -> Receipt:
        async with self._store.write() as tx:
            credential = await _existing(tx, credential_id)
            _check_owner(actor, credential.issuer_id)
            state = make(self._clock())
            check_transition(credential, state.status, self._today())
            (entry,) = await self._log.append(tx, [(credential_id, state)])
            await tx.update_credential_state(credential_id, state, entry.index)
            checkpoint = await self._log.checkpoint(tx)
            updated = await _existing(tx, credential_id)
        await self._watch.published(checkpoint.checkpoint.tree_size)
        log.info(
            "credential.status_changed",
            credential_id=credential_id,
            status=state.status.value,
            reason=state.reason,
            log_index=entry.index,
        )
        return Receipt(updated, entry, checkpoint)

    async def _prepare(
        self, tx: WriteTx, draft: CredentialDraft, supersedes: str | None
    ) -> StoredCredential:
        issuer = await _usable_issuer(tx, draft.issuer_id)
        _check_sector(issuer, draft, "draft")
        return self._sign_new(issuer, draft, supersedes)

    async def _record_new(self, tx: WriteTx, credentials: list[StoredCredential]) -> Receipt:
        entries = await self._log.append(tx, [(c.credential_id, c.state) for c in credentials])
        stored = [_with_index(c, e.index) for c, e in zip(credentials, entries, strict=True)]
        await tx.insert_credentials(stored)
        checkpoint = await self._log.checkpoint(tx)
        return Receipt(stored[-1], entries[-1], checkpoint)

    def _sign_new(
        self, issuer: Issuer, draft: CredentialDraft, supersedes: str | None
    ) -> StoredCredential:
        unsigned = self._unsigned(issuer, draft, supersedes)
        return self._signed(unsigned, self._sign_all([unsigned])[0], self._clock(), -1)

    def _unsigned(
        self, issuer: Issuer, draft: CredentialDraft, supersedes: str | None
    ) -> _Unsigned:
        credential_id = ids.new_credential_id(self._origin)
        record = record_from_draft(credential_id, self._origin, issuer.name, draft, supersedes)
        return _Unsigned(credential_id, draft, supersedes, encode_record(record))

    def _sign_all(self, items: Sequence[_Unsigned]) -> list[Envelope]:
        return [sign_envelope(self._key, CREDENTIAL_TYPE, u.payload) for u in items]

    def _signed(
        self, u: _Unsigned, envelope: Envelope, now: datetime, index: int
    ) -> StoredCredential:
        return StoredCredential(
            credential_id=u.credential_id,
            issuer_id=u.draft.issuer_id,
            family_key=family_key(u.draft.holder.family_name),
            birth_date=u.draft.holder.birth_date,
            valid_until=u.draft.valid_until,
            supersedes=u.supersedes,
            record=envelope,
            state=StatusState(Status.ACTIVE, "issued", now),
            last_entry_index=index,  # -1 until the log entry is appended
        )

    async def _write_signed(
        self, tx: WriteTx, unsigned: list[_Unsigned], signing: asyncio.Future[list[Envelope]]
    ) -> list[str]:
        envelopes = await signing
        now = self._clock()
        state = StatusState(Status.ACTIVE, "issued", now)
        entries = await self._log.append(tx, [(u.credential_id, state) for u in unsigned])
        await tx.insert_credentials(
            [
                self._signed(u, env, now, entry.index)
                for u, env, entry in zip(unsigned, envelopes, entries, strict=True)
            ]
        )
        return [u.credential_id for u in unsigned]

    def _today(self) -> date:
        return self._clock().date()


@dataclass(frozen=True, slots=True)
class _Unsigned:
    """A new credential whose record is encoded but not yet signed."""

    credential_id: str
    draft: CredentialDraft
    supersedes: str | None
    payload: bytes


def _with_index(credential: StoredCredential, index: int) -> StoredCredential:
    return replace(credential, last_entry_index=index)


def _check_owner(actor: Role, issuer_id: str) -> None:
    if actor.kind is RoleKind.ISSUER and actor.issuer_id != issuer_id:
        raise PermissionDeniedError(f"role {actor} may not act for issuer {issuer_id}")


def _check_sector(issuer: Issuer, draft: CredentialDraft, field: str) -> None:
    if draft.qualification.sector not in issuer.sectors:
        raise PreconditionError(
            f"{field}: issuer {issuer.issuer_id} is not accredited for sector "
            f"{draft.qualification.sector!r}"
        )


async def _usable_issuer(reader: LogReader, issuer_id: str) -> Issuer:
    issuer = await reader.get_issuer(issuer_id)
    if issuer is None:
        raise PreconditionError(f"issuer {issuer_id} is not registered at this node")
    if issuer.status is not IssuerStatus.ACTIVE:
        raise PreconditionError(f"issuer {issuer_id} is {issuer.status.value}")
    return issuer


async def _existing(reader: LogReader, credential_id: str) -> StoredCredential:
    credential = await reader.get_credential(credential_id)
    if credential is None:
        raise NotFoundError(f"no credential {credential_id}")
    return credential
