"""`credfed status`: what an operator needs at a glance.

Read from the data directory (the store is safe to read while the node
serves) and from the run state the serving process publishes
(:mod:`credfed.runstate`): peers, this node's log, per origin the replica
size, lag and last contact, health, and alarms. No personal data:
countries, sizes, times and reasons only.

Alarms, each one line starting with its kind:

- ``FORK``: an origin signed two inconsistent checkpoints (permanent until
  the operator acts; the evidence is in the store);
- ``DOWN``: no live run state: the node is not serving (or hung);
- ``STORE``: the database cannot be written (checked here, a write lock
  taken and released without writing);
- ``STALE``: an origin's newest checkpoint is older than its staleness limit
  (its credentials verify as UNKNOWN); only while serving, since a stopped
  node's replicas all go stale and ``DOWN`` says why;
- ``HEALTH``: a service the node reports NOT_SERVING, with its reason;
- ``HEARTBEAT``: this node's own checkpoint is older than its heartbeat
  should allow (partners will soon see it as stale).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from credfed import runstate
from credfed.clock import utc_now
from credfed.config import Config
from credfed.federation.evidence import decode_evidence
from credfed.federation.peers import PeerDirectory
from credfed.storage.sqlite import SqliteStore
from credfed.verification import age_seconds


def store_write_problem(db_path: Path) -> str | None:
    """Why the database cannot be written now, or None. Takes the write lock
    (waiting at most a second) and rolls back: nothing is written."""
    try:
        db = sqlite3.connect(db_path, timeout=1.0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        finally:
            db.close()
    except sqlite3.Error as exc:
        return str(exc)
    return None


def _since(moment: object, now: datetime) -> float | None:
    if not isinstance(moment, str):
        return None
    try:
        return round((now - datetime.fromisoformat(moment)).total_seconds(), 1)
    except ValueError:
        return None


async def node_status(config: Config) -> dict[str, Any]:
    now = utc_now()
    directory = PeerDirectory(config.data_dir, config.country)
    peers = directory.list()
    links = {link.country: link.endpoint for link in directory.links()}
    run = runstate.read(config.data_dir)
    run_age = runstate.age_of(run, now) if run else None
    serving = runstate.live_age(run, now) is not None
    contacts: dict[str, Any] = (run or {}).get("origins") or {}
    store = await SqliteStore.open(config.db_path)
    try:
        own = await store.latest_checkpoint()
        replicas = {cp.checkpoint.origin: cp for cp in await store.replica_checkpoints()}
        forks = {origin: decode_evidence(data) for origin, data in await store.list_fork_evidence()}
        origins = []
        for peer in peers:
            origin = peer.descriptor.country
            cp = replicas.get(origin)
            age = age_seconds(cp, now) if cp else None
            size = await store.replica_size(origin)
            contact = contacts.get(origin) or {}
            origins.append(
                {
                    "origin": origin,
                    "link": links.get(origin),
                    "replica_size": size,
                    "checkpoint_size": cp.checkpoint.tree_size if cp else None,
                    # Entries signed for but not yet stored (normally 0).
                    "entries_behind": (cp.checkpoint.tree_size - size) if cp else None,
                    # Lag: the age of the newest status data held for the origin.
                    "checkpoint_age_seconds": age,
                    "max_staleness_seconds": config.federation.staleness_for(origin),
                    "stale": age is None or age > config.federation.staleness_for(origin),
                    "forked": origin in forks,
                    "last_contact": contact.get("last_contact"),
                    "last_contact_age_seconds": _since(contact.get("last_contact"), now),
                    "last_contact_via": contact.get("via"),
                    "last_error": contact.get("last_error"),
                }
            )
    finally:
        await store.close()
    store_problem = store_write_problem(config.db_path)
    own_age: float | None = age_seconds(own, now) if own else None
    signed = (run or {}).get("own_checkpoint") if serving else None
    if isinstance(signed, dict):  # the serving node's newest, heartbeats included
        own_age = _since(signed.get("timestamp"), now)
    health = (run or {}).get("health") if serving else None
    return {
        "country": config.country,
        "node_id": config.node_id,
        "serving": serving,
        "run_state_age_seconds": round(run_age, 1) if run_age is not None else None,
        "ports": (run or {}).get("ports") if serving else None,
        "log_size": own.checkpoint.tree_size if own else 0,
        "checkpoint_age_seconds": own_age,
        "store_writable": store_problem is None,
        "peers": [
            {
                "country": p.descriptor.country,
                "node_id": p.descriptor.node_id,
                "key_ids": [k.key_id for k in p.descriptor.keys],
                "link": links.get(p.descriptor.country),
                "fingerprint": p.fingerprint,
            }
            for p in peers
        ],
        "origins": origins,
        "health": health,
        "alarms": _alarms(
            config,
            serving,
            bool((run or {}).get("stopped")),
            run_age,
            store_problem,
            own_age,
            origins,
            health,
        ),
    }


def _alarms(  # noqa: PLR0917 - the parts of one report
    config: Config,
    serving: bool,
    stopped: bool,
    run_age: float | None,
    store_problem: str | None,
    own_age: float | None,
    origins: list[dict[str, Any]],
    health: dict[str, Any] | None,
) -> list[str]:
    alarms = [
        f"FORK: {o['origin']} signed two inconsistent checkpoints; its data is refused"
        " (evidence kept in the store)"
        for o in sorted(origins, key=lambda o: o["origin"])
        if o["forked"]
    ]
    if not serving:
        if run_age is None:
            why = "it has not served from this data directory"
        elif stopped:
            why = f"it stopped {run_age:.0f} s ago"
        else:
            why = f"no run state for {run_age:.0f} s: stopped without notice, or hung"
        alarms.append(f"DOWN: the node is not serving ({why})")
    if store_problem is not None:
        alarms.append(f"STORE: the database cannot be written: {store_problem}")
    if not serving:
        return alarms
    for o in origins:
        if o["stale"] and not o["forked"]:
            age = o["checkpoint_age_seconds"]
            held = f"newest checkpoint {age:.0f} s old" if age is not None else "no checkpoint yet"
            error = f"; last error: {o['last_error']}" if o["last_error"] else ""
            alarms.append(
                f"STALE: {o['origin']}: {held} (max {o['max_staleness_seconds']:.0f} s),"
                f" its credentials verify as UNKNOWN{error}"
            )
    for service, state in sorted((health or {}).items()):
        if isinstance(state, dict) and not state.get("serving", True):
            alarms.append(f"HEALTH: {service} NOT_SERVING: {state.get('reason') or 'no reason'}")
    fed = config.federation
    if own_age is not None and own_age > 2 * fed.checkpoint_interval + runstate.STALE_AFTER:
        alarms.append(
            f"HEARTBEAT: own checkpoint {own_age:.0f} s old (re-signed every"
            f" {fed.checkpoint_interval:.0f} s): partners will see this node as stale"
        )
    return alarms
