"""The audit trail: who did what, to which credential, when, with what outcome.

Every verification (``Verify``, each item of ``VerifyBatch``,
``WhereRecognised``), partner lookup (``LookupCredential``), read of a
credential (``GetCredential``), issuance (``IssueCredential``,
``BulkIssueCredentials``, ``SupersedeCredential``), status change (of a
credential: ``Suspend``/``Reinstate``/``RevokeCredential``; of an issuer:
``RegisterIssuer``, ``SuspendIssuer``), recognition rule change
(``Add``/``Import``/``RemoveRecognitionRule``), purge of the cached foreign
records (``PurgeCachedRecords``), and the local commands that change pairing
(``peer add``, ``peer remove``, ``peer link``) or keys (``key rotate``)
appends one record, refused calls included (the RPC list is
:data:`credfed.rpc.audit.AUDITED`).

Record format
-------------
- ``seq``: 1, 2, 3 ... in the order of writing (one chain per node database).
- ``at``: when the call ended (the command ran), UTC, to the microsecond.
- ``client_id``, ``client_name``, ``role``: the API client and its role
  (``admin``, ``verifier``, ``issuer:<id>``, ``peer``). The name is the one
  the token was issued under: the organisation, or for a partner node e.g.
  ``FR node``. A call refused for a revoked or expired token names that
  client; one with no known token has empty id and name and the role
  ``unauthenticated``. A local command: ``local``, the operating system user,
  ``operator``.
- ``country``: the caller's country: this node's for its own clients and
  local commands; for a peer, the partner its token was issued to
  (``token create --partner``, bound to that partner's certificate); for a
  legacy peer token without one, the pinned partner country its client name
  names (``FR node`` -> ``FR``, see :func:`peer_country`), else null.
- ``action``: the gRPC method name (``Verify``) or the command (``peer add``).
- ``subject``: what was acted on: credential ids (for an issuance, the ids
  issued), rule ids, an issuer id, a partner country, a signing key id --
  never a holder's name, birth date or other attribute. A request field that
  is not a well-formed id is recorded as ``(malformed)``, so nothing a
  caller typed into it is kept.
- ``count``: how many items the call carried (drafts of a bulk import, rules
  of an import, items of a batch refused as a whole); 1 otherwise.
- ``outcome``: the gRPC status code name (``OK``, ``NOT_FOUND``,
  ``PERMISSION_DENIED`` ...); for a local command, the code its error maps to.

``VerifyBatch`` writes one record per item (subject: that item's credential
id, outcome: that item's code), so a holder's access log lists a batch check
like a single one. A batch refused as a whole (a bad token, too many items)
is one record whose subject lists the (well-formed) ids it asked for, at most
:data:`MAX_SUBJECTS`, and whose ``count`` is the number of items sent.

Hash chain
----------
Each record stores ``prev_hash``, the ``hash`` of the record before it (32
zero bytes for the first), and ``hash = SHA-256(prev_hash || canonical JSON
of the record)``: the fields listed above as one JSON object, keys
sorted, no whitespace, UTF-8 (:func:`credfed.canonical.canonical_json`),
``at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. The chain is built inside the
write transaction that appends the records (the newest record's hash is read
in that same transaction), so it stays one line however many RPCs and
processes (a ``credfed peer add`` while the node serves) write. Rewriting,
deleting or reordering a record breaks the chain at that record;
:func:`verify_chain` names the first broken one. Cutting records off the
*end* cannot be seen from the chain alone: keep the head hash that
``credfed audit verify`` prints somewhere else to detect it.

Group commit and its window
---------------------------
A verify runs at thousands of calls a second, and one synchronous, fsynced
transaction per call would halve that. The RPC layer therefore only queues a
record in memory (:meth:`AuditTrail.record`); a background task writes the
queue in one transaction when its oldest record has waited
:data:`FLUSH_INTERVAL` (50 ms) or :data:`MAX_BATCH` (500) records are
waiting, whichever is first. The queue holds at most :data:`MAX_QUEUE`
records; when it is full, the calls that want to add one wait (back-pressure)
until the writer has made room: a record is never dropped to keep serving.
If the database refuses a write, the batch is kept and retried (logged as
``audit.write_failed``), and the queue filling up slows the RPCs down.

The price: **a crash of the node process can lose the records of the last
~50 ms** (at most those queued and not yet committed, i.e. at most
``MAX_QUEUE + MAX_BATCH`` records), whose calls may already have been
answered. What was committed survives a crash of the machine too (the
database runs with ``synchronous=FULL``). A normal stop writes everything
queued (:meth:`AuditTrail.stop`); should the database stay unavailable, it
gives up after a few attempts and logs ``audit.records_lost`` with the
count. Local commands write their record directly, in their own transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from credfed import ids
from credfed import logging as clog
from credfed.canonical import canonical_json
from credfed.errors import CredfedError, ValidationError

__all__ = [
    "FLUSH_INTERVAL",
    "GENESIS",
    "MALFORMED",
    "MAX_BATCH",
    "MAX_QUEUE",
    "MAX_SUBJECTS",
    "AuditEntry",
    "AuditRecord",
    "AuditSink",
    "AuditTrail",
    "Break",
    "ChainChecker",
    "chain",
    "record_from_json",
    "record_hash",
    "record_to_json",
    "verify_chain",
]

#: The ``prev_hash`` of the first record.
GENESIS: Final = bytes(32)
#: Group commit: the longest a queued record waits before its batch is written.
FLUSH_INTERVAL: Final = 0.05
#: Group commit: at most this many records per transaction (a full batch is
#: written at once, without waiting for the interval).
MAX_BATCH: Final = 500
#: Bound of the in-memory queue; beyond it :meth:`AuditTrail.record` waits.
MAX_QUEUE: Final = 1000
#: At most this many subjects are listed for a call refused as a whole.
MAX_SUBJECTS: Final = 1000
#: The subject recorded for a request field that is not a well-formed id.
MALFORMED: Final = "(malformed)"

#: Roles of callers that are not API clients of the node.
OPERATOR: Final = "operator"
UNAUTHENTICATED: Final = "unauthenticated"
LOCAL_CLIENT_ID: Final = "local"

_RULE_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{2,63}", re.ASCII)
_ISSUER_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{1,62}", re.ASCII)
_KEY_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
_WORD: Final = re.compile(r"[A-Za-z]+", re.ASCII)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

log = clog.get("credfed.audit")


# -- records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A record before it is chained: what the RPC layer or a command queues."""

    at: datetime
    client_id: str
    client_name: str
    role: str
    country: str | None
    action: str
    subject: tuple[str, ...]
    outcome: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A chained record, as stored."""

    seq: int
    at: datetime
    client_id: str
    client_name: str
    role: str
    country: str | None
    action: str
    subject: tuple[str, ...]
    count: int
    outcome: str
    prev_hash: bytes
    hash: bytes


def format_time(at: datetime) -> str:
    """``at`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (refuses naive times)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()} (audit times are tz-aware UTC)")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def to_micros(at: datetime) -> int:
    """Microseconds since the epoch (how the store keeps ``at``)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()} (audit times are tz-aware UTC)")
    return (at - _EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _body(
    seq: int, entry: AuditEntry | AuditRecord
) -> dict[str, object]:  # the hashed fields, nothing else
    return {
        "seq": seq,
        "at": format_time(entry.at),
        "client_id": entry.client_id,
        "client_name": entry.client_name,
        "role": entry.role,
        "country": entry.country,
        "action": entry.action,
        "subject": list(entry.subject),
        "count": entry.count,
        "outcome": entry.outcome,
    }


def record_hash(prev_hash: bytes, seq: int, entry: AuditEntry | AuditRecord) -> bytes:
    """``SHA-256(prev_hash || canonical JSON of the record)``."""
    return hashlib.sha256(bytes(prev_hash) + canonical_json(_body(seq, entry))).digest()


def chain(
    entries: Iterable[AuditEntry], after: tuple[int, bytes] = (0, GENESIS)
) -> list[AuditRecord]:
    """Chain ``entries`` after the record ``after`` = (seq, hash), the newest
    stored one (the default: an empty trail). Pure: the store calls it inside
    its write transaction."""
    seq, prev = after[0], bytes(after[1])
    records = []
    for entry in entries:
        seq += 1
        digest = record_hash(prev, seq, entry)
        records.append(
            AuditRecord(
                seq=seq,
                at=entry.at,
                client_id=entry.client_id,
                client_name=entry.client_name,
                role=entry.role,
                country=entry.country,
                action=entry.action,
                subject=tuple(entry.subject),
                count=entry.count,
                outcome=entry.outcome,
                prev_hash=prev,
                hash=digest,
            )
        )
        prev = digest
    return records


# -- verification ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Break:
    """The first record at which the chain does not hold."""

    seq: int
    problem: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.problem}"


@dataclass(slots=True)
class ChainChecker:
    """Checks records one at a time, in stored order (a trail of millions is
    read page by page). ``count`` and ``head`` describe what was checked."""

    count: int = 0
    head: bytes = GENESIS
    broken: Break | None = None
    _seq: int = field(default=0, repr=False)

    def check(self, record: AuditRecord) -> Break | None:
        """The break at ``record``, if any; after a break, every later record
        is ignored (the first break is the one to name)."""
        if self.broken is not None:
            return self.broken
        expected = self._seq + 1
        problem: str | None = None
        if record.seq != expected:
            problem = (
                f"found where record {expected} belongs: record {expected} is missing"
                " or out of order"
                if record.seq > expected
                else f"out of order or duplicated (after record {self._seq})"
            )
        elif bytes(record.prev_hash) != self.head:
            problem = (
                "prev_hash is not 32 zero bytes (the first record starts the chain)"
                if expected == 1
                else f"prev_hash does not match the hash of record {self._seq}"
                " (a record before it was changed, removed or reordered)"
            )
        elif bytes(record.hash) != record_hash(record.prev_hash, record.seq, record):
            problem = "its contents do not match its hash (the record was changed)"
        if problem is not None:
            self.broken = Break(record.seq, problem)
            return self.broken
        self._seq = record.seq
        self.head = bytes(record.hash)
        self.count += 1
        return None


def verify_chain(records: Iterable[AuditRecord]) -> Break | None:
    """The first broken record of ``records`` (in stored order), or None."""
    checker = ChainChecker()
    for record in records:
        broken = checker.check(record)
        if broken is not None:
            return broken
    return None


# -- JSON (export) --------------------------------------------------------------------


def record_to_json(record: AuditRecord) -> dict[str, Any]:
    """One exported line: the hashed fields plus both hashes in hex."""
    return _body(record.seq, record) | {
        "prev_hash": bytes(record.prev_hash).hex(),
        "hash": bytes(record.hash).hex(),
    }


def record_from_json(data: dict[str, Any]) -> AuditRecord:
    """The inverse of :func:`record_to_json` (ValueError/KeyError if malformed)."""
    return AuditRecord(
        seq=int(data["seq"]),
        at=parse_time(str(data["at"])),
        client_id=str(data["client_id"]),
        client_name=str(data["client_name"]),
        role=str(data["role"]),
        country=None if data["country"] is None else str(data["country"]),
        action=str(data["action"]),
        subject=tuple(str(s) for s in data["subject"]),
        count=int(data["count"]),
        outcome=str(data["outcome"]),
        prev_hash=bytes.fromhex(str(data["prev_hash"])),
        hash=bytes.fromhex(str(data["hash"])),
    )


# -- subjects: ids only, never anything a caller typed ---------------------------------


def credential_subject(text: str) -> str:
    """The canonical credential id, or :data:`MALFORMED`."""
    try:
        return ids.parse_credential_id(text)
    except ValidationError:
        return MALFORMED


def rule_subject(text: str) -> str:
    text = text.strip()
    return text if _RULE_ID.fullmatch(text) else MALFORMED


def issuer_subject(text: str) -> str:
    text = text.strip()
    return text if _ISSUER_ID.fullmatch(text) else MALFORMED


def country_subject(text: str) -> str:
    text = text.strip().upper()
    return text if ids.is_country_code(text) else MALFORMED


def key_subject(text: str) -> str:
    return text if _KEY_ID.fullmatch(text) else MALFORMED


def peer_country(client_name: str, partners: Iterable[str]) -> str | None:
    """The partner country a peer client's name names (``FR node``,
    ``node fr`` -> ``FR``), if exactly one pinned partner's code appears in
    it as a word; else None."""
    known = set(partners)
    found = {w.upper() for w in _WORD.findall(client_name) if len(w) == 2} & known
    return found.pop() if len(found) == 1 else None


def local_entry(
    action: str,
    subject: Sequence[str],
    outcome: str,
    country: str,
    now: datetime | None = None,
) -> AuditEntry:
    """The record of a local command run by the operating system user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, no USER variable
        user = "unknown"
    return AuditEntry(
        at=now or datetime.now(UTC),
        client_id=LOCAL_CLIENT_ID,
        client_name=user,
        role=OPERATOR,
        country=country,
        action=action,
        subject=tuple(subject),
        outcome=outcome,
    )


# -- group commit -----------------------------------------------------------------------


class AuditSink(Protocol):
    """Where records go: :meth:`credfed.storage.base.Store.append_audit`."""

    async def append_audit(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]: ...


class AuditTrail:
    """The in-memory queue and its background writer (see the module
    docstring: group commit and its window).

    :meth:`record` starts the writer on first use; :meth:`stop` writes what
    is queued and ends it. :meth:`flush` writes everything queued so far.
    """

    def __init__(
        self,
        sink: AuditSink,
        *,
        interval: float = FLUSH_INTERVAL,
        max_batch: int = MAX_BATCH,
        max_queue: int = MAX_QUEUE,
        retry_delay: float = 0.05,
    ) -> None:
        if max_batch < 1 or max_queue < max_batch:
            raise ValueError("need 1 <= max_batch <= max_queue")
        self._sink = sink
        self._interval = interval
        self._max_batch = max_batch
        self._retry_delay = retry_delay
        self._queue: asyncio.Queue[AuditEntry] = asyncio.Queue(maxsize=max_queue)
        self._pending = asyncio.Event()  # something is queued
        self._full = asyncio.Event()  # a whole batch is queued
        self._write_lock = asyncio.Lock()  # one batch at a time, in queue order
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._pressed_logged = -1e9  # when back-pressure was last logged (monotonic)
        #: Records written since start (for tests and status).
        self.written = 0

    def start(self) -> None:
        if self._task is None and not self._closing:
            self._task = asyncio.ensure_future(self._run())

    async def record(self, entry: AuditEntry) -> None:
        """Queue ``entry``; waits while the queue is full (back-pressure)."""
        self.start()
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            now = time.monotonic()
            if now - self._pressed_logged >= 10.0:  # sustained overload: one line per 10 s
                self._pressed_logged = now
                log.warning("audit.backpressure", queued=self._queue.qsize())
            await self._queue.put(entry)
        self._pending.set()
        if self._queue.qsize() >= self._max_batch:
            self._full.set()
        if self._closing:  # a late call after stop(): no writer any more, write it now
            await self.flush()

    async def flush(self) -> None:
        """Write everything queued so far (waits for a write in progress)."""
        while True:
            await self._write_some(attempts=None)
            if self._queue.empty():
                return

    async def stop(self) -> None:
        """Write what is queued, then end the writer. Idempotent."""
        self._closing = True
        self._pending.set()
        self._full.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        while not self._queue.empty():
            # A database that stays unavailable must not hang the shutdown:
            # a few attempts, then the loss is logged loudly.
            if not await self._write_some(attempts=3):
                lost = self._queue.qsize()
                log.error("audit.records_lost", records=lost)
                return

    async def _run(self) -> None:
        while not self._closing:
            await self._pending.wait()
            if self._closing:
                return
            if self._queue.qsize() < self._max_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._interval)
            try:
                await self._write_some(attempts=None)
            except Exception as exc:  # a bug: log, keep the records, try again
                log.error("audit.writer_failed", error=type(exc).__name__)
                await asyncio.sleep(self._retry_delay)

    def _take(self) -> list[AuditEntry]:
        batch: list[AuditEntry] = []
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        if self._queue.empty():
            self._pending.clear()
        if self._queue.qsize() < self._max_batch and not self._closing:
            self._full.clear()
        return batch

    async def _write_some(self, attempts: int | None) -> bool:
        """Write one batch; False if ``attempts`` ran out (the batch is then
        lost, and logged by the caller)."""
        async with self._write_lock:
            batch = self._take()
            if not batch:
                return True
            delay = self._retry_delay
            tried = 0
            while True:
                try:
                    await self._sink.append_audit(batch)
                except CredfedError as exc:
                    tried += 1
                    log.error(
                        "audit.write_failed", records=len(batch), attempt=tried, error=str(exc)
                    )
                    if attempts is None and self._closing:
                        attempts = 3  # stopping: a dead database must not hang it
                    if attempts is not None and tried >= attempts:
                        log.error("audit.records_lost", records=len(batch))
                        return False
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                self.written += len(batch)
                return True
