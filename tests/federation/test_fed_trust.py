"""TrustState: pinning, rotation, rollback, equivocation and forked origins."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from fedkit import (
    FR_KEY,
    HOUR,
    K1,
    K2,
    K3,
    OUTSIDER,
    T0,
    MemLog,
    descriptor,
    diverging_logs,
    entry,
    signed,
)

from credfed.errors import (
    AlreadyExistsError,
    CheckpointRollbackError,
    DescriptorMismatchError,
    DescriptorRollbackError,
    EquivocationError,
    FingerprintMismatchError,
    ForkedOriginError,
    NotFoundError,
    ProofError,
    TrustError,
    UntrustedSignerError,
)
from credfed.federation.descriptor import fingerprint, rotate
from credfed.federation.evidence import ForkEvidence, check_fork_evidence
from credfed.federation.trust import TrustState
from credfed.models import Checkpoint, Envelope, SignedCheckpoint
from credfed.statuslog.checkpoint import sign_checkpoint

DE_V1 = descriptor(entry(K1))
DE_ENV = signed(K1, DE_V1)
FR_V1 = descriptor(entry(FR_KEY), country="FR", node_id="fr-node-1")
FR_ENV = signed(FR_KEY, FR_V1)

A, B = diverging_logs(shared=3, total=12)  # A is the honest log our replica follows
PARTIAL = MemLog()
for _i in range(3):
    PARTIAL.append(b"entry-%d" % _i)


def state() -> TrustState:
    s = TrustState()
    s.pin(DE_ENV, fingerprint(DE_ENV))
    s.pin(FR_ENV, fingerprint(FR_ENV))
    return s


def a(size: int, hours: int = 1) -> SignedCheckpoint:
    return A.checkpoint(size, at=T0 + hours * HOUR)


def b(size: int, hours: int = 2) -> SignedCheckpoint:
    return B.checkpoint(size, at=T0 + hours * HOUR)


BOGUS_EMPTY = sign_checkpoint(K1, Checkpoint("DE", 0, bytes(32), T0 + HOUR))


# -- observe: the rules, one scenario per row -------------------------------------------


@dataclass(frozen=True)
class Step:
    cp: SignedCheckpoint
    proof: tuple[bytes, ...] = ()
    advance: bool = True
    raises: type[Exception] | None = None


@dataclass(frozen=True)
class Scenario:
    steps: tuple[Step, ...]
    latest: SignedCheckpoint | None
    forked: bool = False
    replica: MemLog = field(default=A)


SCENARIOS: dict[str, Scenario] = {
    "first checkpoint is accepted": Scenario((Step(a(5)),), a(5)),
    "advance with a consistency proof": Scenario((Step(a(5)), Step(a(9), A.proof(5, 9))), a(9)),
    "advance without a proof is refused": Scenario(
        (Step(a(5)), Step(a(9), raises=ProofError)), a(5)
    ),
    "advance onto another tree is refused, not a provable fork": Scenario(
        (Step(a(5)), Step(b(9), B.proof(5, 9), raises=ProofError)), a(5)
    ),
    "advance from the empty tree needs no proof": Scenario((Step(a(0)), Step(a(9))), a(9)),
    "audit of a larger checkpoint does not advance": Scenario(
        (Step(a(5)), Step(a(9), A.proof(5, 9), advance=False)), a(5)
    ),
    "audit of a larger checkpoint is still checked": Scenario(
        (Step(a(5)), Step(b(9), B.proof(5, 9), advance=False, raises=ProofError)), a(5)
    ),
    "an older consistent checkpoint cannot roll us back": Scenario(
        (Step(a(9)), Step(a(5, hours=5), raises=CheckpointRollbackError)), a(9)
    ),
    "an older consistent checkpoint in an audit is no news": Scenario(
        (Step(a(9)), Step(a(5), advance=False)), a(9)
    ),
    "an older inconsistent checkpoint is equivocation": Scenario(
        (Step(a(9)), Step(b(5), A.proof(5, 9), raises=EquivocationError)), a(9), forked=True
    ),
    "an older inconsistent checkpoint in an audit is equivocation too": Scenario(
        (Step(a(9)), Step(b(5), A.proof(5, 9), advance=False, raises=EquivocationError)),
        a(9),
        forked=True,
    ),
    "an older inconsistent checkpoint without a proof is not yet proven": Scenario(
        (Step(a(9)), Step(b(5), raises=ProofError)), a(9)
    ),
    "an older inconsistent checkpoint with the wrong tree's proof is not proven": Scenario(
        (Step(a(9)), Step(b(5), B.proof(5, 9), raises=ProofError)), a(9)
    ),
    "an older checkpoint beyond our replica cannot be compared": Scenario(
        (Step(a(9)), Step(b(5), raises=CheckpointRollbackError)), a(9), replica=PARTIAL
    ),
    "an older checkpoint within a partial replica is compared": Scenario(
        (
            Step(a(9)),
            Step(b(3), raises=CheckpointRollbackError),  # the shared prefix: consistent
            Step(b(2), advance=False),
        ),
        a(9),
        replica=PARTIAL,
    ),
    "same size, another root is equivocation": Scenario(
        (Step(a(9)), Step(b(9), raises=EquivocationError)), a(9), forked=True
    ),
    "same size and root, later time refreshes the latest": Scenario(
        (Step(a(9, hours=1)), Step(a(9, hours=3))), a(9, hours=3)
    ),
    "same size and root, earlier time keeps the fresher one": Scenario(
        (Step(a(9, hours=3)), Step(a(9, hours=1))), a(9, hours=3)
    ),
    "two roots for the empty tree are equivocation": Scenario(
        (Step(a(0)), Step(BOGUS_EMPTY, raises=EquivocationError)), a(0), forked=True
    ),
    "a bogus empty tree then growth is equivocation": Scenario(
        (Step(BOGUS_EMPTY), Step(a(5), raises=EquivocationError)), BOGUS_EMPTY, forked=True
    ),
    "a bogus empty tree after growth is equivocation": Scenario(
        (Step(a(9)), Step(BOGUS_EMPTY, raises=EquivocationError)), a(9), forked=True
    ),
    "a forked origin refuses further checkpoints": Scenario(
        (
            Step(a(9)),
            Step(b(9), raises=EquivocationError),
            Step(a(12), A.proof(9, 12), raises=ForkedOriginError),
            Step(a(9, hours=5), raises=ForkedOriginError),
        ),
        a(9),
        forked=True,
    ),
    "a checkpoint signed by an outsider is refused": Scenario(
        (Step(A.checkpoint(5, key=OUTSIDER), raises=UntrustedSignerError),), None
    ),
    "a checkpoint signed by another origin's key is refused": Scenario(
        (Step(A.checkpoint(5, key=FR_KEY), raises=UntrustedSignerError),), None
    ),
}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_observe(scenario: Scenario) -> None:
    s = state()
    for step in scenario.steps:
        if step.raises is None:
            s.observe(
                "DE", step.cp, scenario.replica.root_at, proof=step.proof, advance=step.advance
            )
            continue
        with pytest.raises(step.raises) as info:
            s.observe(
                "DE", step.cp, scenario.replica.root_at, proof=step.proof, advance=step.advance
            )
        if isinstance(info.value, EquivocationError):
            # The origin is marked forked before the error, with the same evidence,
            # and the evidence convinces a third party that only knows DE's keys.
            assert s.evidence("DE") == info.value.evidence
            check_fork_evidence(info.value.evidence, TrustState([DE_V1]).keys_for("DE"))
    assert s.latest("DE") == scenario.latest
    assert s.is_forked("DE") is scenario.forked
    assert s.forked_origins() == ({"DE"} if scenario.forked else set())
    assert not s.is_forked("FR")


def test_observe_trusts_only_the_envelope() -> None:
    s = state()
    real = a(5)
    lie = SignedCheckpoint(dataclasses.replace(real.checkpoint, tree_size=12), real.envelope)
    s.observe("DE", lie, A.root_at)
    assert s.latest("DE") == real


def test_observe_refuses_an_unpinned_origin() -> None:
    with pytest.raises(UntrustedSignerError):
        TrustState().observe("DE", a(5), A.root_at)


# -- pinning ----------------------------------------------------------------------------


def test_pin_rules() -> None:
    s = TrustState()
    with pytest.raises(UntrustedSignerError):
        s.check_checkpoint("DE", a(5).envelope)  # nothing is trusted before pinning
    with pytest.raises(FingerprintMismatchError):
        s.pin(DE_ENV, fingerprint(FR_ENV))
    assert s.pin(DE_ENV, fingerprint(DE_ENV)) == DE_V1
    assert s.pin(DE_ENV, fingerprint(DE_ENV)) == DE_V1  # same descriptor: no-op
    other = signed(K1, dataclasses.replace(DE_V1, version=2))
    with pytest.raises(AlreadyExistsError):
        s.pin(other, fingerprint(other))
    thief = descriptor(entry(K1), country="PL", node_id="pl-1")
    with pytest.raises(DescriptorMismatchError):
        s.pin(signed(K1, thief), fingerprint(signed(K1, thief)))
    assert s.origins() == ("DE",)
    assert s.check_checkpoint("DE", a(5).envelope) == a(5)


# -- rotation through the state -----------------------------------------------------------

HANDOVER = T0 + 10 * HOUR
DE_V2, DE_V2_ENV = rotate(DE_V1, K1, K2, HANDOVER)


@pytest.mark.parametrize(
    ("envelope", "raises"),
    [
        pytest.param(DE_V2_ENV, None, id="rotation signed by the trusted key"),
        pytest.param(signed(OUTSIDER, DE_V2), UntrustedSignerError, id="key of no pinned origin"),
        # Routed by key id to FR, whose identity it would change.
        pytest.param(signed(FR_KEY, DE_V2), DescriptorMismatchError, id="another origin's key"),
        pytest.param(
            signed(K1, dataclasses.replace(DE_V1, keys=(entry(K1), entry(K3)))),
            DescriptorRollbackError,
            id="equal version, other content",
        ),
        pytest.param(
            signed(K1, dataclasses.replace(DE_V1, version=2, keys=(entry(K1), entry(FR_KEY)))),
            DescriptorMismatchError,
            id="claims another origin's key",
        ),
        pytest.param(
            signed(K1, dataclasses.replace(DE_V1, version=2, country="PL")),
            DescriptorMismatchError,
            id="changes country",
        ),
    ],
)
def test_update(envelope: Envelope, raises: type[Exception] | None) -> None:
    s = state()
    if raises is None:
        assert s.update(envelope, HANDOVER + HOUR) == DE_V2
        assert s.descriptor("DE") == DE_V2
    else:
        with pytest.raises(raises):
            s.update(envelope, HANDOVER + HOUR)
        assert s.descriptor("DE") == DE_V1


def test_rotation_keeps_old_checkpoints_valid_by_their_timestamp() -> None:
    s = state()
    s.update(DE_V2_ENV, HANDOVER + HOUR)
    before = A.checkpoint(5, at=HANDOVER - HOUR, key=K1)
    late = A.checkpoint(5, at=HANDOVER + timedelta(milliseconds=1), key=K1)
    after = A.checkpoint(5, at=HANDOVER + HOUR, key=K2)
    assert s.check_checkpoint("DE", before.envelope) == before
    assert s.check_checkpoint("DE", after.envelope) == after
    with pytest.raises(UntrustedSignerError):
        s.check_checkpoint("DE", late.envelope)
    assert set(s.keys_for("DE")(HANDOVER)) == {K1.key_id, K2.key_id}
    # Re-fetching the same descriptor after the handover is no change, and
    # replaying the pre-rotation one is a rollback.
    assert s.update(DE_V2_ENV, HANDOVER + 2 * HOUR) == DE_V2
    with pytest.raises(UntrustedSignerError):
        s.update(DE_ENV, HANDOVER + 2 * HOUR)  # K1 expired in V2
    with pytest.raises(DescriptorRollbackError):
        s.update(signed(K2, DE_V1), HANDOVER + 2 * HOUR)  # even signed by the new key
    assert s.descriptor("DE") == DE_V2


def test_a_forked_origin_refuses_descriptor_updates() -> None:
    s = state()
    s.observe("DE", a(9), A.root_at)
    with pytest.raises(EquivocationError):
        s.observe("DE", b(9), A.root_at)
    with pytest.raises(ForkedOriginError):
        s.update(DE_V2_ENV, HANDOVER + HOUR)
    with pytest.raises(ForkedOriginError):
        s.check_checkpoint("DE", a(12).envelope)


# -- evidence from peers ------------------------------------------------------------------


def _peer_evidence() -> ForkEvidence:
    return ForkEvidence("DE", a(5).envelope, b(9).envelope, B.proof(5, 9), B.root(5))


def test_record_fork_from_a_peer() -> None:
    s = state()
    assert s.record_fork(_peer_evidence()) is True
    assert s.is_forked("DE")
    assert s.forked_origins() == {"DE"}
    # Another proof of the same fork is not news: the first evidence is kept.
    other = ForkEvidence("DE", a(9).envelope, b(9).envelope, (), B.root(9))
    assert s.record_fork(other) is False
    assert s.evidence("DE") == _peer_evidence()
    with pytest.raises(ForkedOriginError):
        s.observe("DE", a(5), A.root_at)


@pytest.mark.parametrize(
    "ev",
    [
        pytest.param(
            ForkEvidence("DE", a(5).envelope, a(9).envelope, A.proof(5, 9), A.root(5)),
            id="consistent checkpoints",
        ),
        pytest.param(
            ForkEvidence("DE", a(5).envelope, b(9).envelope, A.proof(5, 9), B.root(5)),
            id="proof from another tree",
        ),
        pytest.param(
            ForkEvidence(
                "DE", a(5).envelope, B.checkpoint(9, key=OUTSIDER).envelope, (), B.root(9)
            ),
            id="second signed by an outsider",
        ),
    ],
)
def test_record_fork_refuses_evidence_that_proves_nothing(ev: ForkEvidence) -> None:
    s = state()
    with pytest.raises(TrustError) as info:
        s.record_fork(ev)
    assert not isinstance(info.value, EquivocationError)
    assert not s.is_forked("DE")


def test_record_fork_for_an_unpinned_origin() -> None:
    with pytest.raises(UntrustedSignerError):
        TrustState([FR_V1]).record_fork(_peer_evidence())


# -- persistence and removal ------------------------------------------------------------------


def test_restore_from_what_the_state_returned() -> None:
    s = TrustState([DE_V2, FR_V1], latest=[a(9)], forks=[])
    with pytest.raises(CheckpointRollbackError):
        s.observe("DE", a(5), A.root_at)
    assert s.descriptor("DE") == DE_V2
    forked = TrustState([DE_V1], latest=[a(9)], forks=[_peer_evidence()])
    assert forked.is_forked("DE")
    with pytest.raises(ValueError, match="without its descriptor"):
        TrustState([FR_V1], latest=[a(9)])
    with pytest.raises(DescriptorMismatchError):
        TrustState([DE_V1, descriptor(entry(K1), country="PL", node_id="pl-1")])


def test_remove_forgets_an_origin_and_its_fork() -> None:
    s = state()
    s.record_fork(_peer_evidence())
    s.remove("DE")
    assert s.origins() == ("FR",)
    assert not s.is_forked("DE")
    assert s.latest("DE") is None
    with pytest.raises(NotFoundError):
        s.remove("DE")
    with pytest.raises(UntrustedSignerError):
        s.keys_for("DE")
