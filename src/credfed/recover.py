"""Rolling a restored node's own log forward from its partners' copies (no grpc).

A backup holds the log as it was when it was taken; the partners replicated
every entry signed after that. Those entries are the node's own (it signed
the checkpoint that covers them) and carry no personal data, so the node
can take them back instead of forking its log, and a revocation made after
the backup is not undone by the restore. The credential records issued after
the backup are not in the log: their ids are reported so that they can be
issued again.

Every step checks before anything is written:

1. Every linked partner is asked for its checkpoint of this node's log,
   verified with this node's own keys (rotated ones included).
2. The largest one must extend the local log: a consistency proof from the
   local size to it (else the log has forked: refused).
3. The missing entries are fetched in bounded batches; with the local
   frontier they must rebuild that checkpoint's root, and each must be an
   entry of this origin at its own index.
4. Every other partner's checkpoint must agree with the log so recovered.
5. One store transaction appends them (:meth:`Store.append_recovered`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from credfed import runstate
from credfed.backup import PartnerView, ask_partners
from credfed.crypto.keys import VerifyingKey
from credfed.errors import CredfedError, PreconditionError, ProofError, ValidationError
from credfed.federation.replica import BATCH, LogSource, verified_nodes
from credfed.models import SignedCheckpoint, StatusState
from credfed.statuslog import merkle
from credfed.statuslog.entries import decode_entry
from credfed.statuslog.log import root_hash
from credfed.storage.base import RecoveredEntries, Store


class RecoverError(CredfedError):
    """Recovery refused; the message names the partner and the problem.
    Nothing was written."""


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a recovery did."""

    #: The partner whose copy was taken; None: no partner held more.
    partner: str | None
    size_before: int
    size_after: int
    #: Entries applied to credentials held here, by status.
    applied: dict[str, int] = field(default_factory=dict)
    #: Credentials the recovered entries name that have no record here
    #: (issued after the backup): to be issued again.
    lost: list[str] = field(default_factory=list)
    views: list[PartnerView] = field(default_factory=list)

    @property
    def unchecked(self) -> list[PartnerView]:
        """Partners that could not be asked (or answered unverifiably)."""
        return [v for v in self.views if v.problem is not None]

    def to_dict(self) -> dict[str, object]:
        return {
            "partner": self.partner,
            "size_before": self.size_before,
            "size_after": self.size_after,
            "entries": self.size_after - self.size_before,
            "applied": dict(sorted(self.applied.items())),
            "lost": self.lost,
            "partners": [
                {"partner": v.partner, "size": v.size, "problem": v.problem} for v in self.views
            ],
        }


def refuse_if_serving(data_dir: Path, now: datetime) -> None:
    """A node serving from ``data_dir`` signs its log: recovering under it
    would race its appends. Judged by the run state the serving process
    rewrites every few seconds (as ``credfed status`` does)."""
    age = runstate.live_age(runstate.read(data_dir), now)
    if age is not None:
        raise PreconditionError(
            f"the node in {data_dir} is serving (run state {age:.0f}s old): stop it first"
        )


