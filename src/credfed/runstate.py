"""What a serving node publishes about itself for ``credfed status``.

The store says what a node holds (log and replica sizes, checkpoints,
forks); only the running process knows when it last reached each partner
and whether its services are healthy. It writes that to
``run/status.json`` in the data directory every few seconds (atomically,
owner-only), and ``credfed status`` reads it. A snapshot older than
:data:`STALE_AFTER` means the node is not running, or hung. No personal
data: countries, times, counts and reasons only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from credfed.files import write_private
from credfed.models import SignedCheckpoint

RUNSTATE_FILE = Path("run") / "status.json"
#: Seconds between snapshots while serving (a small file: cheap to rewrite).
INTERVAL = 2.0
#: A snapshot older than this was not written by a live node (generous, so
#: that a busy event loop is not reported as a dead node).
STALE_AFTER = 15.0


class OriginContact(Protocol):
    """When a partner's data last arrived (federation.sync.OriginState)."""

    origin: str
    last_contact: datetime | None
    via: str | None
    last_error: str | None


#: service ("" for the node as a whole) -> (serving, reason when not).
HealthReport = Mapping[str, tuple[bool, str]]


def snapshot(
    now: datetime,
    ports: Mapping[str, int],
    contacts: Iterable[OriginContact],
    health: HealthReport | None,
    *,
    stopped: bool = False,
    own: SignedCheckpoint | None = None,
) -> dict[str, Any]:
    return {
        "written_at": now.isoformat(),
        # Heartbeat checkpoints live in memory: the store's newest may be older.
        "own_checkpoint": (
            {
                "tree_size": own.checkpoint.tree_size,
                "timestamp": own.checkpoint.timestamp.isoformat(),
            }
            if own is not None
            else None
        ),
        "pid": os.getpid(),
        "stopped": stopped,
        "ports": dict(ports),
        "origins": {
            c.origin: {
                "last_contact": c.last_contact.isoformat() if c.last_contact else None,
                "via": c.via,
                "last_error": c.last_error,
            }
            for c in contacts
        },
        "health": (
            {name or "node": {"serving": ok, "reason": why} for name, (ok, why) in health.items()}
            if health is not None
            else None
        ),
    }


def write(data_dir: Path, state: Mapping[str, Any]) -> None:
    write_private(data_dir / RUNSTATE_FILE, json.dumps(state, sort_keys=True).encode())


def read(data_dir: Path) -> dict[str, Any] | None:
    """The last snapshot, or None if the node never served (or it is unreadable)."""
    try:
        state = json.loads((data_dir / RUNSTATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def live_age(state: Mapping[str, Any] | None, now: datetime) -> float | None:
    """The age of ``state`` if a node serving now wrote it (not stopped, and
    rewritten within :data:`STALE_AFTER`), else None."""
    if state is None or state.get("stopped"):
        return None
    age = age_of(state, now)
    return age if age is not None and age < STALE_AFTER else None


def age_of(state: Mapping[str, Any], now: datetime) -> float | None:
    try:
        return (now - datetime.fromisoformat(str(state["written_at"]))).total_seconds()
    except (KeyError, ValueError, TypeError):
        return None
