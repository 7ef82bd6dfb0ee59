"""The storage contract every backend implements.

Rules every backend must keep (the shared suite in ``credfed.testing.store_suite``
checks them):

* Reads on :class:`Store` see only committed data.
* :meth:`Store.write` opens one transaction; it commits when the ``async with``
  block exits normally and rolls back entirely when it raises. Writes are
  serialised: at most one write transaction is open at a time, across every
  process sharing the store.
* A write transaction sees its own uncommitted writes.
* An acknowledged commit survives a crash of the process or the machine.
* Log leaves and Merkle nodes are append-only: a backend never updates or
  deletes them.
* Duplicate keys raise :class:`credfed.errors.AlreadyExistsError`; updates of
  a missing row raise :class:`credfed.errors.NotFoundError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from credfed.audit import AuditEntry, AuditRecord
from credfed.models import (
    Client,
    Envelope,
    Issuer,
    IssuerStatus,
    SignedCheckpoint,
    StatusState,
    StoredCredential,
)

#: A perfect Merkle subtree: (level, index) covers leaves
#: [index * 2**level, (index + 1) * 2**level). Level 0 holds the leaf hashes.
NodeId = tuple[int, int]


@dataclass(frozen=True, slots=True)
class CredentialProofRead:
    """A credential, its newest log leaf and the Merkle nodes of its proof,
    read in one consistent snapshot."""

    credential: StoredCredential
    leaf: bytes
    nodes: dict[NodeId, bytes]


@dataclass(frozen=True, slots=True)
class ReplicaProofRead:
    """A credential's newest entry in a replica, the replica's checkpoint and
    the Merkle nodes of the entry's inclusion proof under that checkpoint,
    read in one consistent snapshot."""

    checkpoint: SignedCheckpoint
    index: int
    leaf: bytes
    nodes: dict[NodeId, bytes]


@dataclass(frozen=True, slots=True)
class ReplicaAppend:
    """Entries ``start ..`` of an origin's log, verified by the caller.

    ``nodes`` are the ``(level, index, hash)`` Merkle nodes the leaves
    complete, including the level-0 node (leaf hash) of every leaf, in order;
    a batch without them raises StorageError. ``statuses`` maps a credential id to the
    index of its newest entry among ``leaves``, and ``checkpoint``, when
    given, becomes the replica's checkpoint (it covers ``start + len(leaves)``).
    """

    origin: str
    start: int
    leaves: Sequence[bytes]
    nodes: Sequence[tuple[int, int, bytes]]
    statuses: Sequence[tuple[str, int]]
    checkpoint: SignedCheckpoint | None


@dataclass(frozen=True, slots=True)
class RecoveredEntries:
    """Entries ``start ..`` of this node's own log, recovered from a
    partner's copy after a restore and verified by the caller: together with
    the log held, ``leaves`` hash to ``checkpoint`` (signed by this node, of
    size ``start + len(leaves)``).

    ``nodes`` are what :meth:`WriteTx.append_log` takes; ``states`` the
    newest ``(credential id, state, entry index)`` of each credential the
    leaves change, the index among the leaves.
    """

    start: int
    leaves: Sequence[bytes]
    nodes: Sequence[tuple[int, int, bytes]]
    states: Sequence[tuple[str, StatusState, int]]
    checkpoint: SignedCheckpoint


@dataclass(frozen=True, slots=True)
class StoredRule:
    """One version of a recognition rule, as its deciding country signed it."""

    country: str
    rule_id: str
    version: int
    envelope: Envelope


class LogReader(Protocol):
    """Reads of the status log, shared by :class:`Store` and :class:`WriteTx`."""

    async def log_size(self) -> int:
        """Number of leaves appended (committed, or in this transaction)."""
        ...

    async def get_log_nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        """Hashes of the given perfect subtrees; absent ids are left out."""
        ...

    async def get_credential(self, credential_id: str) -> StoredCredential | None: ...

    async def get_issuer(self, issuer_id: str) -> Issuer | None: ...


class WriteTx(LogReader, Protocol):
    """One write transaction. Obtain it from :meth:`Store.write`."""

    async def insert_credentials(self, credentials: Sequence[StoredCredential]) -> None:
        """Insert new credentials; an existing id raises AlreadyExistsError."""
        ...

    async def update_credential_state(
        self, credential_id: str, state: StatusState, last_entry_index: int
    ) -> None:
        """Set the current status and the index of its newest log entry."""
        ...

    async def append_log(
        self,
        start_index: int,
        leaves: Sequence[bytes],
        nodes: Sequence[tuple[int, int, bytes]],
    ) -> None:
        """Append leaves ``start_index ..`` (exact bytes) and the new
        ``(level, index, hash)`` Merkle nodes they complete (level 0 included).
        ``start_index`` must equal :meth:`log_size`, else StorageError."""
        ...

    async def add_checkpoint(self, checkpoint: SignedCheckpoint) -> None:
        """Record a signed checkpoint; one per tree size."""
        ...


class Store(LogReader, Protocol):
    """A node's persistent state."""

    async def close(self) -> None: ...

    def write(self) -> AbstractAsyncContextManager[WriteTx]:
        """Open a serialised write transaction."""
        ...

    # -- clients (API tokens) -------------------------------------------------
    async def add_client(self, client: Client) -> None: ...

    async def get_client_by_token_hash(self, token_hash: bytes) -> Client | None: ...

    async def list_clients(self) -> list[Client]:
        """Every client, revoked and expired ones included, by client id."""
        ...

    async def revoke_client(self, client_id: str, at: datetime) -> Client:
        """Mark a client revoked at ``at`` and return it. Idempotent: a
        client revoked before keeps its first ``revoked_at``. Raises
        NotFoundError for an unknown client id."""
        ...

    # -- issuers --------------------------------------------------------------
    async def add_issuer(self, issuer: Issuer) -> None: ...

    async def list_issuers(self) -> list[Issuer]: ...

    async def set_issuer_status(self, issuer_id: str, status: IssuerStatus) -> Issuer: ...

    # -- status log -----------------------------------------------------------
    async def get_log_entries(self, start: int, end: int) -> list[bytes]:
        """Leaves [start, end) (clamped to the log size), exact bytes."""
        ...

    async def latest_checkpoint(self) -> SignedCheckpoint | None: ...

    async def get_credential_proof(
        self, credential_id: str, node_ids: Callable[[int], Sequence[NodeId]]
    ) -> CredentialProofRead | None:
        """The verify hot path in one snapshot: the credential, the leaf at its
        ``last_entry_index`` and the nodes ``node_ids(last_entry_index)`` names
        (the caller knows which proof it needs). None if there is no such
        credential."""
        ...

    async def get_checkpoint(self, tree_size: int) -> SignedCheckpoint | None: ...

    async def append_recovered(self, batch: RecoveredEntries) -> list[str]:
        """Append recovered entries of the own log in one transaction, as
        the normal append path writes them (leaves, Merkle nodes), set each
        credential held to its state in ``states``, and record the
        checkpoint, which becomes the latest. Returns the credential ids of
        ``states`` with no record here (their entries are appended all the
        same). StorageError, and nothing written, if ``start`` is not the log
        size, the checkpoint is not of the new size or a state's index is not
        among the leaves."""
        ...

    # -- replicas of other origins' status logs --------------------------------
    #
    # Rules (the shared suite checks them): leaves and nodes of a replica are
    # append-only and contiguous from 0 per origin; an append whose ``start``
    # is not the replica's size raises StorageError and writes nothing; each
    # replica has at most one checkpoint, replaced by set_replica_checkpoint
    # or an append that carries one; fork evidence is append-only, one per
    # origin.

    async def replica_size(self, origin: str) -> int: ...

    async def replica_checkpoint(self, origin: str) -> SignedCheckpoint | None: ...

    async def replica_checkpoints(self) -> list[SignedCheckpoint]:
        """The checkpoint of every replica, ordered by origin."""
        ...

    async def get_replica_nodes(
        self, origin: str, ids: Sequence[NodeId]
    ) -> dict[NodeId, bytes]: ...

    async def get_replica_entries(self, origin: str, start: int, end: int) -> list[bytes]:
        """Leaves [start, end) of the replica (clamped to its size), exact bytes."""
        ...

    async def append_replica(self, batch: ReplicaAppend) -> None:
        """Append one verified batch (leaves, nodes, status index and
        optionally the new checkpoint) in one transaction."""
        ...

    async def set_replica_checkpoint(self, checkpoint: SignedCheckpoint) -> None:
        """Replace the replica checkpoint of ``checkpoint.checkpoint.origin``
        (a newer checkpoint of a size the replica already holds)."""
        ...

    async def get_replica_proof(
        self,
        origin: str,
        credential_id: str,
        node_ids: Callable[[int, int], Sequence[NodeId]],
    ) -> ReplicaProofRead | None:
        """The cross-border verify hot path in one snapshot: the replica's
        checkpoint, the newest entry of ``credential_id`` covered by it and
        the nodes ``node_ids(index, checkpoint size)`` names. None if the
        replica has no checkpoint or no such entry under it."""
        ...

    async def add_fork_evidence(self, origin: str, evidence: bytes) -> bool:
        """Keep the first evidence against ``origin``; False if one was kept."""
        ...

    async def list_fork_evidence(self) -> list[tuple[str, bytes]]: ...

    # -- recognition rules ---------------------------------------------------------
    #
    # Every version of every rule is kept (append-only); a version already
    # held is ignored, so receiving a partner's rules twice is harmless.

    async def add_recognition_rules(self, rules: Sequence[StoredRule]) -> int:
        """Keep these rule versions in one transaction; returns how many
        were new."""
        ...

    async def current_recognition_rules(self, country: str) -> list[StoredRule]:
        """The highest version of each rule of ``country``, by rule id."""
        ...

    async def recognition_countries(self) -> list[str]:
        """The countries whose rules this store holds, sorted."""
        ...

    # -- the audit trail (credfed.audit) -----------------------------------------------
    #
    # Rules (the shared suite checks them): records are append-only; seq runs
    # 1, 2, 3 ... and each record's prev_hash is the hash of the one before,
    # even when several processes append at once (the newest record is read
    # in the appending transaction).

    async def append_audit(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Chain ``entries`` after the newest record and append them, in one
        transaction; returns the records as stored."""
        ...

    async def audit_records(self, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        """Up to ``limit`` records with seq > ``after_seq``, by seq."""
        ...

    async def audit_records_about(self, subject: str) -> list[AuditRecord]:
        """Every record whose subject includes ``subject``, by seq."""
        ...

    async def audit_index_problem(self) -> str | None:
        """Whether the subject index behind :meth:`audit_records_about`
        matches the records' subjects: None, or the first mismatch."""
        ...

    # -- health (credfed.rpc.healthmon) ------------------------------------------
    async def probe_write(self, busy_timeout: float) -> None:
        """Prove the store takes a write now (a tiny write of its own,
        waiting at most ``busy_timeout`` seconds for the write lock), else
        raise StorageError with the backend's reason. A write transaction
        of this store in progress proves it too."""
        ...

    async def probe_read(self) -> None:
        """Prove the store answers a read on the path verifications take,
        else raise StorageError."""
        ...
