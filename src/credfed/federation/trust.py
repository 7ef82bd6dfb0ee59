"""What a node trusts about its partner origins, and why."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import NoReturn

from credfed.crypto.keys import VerifyingKey
from credfed.errors import (
    AlreadyExistsError,
    CheckpointRollbackError,
    DescriptorMismatchError,
    EquivocationError,
    ForkedOriginError,
    FutureCheckpointError,
    NotFoundError,
    ProofError,
    TrustError,
    UntrustedSignerError,
)
from credfed.federation.descriptor import (
    Descriptor,
    accept_update,
    encode_descriptor,
    keys_at,
    pin_descriptor,
)
from credfed.federation.evidence import ForkEvidence, check_fork_evidence, verify_checkpoint_at
from credfed.models import Envelope, SignedCheckpoint
from credfed.statuslog import merkle

#: How far a partner's clock may run ahead of ours.
MAX_FUTURE = timedelta(minutes=5)

RootAt = Callable[[int], bytes | None]
"""Our replica's root at a tree size, or None for a size beyond the replica."""


class TrustState:
    """The trust decisions about partner origins, in memory and without I/O.

    Methods return (or raise, with ``EquivocationError.evidence``) what the
    caller must persist; a state is rebuilt from that with the constructor.
    Not thread-safe: give it one owner.

    Rules:

    1. **Pinning.** Nothing of an origin is trusted before
       :meth:`pin` accepted its descriptor: the fingerprint the operators
       compared out of band matches, and the descriptor is signed by one of
       its own keys. An origin is pinned once; replacing a partner is
       :meth:`remove` then :meth:`pin`, an explicit operator act.
    2. **One origin per key.** A descriptor listing a key of another pinned
       origin is refused, so a key can never vouch for two logs, and
       :meth:`update` finds the origin from the signer's key id without
       parsing unauthenticated bytes.
    3. **Rotation.** :meth:`update` applies
       :func:`~credfed.federation.descriptor.accept_update`: signed by a key
       of the current descriptor valid now, same country and node id, a
       strictly higher version. Descriptors never go back in version.
    4. **Checkpoints.** :meth:`check_checkpoint` accepts a checkpoint signed
       by a key of the origin valid at the checkpoint's own timestamp: what
       a rotated-out key signed in its period still verifies, and nothing it
       signs dated after its ``not_after`` does. Given a clock, it refuses a
       checkpoint dated more than :data:`MAX_FUTURE` ahead: staleness is
       judged by that time, so a future date would make data look fresh.
    5. **Latest checkpoint.** :meth:`observe` keeps, per origin, the latest
       accepted checkpoint L. It moves only forward, along one tree: a
       larger checkpoint needs a consistency proof from L; an older one can
       never replace it; two checkpoints that cannot both be true are a fork.
    6. **Forks.** An origin proven forked (by :meth:`observe`, or by a
       peer's evidence in :meth:`record_fork`) keeps its evidence, and
       :meth:`check_checkpoint`, :meth:`observe` and :meth:`update` refuse it
       with ForkedOriginError until the operator removes it.
    """

    def __init__(
        self,
        descriptors: Iterable[Descriptor] = (),
        latest: Iterable[SignedCheckpoint] = (),
        forks: Iterable[ForkEvidence] = (),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Restore a state from what its methods returned earlier.

        The inputs are trusted as they were checked when first accepted.
        With ``clock``, a checkpoint dated more than :data:`MAX_FUTURE` ahead
        of it is refused (rule 4).
        """
        self._clock = clock
        self._descriptors: dict[str, Descriptor] = {}
        self._latest: dict[str, SignedCheckpoint] = {}
        self._forks: dict[str, ForkEvidence] = {}
        for d in descriptors:
            self._check_key_owners(d)
            self._descriptors[d.country] = d
        for signed in latest:
            self._restored(signed.checkpoint.origin)
            self._latest[signed.checkpoint.origin] = signed
        for ev in forks:
            self._restored(ev.origin)
            self._forks[ev.origin] = ev

    # -- descriptors --------------------------------------------------------

    def pin(self, envelope: Envelope, expected_fingerprint: str) -> Descriptor:
        """First pairing with an origin (rule 1). Re-pinning the same
        descriptor is a no-op; any other descriptor for a pinned origin is
        AlreadyExistsError."""
        d = pin_descriptor(envelope, expected_fingerprint)
        current = self._descriptors.get(d.country)
        if current is not None:
            if encode_descriptor(current) == envelope.payload:
                return current
            raise AlreadyExistsError(
                f"{d.country} is already pinned (descriptor version {current.version});"
                " remove it first"
            )
        self._check_key_owners(d)
        self._descriptors[d.country] = d
        return d

    def update(self, envelope: Envelope, now: datetime) -> Descriptor:
        """An in-band descriptor update (rule 3); returns the descriptor now
        in force (the current one when the envelope is no change)."""
        origin = self._origin_of_key(envelope.key_id)
        self._refuse_forked(origin)
        new = accept_update(self._descriptors[origin], envelope, now)
        self._check_key_owners(new)
        self._descriptors[origin] = new
        return new

    def remove(self, origin: str) -> None:
        """Forget everything about ``origin``, its fork evidence included."""
        if origin not in self._descriptors:
            raise NotFoundError(f"origin {origin} is not pinned")
        del self._descriptors[origin]
        self._latest.pop(origin, None)
        self._forks.pop(origin, None)

    def keys_for(self, origin: str) -> Callable[[datetime], dict[str, VerifyingKey]]:
        """The keys of ``origin``'s current descriptor valid at a moment."""
        return partial(keys_at, self._pinned(origin))

    # -- checkpoints --------------------------------------------------------

    def check_checkpoint(self, origin: str, envelope: Envelope) -> SignedCheckpoint:
        """Verify a checkpoint of ``origin`` (rule 4); it is not recorded."""
        self._refuse_forked(origin)
        signed = verify_checkpoint_at(envelope, self.keys_for(origin), origin)
        if self._clock is not None:
            ahead = signed.checkpoint.timestamp - self._clock()
            if ahead > MAX_FUTURE:
                # A clock that is off (or a key used to fake freshness) must not
                # make old data look new: freshness is judged by this time.
                raise FutureCheckpointError(
                    f"checkpoint of {origin} is dated {int(ahead.total_seconds())} s in"
                    f" the future (more than {int(MAX_FUTURE.total_seconds())} s): refused"
                )
        return signed

    def observe(
        self,
        origin: str,
        signed: SignedCheckpoint,
        root_at: RootAt,
        *,
        proof: Sequence[bytes] = (),
        advance: bool = True,
    ) -> None:
        """Check a checkpoint of ``origin`` against what we hold (rule 5).

        ``signed`` is verified again (check_checkpoint), so nothing unchecked
        is ever recorded. ``root_at`` is our replica's root at a size it
        holds; the replica must be a prefix of the latest checkpoint's tree
        (the caller appends only entries verified under an observed
        checkpoint). With L the latest accepted checkpoint:

        * none yet: the checkpoint becomes L (with ``advance``).
        * same size as L: the same root is the same tree (a newer timestamp
          refreshes L); another root is a fork.
        * larger: ``proof`` must be a consistency proof from L's size to this
          one (from whoever served it), else ProofError -- a bad proof may
          be the messenger's fault, so it proves nothing about the origin.
          If it verifies, the checkpoint becomes L.
        * smaller: its root is compared with ``root_at(size)``. A different
          root is a fork; proving it needs ``proof``, a consistency proof
          from this size to L's within L's tree (from our replica, or from
          any peer: it is checked against L's signed root), else
          ProofError. An agreeing root, or a size our replica does not
          hold, is no news: with ``advance`` it is CheckpointRollbackError,
          because an old checkpoint must never replace L; without, nothing.

        ``advance=False`` is for auditing checkpoints one only wants checked
        (gossip, a relay's view): the checks are the same, L never moves.
        On a fork the origin is marked forked first, then EquivocationError
        carrying the evidence is raised.
        """
        signed = self.check_checkpoint(origin, signed.envelope)
        latest = self._latest.get(origin)
        if latest is None:
            if advance:
                self._latest[origin] = signed
            return
        size, latest_size = signed.checkpoint.tree_size, latest.checkpoint.tree_size
        if size == latest_size:
            self._same_size(origin, latest, signed, advance)
        elif size > latest_size:
            self._larger(origin, latest, signed, proof)
            if advance:
                self._latest[origin] = signed
        else:
            self._smaller(origin, latest, signed, root_at, proof)
            if advance:
                raise CheckpointRollbackError(
                    f"checkpoint of {origin} at size {size} is older than the latest"
                    f" accepted one at size {latest_size}"
                )

    def _same_size(
        self, origin: str, latest: SignedCheckpoint, signed: SignedCheckpoint, advance: bool
    ) -> None:
        if signed.checkpoint.root_hash != latest.checkpoint.root_hash:
            self._fork(ForkEvidence(origin, latest.envelope, signed.envelope, (), _root(signed)))
        if advance and signed.checkpoint.timestamp > latest.checkpoint.timestamp:
            self._latest[origin] = signed

    def _larger(
        self,
        origin: str,
        latest: SignedCheckpoint,
        signed: SignedCheckpoint,
        proof: Sequence[bytes],
    ) -> None:
        old_size = latest.checkpoint.tree_size
        if old_size == 0:
            # Every tree extends the empty one, whose root is fixed.
            if _root(latest) != merkle.EMPTY_ROOT:
                self._fork(
                    ForkEvidence(origin, latest.envelope, signed.envelope, (), merkle.EMPTY_ROOT)
                )
            return
        try:
            merkle.verify_consistency(
                old_size, signed.checkpoint.tree_size, _root(latest), _root(signed), proof
            )
        except ProofError as exc:
            raise ProofError(
                f"checkpoint of {origin} at size {signed.checkpoint.tree_size} is not shown"
                f" consistent with the latest one at size {old_size}: {exc}"
            ) from None

    def _smaller(
        self,
        origin: str,
        latest: SignedCheckpoint,
        signed: SignedCheckpoint,
        root_at: RootAt,
        proof: Sequence[bytes],
    ) -> None:
        size = signed.checkpoint.tree_size
        ours = merkle.EMPTY_ROOT if size == 0 else root_at(size)
        if ours is None or ours == _root(signed):
            return
        proof = tuple(proof) if size else ()
        self._fork(ForkEvidence(origin, signed.envelope, latest.envelope, proof, ours))

    # -- forks --------------------------------------------------------------

    def record_fork(self, evidence: ForkEvidence) -> bool:
        """Check a peer's (or our own) evidence and mark its origin forked.

        Returns False when the origin was already forked (the first evidence
        is kept), so the caller alarms and forwards each fork once. Raises
        TrustError if the evidence does not prove a fork.
        """
        check_fork_evidence(evidence, self.keys_for(evidence.origin))
        if evidence.origin in self._forks:
            return False
        self._forks[evidence.origin] = evidence
        return True

    def is_forked(self, origin: str) -> bool:
        return origin in self._forks

    def forked_origins(self) -> frozenset[str]:
        return frozenset(self._forks)

    # -- read access ----------------------------------------------------------

    def origins(self) -> tuple[str, ...]:
        return tuple(sorted(self._descriptors))

    def descriptor(self, origin: str) -> Descriptor | None:
        return self._descriptors.get(origin)

    def latest(self, origin: str) -> SignedCheckpoint | None:
        return self._latest.get(origin)

    def evidence(self, origin: str) -> ForkEvidence | None:
        return self._forks.get(origin)

    # -- helpers ----------------------------------------------------------------

    def _fork(self, ev: ForkEvidence) -> NoReturn:
        # Checked like a peer's, so the evidence we keep and hand on always
        # convinces a third party. Only an older checkpoint can fail here: the
        # caller's proof did not link our replica's root to the latest one.
        try:
            check_fork_evidence(ev, self.keys_for(ev.origin))
        except TrustError as exc:
            raise ProofError(
                f"checkpoint of {ev.origin} disagrees with our replica, but the fork is not"
                f" proven: a consistency proof within the latest tree is needed ({exc})"
            ) from None
        self._forks.setdefault(ev.origin, ev)
        raise EquivocationError(f"origin {ev.origin} signed two inconsistent checkpoints", ev)

    def _pinned(self, origin: str) -> Descriptor:
        d = self._descriptors.get(origin)
        if d is None:
            raise UntrustedSignerError(f"origin {origin[:40]!r} is not pinned")
        return d

    def _refuse_forked(self, origin: str) -> None:
        if origin in self._forks:
            raise ForkedOriginError(f"origin {origin} is proven forked; its data is refused")

    def _origin_of_key(self, key_id: str) -> str:
        for origin, d in self._descriptors.items():
            if any(k.key_id == key_id for k in d.keys):
                return origin
        raise UntrustedSignerError(f"key {key_id[:64]!r} is not a key of any pinned origin")

    def _check_key_owners(self, d: Descriptor) -> None:
        for origin, other in self._descriptors.items():
            if origin == d.country:
                continue
            shared = {k.key_id for k in d.keys} & {k.key_id for k in other.keys}
            if shared:
                raise DescriptorMismatchError(
                    f"descriptor of {d.country} lists key {min(shared)} of origin {origin}"
                )

    def _restored(self, origin: str) -> None:
        if origin not in self._descriptors:
            raise ValueError(f"restored state names origin {origin!r} without its descriptor")


def _root(signed: SignedCheckpoint) -> bytes:
    return signed.checkpoint.root_hash
