"""Shared builders for the federation tests: keys, descriptors, and an
in-memory RFC 6962 log that signs real checkpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conftest import draft

from credfed.crypto.keys import SigningKey
from credfed.federation.descriptor import Descriptor, KeyEntry, sign_descriptor
from credfed.models import (
    Checkpoint,
    CredentialDraft,
    Envelope,
    Role,
    RoleKind,
    SignedCheckpoint,
)
from credfed.rpc import convert
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import sign_checkpoint

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)

K1 = SigningKey.from_seed(b"\x11" * 32)
K2 = SigningKey.from_seed(b"\x22" * 32)
K3 = SigningKey.from_seed(b"\x33" * 32)
OUTSIDER = SigningKey.from_seed(b"\x99" * 32)
FR_KEY = SigningKey.from_seed(b"\x44" * 32)

PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBfzCCASWgAwIBAgIUQ2VydGlmaWNhdGUgZm9yIHRlc3RzMAoGCCqGSM49BAMC\n"
    "-----END CERTIFICATE-----\n"
)


def entry(
    key: SigningKey, not_before: datetime = T0, not_after: datetime | None = None
) -> KeyEntry:
    return KeyEntry(key.key_id, key.verifying_key(), not_before, not_after)


def descriptor(
    *keys: KeyEntry,
    country: str = "DE",
    node_id: str = "de-node-1",
    version: int = 1,
    issued_at: datetime = T0,
    endpoints: tuple[str, ...] = ("de.example.org:7443",),
) -> Descriptor:
    return Descriptor(
        country=country,
        node_id=node_id,
        endpoints=endpoints,
        keys=keys or (entry(K1),),
        tls_ca_cert=PEM,
        version=version,
        issued_at=issued_at,
    )


def signed(key: SigningKey, d: Descriptor) -> Envelope:
    return sign_descriptor(key, d)


# -- a real origin registry, end to end (test_replica, test_crossborder) ------------

#: The origin's clock when a test starts.
START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ADMIN = Role(RoleKind.ADMIN)
DE_DESCRIPTOR = descriptor(entry(K1))
DRAFT: CredentialDraft = convert.draft(draft(), "d")


class MemLog:
    """An append-only Merkle log held in a dict of perfect subtrees."""

    def __init__(self, origin: str = "DE", key: SigningKey = K1) -> None:
        self.origin = origin
        self.key = key
        self.size = 0
        self.nodes: dict[merkle.NodeId, bytes] = {}

    def append(self, *leaves: bytes) -> MemLog:
        hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
        for level, index, h in merkle.append_nodes(self.size, hashes, self.nodes):
            self.nodes[(level, index)] = h
        self.size += len(leaves)
        return self

    def root(self, size: int | None = None) -> bytes:
        return merkle.root_hash(self.size if size is None else size, self.nodes)

    def root_at(self, size: int) -> bytes | None:
        return self.root(size) if size <= self.size else None

    def proof(self, old: int, new: int | None = None) -> tuple[bytes, ...]:
        return tuple(merkle.consistency_proof(old, self.size if new is None else new, self.nodes))

    def checkpoint(
        self,
        size: int | None = None,
        at: datetime = T0 + HOUR,
        key: SigningKey | None = None,
    ) -> SignedCheckpoint:
        size = self.size if size is None else size
        cp = Checkpoint(self.origin, size, self.root(size), at)
        return sign_checkpoint(key or self.key, cp)


def diverging_logs(shared: int = 3, total: int = 12) -> tuple[MemLog, MemLog]:
    """Two logs of one origin, equal for ``shared`` entries, then different."""
    a, b = MemLog(), MemLog()
    for i in range(total):
        common = i < shared
        a.append(b"entry-%d" % i)
        b.append(b"entry-%d" % i if common else b"forged-%d" % i)
    return a, b


class FakeClock:
    """A controllable clock for the federation tests."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