async def recover_log(
    origin: str,
    store: Store,
    keys: Mapping[str, VerifyingKey],
    links: Mapping[str, LogSource],
) -> Recovered:
    """Append to ``origin``'s (this node's) log in ``store`` the entries the
    partners behind ``links`` hold beyond it. RecoverError if a partner's
    copy does not extend the local log (a fork) or does not check out."""
    asked = await ask_partners(origin, keys, links)
    views = [view for view, _ in asked]
    held = [(view.partner, signed) for view, signed in asked if signed is not None]
    local = await store.log_size()
    larger = [(name, s) for name, s in held if s.checkpoint.tree_size > local]
    if not larger:
        await _agree(origin, held, lambda size: root_hash(store, size))
        return Recovered(None, local, local, views=views)
    name, best = max(larger, key=lambda item: item[1].checkpoint.tree_size)
    source = links[name]
    size = best.checkpoint.tree_size
    local_root = await root_hash(store, local)
    if local:
        try:
            proof = await source.consistency(origin, local, size)
        except CredfedError as exc:
            raise RecoverError(f"partner {name}: {exc}") from None
        try:
            merkle.verify_consistency(local, size, local_root, best.checkpoint.root_hash, proof)
        except ProofError:
            raise RecoverError(
                f"partner {name} holds {origin}'s log at size {size}, signed by this node, and "
                f"it does not extend this node's log of size {local}: the log has forked "
                "(this node signed entries the partners never saw); refused, nothing written"
            ) from None
    leaves = await _fetch(origin, source, local, size)
    frontier = await store.get_log_nodes(merkle.frontier_ids(local))
    if len(frontier) != len(merkle.frontier_ids(local)):
        raise RecoverError("the local log is missing Merkle nodes: restore the backup again")
    try:
        nodes, _ = verified_nodes(origin, source, best, local, leaves, [], frontier)
    except ProofError as exc:
        raise RecoverError(f"partner {name}: {exc}") from None
    entries = _entries(origin, name, local, leaves)
    tree = dict(frontier)
    tree.update(((level, index), h) for level, index, h in nodes)

    async def recovered_root(at: int) -> bytes:
        if at <= local:
            return await root_hash(store, at)
        return merkle.root_hash(at, tree)

    await _agree(origin, held, recovered_root)
    newest = {cid: (state, index) for index, (cid, state) in enumerate(entries, local)}
    missing = set(
        await store.append_recovered(
            RecoveredEntries(
                start=local,
                leaves=leaves,
                nodes=nodes,
                states=[(cid, state, index) for cid, (state, index) in newest.items()],
                checkpoint=best,
            )
        )
    )
    applied = Counter(state.status.value for cid, state in entries if cid not in missing)
    return Recovered(name, local, size, dict(applied), sorted(missing), views)


async def _fetch(origin: str, source: LogSource, start: int, end: int) -> list[bytes]:
    """Entries [start, end) in batches a partner serves (at most BATCH each)."""
    leaves: list[bytes] = []
    for at in range(start, end, BATCH):
        upto = min(end, at + BATCH)
        try:
            batch = await source.entries(origin, at, upto)
        except CredfedError as exc:
            raise RecoverError(f"partner {source.name}: {exc}") from None
        if len(batch) != upto - at:
            raise RecoverError(
                f"partner {source.name} sent {len(batch)} entries of {origin} for [{at}, {upto})"
            )
        leaves.extend(batch)
    return leaves


def _entries(
    origin: str, partner: str, start: int, leaves: Sequence[bytes]
) -> list[tuple[str, StatusState]]:
    """(credential id, state) of each leaf, once it is shown to be an entry
    of ``origin`` at its own index (a leaf moved from another log or
    position is refused, though its hash is right)."""
    out = []
    for index, leaf in enumerate(leaves, start):
        try:
            entry = decode_entry(leaf)
        except ValidationError as exc:
            raise RecoverError(f"partner {partner}: entry {index} is malformed: {exc}") from None
        if entry.origin != origin or entry.index != index:
            raise RecoverError(
                f"partner {partner}: entry {index} claims to be entry {entry.index} of "
                f"{entry.origin}: refused"
            )
        out.append((entry.credential_id, entry.state))
    return out


async def _agree(
    origin: str,
    held: Sequence[tuple[str, SignedCheckpoint]],
    root_at: Callable[[int], Awaitable[bytes]],
) -> None:
    """Every partner's checkpoint must be of this log (``root_at`` a size)."""
    for name, signed in held:
        cp = signed.checkpoint
        if await root_at(cp.tree_size) != cp.root_hash:
            raise RecoverError(
                f"partner {name} holds {origin}'s log at size {cp.tree_size}, signed by this "
                "node, with another root than this node's log: the log has forked; refused, "
                "nothing written"
            )
