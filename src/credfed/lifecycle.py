"""Credential lifecycle rules: which status changes are legal.

Pure functions over the logged state and the calendar; the registry applies
them inside a write transaction.

=============  ===========================================  ====================
change         allowed from (logged status)                 also requires
=============  ===========================================  ====================
suspend        active, reinstated, suspended-but-lapsed      not expired
reinstate      suspended                                     -
revoke         active, suspended, reinstated, superseded     (revoked is terminal)
supersede      active, reinstated                            -
=============  ===========================================  ====================

``expired`` is derived from ``valid_until`` and never logged; a lapsed
suspension (its until-date passed) counts as active again.
"""

from __future__ import annotations

from datetime import date

from credfed.errors import PreconditionError
from credfed.models import Status, StatusState, StoredCredential

ALLOWED_FROM: dict[Status, frozenset[Status]] = {
    Status.SUSPENDED: frozenset({Status.ACTIVE, Status.REINSTATED}),
    Status.REINSTATED: frozenset({Status.SUSPENDED}),
    Status.REVOKED: frozenset(
        {Status.ACTIVE, Status.SUSPENDED, Status.REINSTATED, Status.SUPERSEDED}
    ),
    Status.SUPERSEDED: frozenset({Status.ACTIVE, Status.REINSTATED}),
}


def suspension_lapsed(state: StatusState, today: date) -> bool:
    return (
        state.status is Status.SUSPENDED
        and state.suspended_until is not None
        and state.suspended_until < today
    )


def effective_status(state: StatusState, valid_until: date | None, today: date) -> Status:
    """The status an employer should act on today."""
    status = Status.ACTIVE if suspension_lapsed(state, today) else state.status
    if status in (Status.ACTIVE, Status.REINSTATED) and valid_until and valid_until < today:
        return Status.EXPIRED
    return status


def check_transition(credential: StoredCredential, target: Status, today: date) -> None:
    """Raise PreconditionError unless ``credential`` may move to ``target``."""
    current = credential.state.status
    if current is Status.REVOKED:
        raise PreconditionError(f"credential {credential.credential_id} is revoked (terminal)")
    allowed = current in ALLOWED_FROM[target] or (
        target is Status.SUSPENDED and suspension_lapsed(credential.state, today)
    )
    if not allowed:
        raise PreconditionError(
            f"credential {credential.credential_id} is {current.value}: cannot become "
            f"{target.value}"
        )
    if target is Status.SUSPENDED and (
        effective_status(credential.state, credential.valid_until, today) is Status.EXPIRED
    ):
        raise PreconditionError(f"credential {credential.credential_id} has expired")
