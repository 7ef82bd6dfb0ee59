"""Shared vocabularies: sectors and status reason codes.

Reason codes are shared across the federation so that a revocation in one
country compares with one in another (docs/vocabulary.md explains each).
"""

from __future__ import annotations

from typing import Final

from credfed.models import Status

SECTORS: Final = frozenset(
    {
        "construction",
        "healthcare",
        "information technology",
        "transport",
        "energy",
        "manufacturing",
        "hospitality",
    }
)

#: Reason codes allowed for each logged status.
REASONS: Final[dict[Status, frozenset[str]]] = {
    Status.ACTIVE: frozenset({"issued"}),
    Status.SUSPENDED: frozenset(
        {
            "under_investigation",
            "disciplinary",
            "missing_continuing_education",
            "missing_insurance",
            "court_order",
            "administrative",
        }
    ),
    Status.REINSTATED: frozenset(
        {"appeal_upheld", "investigation_closed", "requirement_met", "suspension_error"}
    ),
    Status.REVOKED: frozenset(
        {
            "fraud",
            "issued_in_error",
            "disciplinary",
            "court_order",
            "withdrawn_by_issuer",
            "holder_request",
        }
    ),
    Status.SUPERSEDED: frozenset({"upgrade", "specialisation_added", "renewal", "correction"}),
}
