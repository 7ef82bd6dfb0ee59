"""Table-driven tests of the credential lifecycle rules."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from credfed.errors import PreconditionError
from credfed.lifecycle import check_transition, effective_status
from credfed.models import Envelope, Status, StatusState, StoredCredential

TODAY = date(2026, 11, 28)
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def cred(
    status: Status, *, valid_until: date | None = None, until: date | None = None
) -> StoredCredential:
    return StoredCredential(
        credential_id="DE-TEST",
        issuer_id="x",
        family_key="novák",
        birth_date=date(1990, 1, 1),
        valid_until=valid_until,
        supersedes=None,
        record=Envelope(b"{}", "t", "k", b"s"),
        state=StatusState(status, "r", NOW, suspended_until=until),
        last_entry_index=0,
    )


S = Status
LEGAL = [
    (S.ACTIVE, S.SUSPENDED),
    (S.ACTIVE, S.REVOKED),
    (S.ACTIVE, S.SUPERSEDED),
    (S.SUSPENDED, S.REINSTATED),
    (S.SUSPENDED, S.REVOKED),
    (S.REINSTATED, S.SUSPENDED),
    (S.REINSTATED, S.REVOKED),
    (S.REINSTATED, S.SUPERSEDED),
    (S.SUPERSEDED, S.REVOKED),
]
TARGETS = (S.SUSPENDED, S.REINSTATED, S.REVOKED, S.SUPERSEDED)
LOGGED = (S.ACTIVE, S.SUSPENDED, S.REVOKED, S.REINSTATED, S.SUPERSEDED)
ILLEGAL = [(a, b) for a in LOGGED for b in TARGETS if (a, b) not in LEGAL]


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_legal_transitions(current: Status, target: Status) -> None:
    check_transition(cred(current), target, TODAY)


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_illegal_transitions_are_refused(current: Status, target: Status) -> None:
    with pytest.raises(PreconditionError):
        check_transition(cred(current), target, TODAY)


def test_revoked_is_terminal() -> None:
    for target in TARGETS:
        with pytest.raises(PreconditionError, match="terminal"):
            check_transition(cred(S.REVOKED), target, TODAY)


@pytest.mark.parametrize(
    ("status", "valid_until", "until", "expected"),
    [
        (S.ACTIVE, None, None, S.ACTIVE),
        (S.ACTIVE, date(2026, 11, 28), None, S.ACTIVE),  # valid through its last day
        (S.ACTIVE, date(2026, 11, 27), None, S.EXPIRED),
        (S.REINSTATED, date(2020, 1, 1), None, S.EXPIRED),
        (S.SUSPENDED, None, date(2026, 11, 28), S.SUSPENDED),
        (S.SUSPENDED, None, date(2026, 11, 27), S.ACTIVE),  # lapsed suspension
        (S.SUSPENDED, date(2020, 1, 1), date(2021, 1, 1), S.EXPIRED),
        (S.SUSPENDED, date(2020, 1, 1), None, S.SUSPENDED),
        (S.REVOKED, date(2020, 1, 1), None, S.REVOKED),
        (S.SUPERSEDED, date(2020, 1, 1), None, S.SUPERSEDED),
    ],
)
def test_effective_status(
    status: Status, valid_until: date | None, until: date | None, expected: Status
) -> None:
    c = cred(status, valid_until=valid_until, until=until)
    assert effective_status(c.state, c.valid_until, TODAY) is expected


def test_expired_credential_cannot_be_suspended_but_can_be_revoked_or_renewed() -> None:
    expired = cred(S.ACTIVE, valid_until=date(2025, 1, 1))
    with pytest.raises(PreconditionError, match="expired"):
        check_transition(expired, S.SUSPENDED, TODAY)
    check_transition(expired, S.REVOKED, TODAY)
    check_transition(expired, S.SUPERSEDED, TODAY)


def test_lapsed_suspension_can_be_suspended_again() -> None:
    check_transition(cred(S.SUSPENDED, until=date(2026, 1, 1)), S.SUSPENDED, TODAY)
    with pytest.raises(PreconditionError):
        check_transition(cred(S.SUSPENDED, until=date(2027, 1, 1)), S.SUSPENDED, TODAY)
