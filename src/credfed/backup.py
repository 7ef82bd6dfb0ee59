"""Backing up a node's data directory and restoring it (no grpc).

A backup is a directory: a consistent copy of the database taken with
SQLite's ``VACUUM INTO`` (one read transaction, so the node may keep serving
and writing meanwhile), the files a node needs to come back (configuration,
descriptor, signing keys, TLS material, pinned partners and their links with
peer tokens, the admin token) and ``manifest.json``: the node, its own log at
backup time and the sha256 of every file. It holds secrets and personal data:
directories are created 0700, files 0600, and it appears under its final name
only once complete (built next to it, then renamed).

A restored node may hold less of its own log than its partners replicated
(changes made after the backup). Signing again would fork its log, which the
partners would rightly report as equivocation. So a restore leaves
:data:`RESTORE_MARKER`, and ``credfed serve`` runs :func:`check_partners`
before signing anything: only if no linked partner holds more of the log
(or a different one) is the marker removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from credfed import config as cfg
from credfed.crypto.envelope import envelope_to_json
from credfed.crypto.keys import VerifyingKey
from credfed.errors import (
    AlreadyExistsError,
    CredfedError,
    NotFoundError,
    PreconditionError,
    UnavailableError,
)
from credfed.federation.local import DESCRIPTOR_FILE
from credfed.federation.peers import PEERS_DIR
from credfed.federation.replica import LogSource
from credfed.models import Envelope, SignedCheckpoint
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import verify_checkpoint
from credfed.statuslog.log import root_hash
from credfed.storage.base import LogReader

FORMAT = "credfed-backup/1"
MANIFEST = "manifest.json"
#: Left in a restored data directory until the partners' copies of the log
#: were checked (``credfed serve``).
RESTORE_MARKER = "restored.json"
#: What a node needs besides its database (``config.py``, ``bootstrap.py``).
FILES = (cfg.CONFIG_FILE, DESCRIPTOR_FILE, cfg.ADMIN_TOKEN_FILE)
DIRS = (cfg.KEY_DIR, cfg.TLS_DIR, PEERS_DIR)
_MAX_MANIFEST = 4 * 1024 * 1024
_LEAF_BATCH = 10_000
_CHUNK = 1 << 20


class BackupError(CredfedError):
    """A backup cannot be made, or one offered for restore is damaged; the
    message names the file."""


@dataclass(frozen=True, slots=True)
class LogState:
    """A node's own log as a database copy holds it."""

    size: int
    root: bytes
    checkpoint: SignedCheckpoint | None


@dataclass(frozen=True, slots=True)
class Summary:
    path: Path
    country: str
    node_id: str
    created_at: str
    log: LogState
    files: int
    bytes: int

    def to_dict(self) -> dict[str, object]:
        cp = self.log.checkpoint
        return {
            "path": str(self.path),
            "country": self.country,
            "node_id": self.node_id,
            "created_at": self.created_at,
            "log_size": self.log.size,
            "root_hash": self.log.root.hex(),
            "checkpoint_time": cp.checkpoint.timestamp.isoformat() if cp else None,
            "files": self.files,
            "bytes": self.bytes,
        }


# -- backup -------------------------------------------------------------------------


def create_backup(data_dir: Path, out: Path, now: datetime) -> Summary:
    """Copy the node in ``data_dir`` (serving or not) to the new directory
    ``out``, then check the copy (integrity, log against its checkpoint)."""
    config = cfg.load(data_dir)
    if out.exists() or out.is_symlink():
        raise AlreadyExistsError(f"--out {out} already exists: backups are never overwritten")
    if not out.parent.is_dir():
        raise NotFoundError(f"--out: directory {out.parent} does not exist")
    if not config.db_path.is_file():
        raise NotFoundError(f"{config.db_path} not found: not a node's data directory")
    with _building(out) as tmp:
        # The database first: every key that signed its checkpoints is then
        # among the key files copied after it (a rotation only adds keys).
        _vacuum_into(config.db_path, tmp / cfg.DB_FILE)
        for name in FILES:
            if (data_dir / name).is_file():
                _copy_private(data_dir / name, tmp / name)
        for name in DIRS:
            source = data_dir / name
            if source.is_dir():
                for path in sorted(source.rglob("*")):
                    if path.is_file() and not path.name.endswith(".tmp"):
                        _copy_private(path, tmp / path.relative_to(data_dir))
        state = check_database(tmp / cfg.DB_FILE, _own_keys(tmp), config.country)
        files = _hash_tree(tmp, data_dir)
        manifest = {
            "format": FORMAT,
            "country": config.country,
            "node_id": config.node_id,
            "created_at": now.isoformat(),
            "log": _log_json(state),
            "files": files,
        }
        _write_new(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return _summary(out, manifest, state)


def _vacuum_into(db: Path, target: Path) -> None:
    """A consistent snapshot of a live WAL database, by SQLite itself (never
    a file copy, which could catch a page half-written)."""
    _write_new(target, b"")  # 0600 before SQLite writes personal data into it
    try:
        conn = sqlite3.connect(db, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {db}: {exc}") from None
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("VACUUM INTO ?", (str(target),))
    except sqlite3.Error as exc:
        raise BackupError(f"copying {db} failed: {exc}") from None
    finally:
        conn.close()
    _fsync(target)


# -- checking a copy ------------------------------------------------------------------


def check_database(db: Path, keys: Mapping[str, VerifyingKey], origin: str) -> LogState:
    """``PRAGMA integrity_check``, then every leaf of the own log hashed into
    a tree whose root must be the one of the latest signed checkpoint (checked
    with ``keys``), which must cover the whole log."""
    name = db.name
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"{name}: cannot open: {exc}") from None
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(5)")]
        if problems != ["ok"]:
            raise BackupError(f"{name}: integrity check failed: {'; '.join(problems)[:300]}")
        size, root = _rebuild_root(conn, name)
        row = conn.execute(
            "SELECT payload, payload_type, key_id, signature FROM checkpoints "
            "ORDER BY tree_size DESC LIMIT 1"
        ).fetchone()
        stored = _stored_frontier(conn, size)
    except sqlite3.Error as exc:
        raise BackupError(f"{name}: cannot read: {exc}") from None
    finally:
        conn.close()
    if row is None:
        if size:
            raise BackupError(f"{name}: the log has {size} entries but no signed checkpoint")
        return LogState(0, merkle.EMPTY_ROOT, None)
    envelope = Envelope(bytes(row[0]), str(row[1]), str(row[2]), bytes(row[3]))
    try:
        signed = verify_checkpoint(envelope, keys, origin)
    except CredfedError as exc:
        raise BackupError(f"{name}: the latest checkpoint does not verify: {exc}") from None
    cp = signed.checkpoint
    if cp.tree_size != size:
        raise BackupError(f"{name}: the log has {size} entries, its checkpoint {cp.tree_size}")
    if cp.root_hash != root:
        raise BackupError(f"{name}: the log's entries do not hash to its checkpoint's root")
    # The node's proofs use the stored nodes, not the leaves: they must agree.
    if size and (
        len(stored) != len(merkle.frontier_ids(size)) or merkle.root_hash(size, stored) != root
    ):
        raise BackupError(f"{name}: stored Merkle nodes disagree with the log's entries")
    return LogState(size, root, signed)


def _rebuild_root(conn: sqlite3.Connection, name: str) -> tuple[int, bytes]:
    """The root of the own log from its leaves, in bounded memory (only the
    frontier of the tree is kept between batches)."""
    frontier: dict[tuple[int, int], bytes] = {}
    size = 0
    cursor = conn.execute("SELECT idx, leaf FROM log_leaves ORDER BY idx")
    while batch := cursor.fetchmany(_LEAF_BATCH):
        hashes: list[bytes] = []
        for idx, leaf in batch:
            if idx != size + len(hashes):
                raise BackupError(f"{name}: log entry {size + len(hashes)} is missing")
            hashes.append(merkle.leaf_hash(bytes(leaf)))
        known = dict(frontier)
        known.update(((lv, ix), h) for lv, ix, h in merkle.append_nodes(size, hashes, frontier))
        size += len(hashes)
        frontier = {i: known[i] for i in merkle.frontier_ids(size)}
    return size, merkle.root_hash(size, frontier)


def _stored_frontier(conn: sqlite3.Connection, size: int) -> dict[tuple[int, int], bytes]:
    """The stored nodes a root at ``size`` is made of (what the node's proofs use)."""
    out = {}
    for level, index in merkle.frontier_ids(size):
        row = conn.execute(
            "SELECT hash FROM log_nodes WHERE node_key = ?", ((level << 56) | index,)
        ).fetchone()
        if row is not None:
            out[(level, index)] = bytes(row[0])
    return out


def _own_keys(directory: Path) -> dict[str, VerifyingKey]:
    """Every signing key the node has had (``keys/*.pub``, hex of the raw key)."""
    keys = {}
    for path in sorted((directory / cfg.KEY_DIR).glob("*.pub")):
        try:
            key = VerifyingKey.from_raw(bytes.fromhex(path.read_text().strip()))
        except (ValueError, CredfedError):
            raise BackupError(f"{cfg.KEY_DIR}/{path.name}: not a public key") from None
        keys[key.key_id] = key
    return keys


# -- verifying and restoring --------------------------------------------------------------


def verify_backup(backup: Path) -> Summary:
    """Check a backup: every file listed with its sha256 and nothing else,
    the database copy intact, and its log matching the manifest and its own
    signed checkpoint. BackupError names the first problem."""
    manifest = _read_manifest(backup)
    listed = manifest["files"]
    present = {}
    for path in sorted(backup.rglob("*")):
        rel = path.relative_to(backup).as_posix()
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise BackupError(f"{rel}: not a regular file")
        if path.is_file() and rel != MANIFEST:
            present[rel] = path
    for rel in sorted(set(listed) | set(present)):
        if rel not in present:
            raise BackupError(f"{rel}: listed in the manifest but missing")
        if rel not in listed:
            raise BackupError(f"{rel}: not listed in the manifest")
        digest, size = _sha256(present[rel])
        if digest != listed[rel].get("sha256") or size != listed[rel].get("size"):
            raise BackupError(f"{rel}: damaged (its sha256 differs from the manifest)")
    if cfg.DB_FILE not in listed or cfg.CONFIG_FILE not in listed:
        raise BackupError(f"{MANIFEST}: the backup holds no {cfg.DB_FILE} or {cfg.CONFIG_FILE}")
    state = check_database(backup / cfg.DB_FILE, _own_keys(backup), manifest["country"])
    if _log_json(state) != manifest["log"]:
        raise BackupError(f"{cfg.DB_FILE}: its log is not the one the manifest describes")
    return _summary(backup, manifest, state)


def restore_backup(backup: Path, data_dir: Path) -> Summary:
    """Verify ``backup`` and restore it as the new data directory
    ``data_dir`` (absent or empty), with the restore marker set."""
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise AlreadyExistsError(f"--data-dir {data_dir} is not empty: restore into a new one")
    summary = verify_backup(backup)
    data_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    manifest = _read_manifest(backup)
    with _building(data_dir, replace_empty=True) as tmp:
        for rel, entry in sorted(manifest["files"].items()):
            target = tmp / rel
            _copy_private(backup / rel, target)
            os.chmod(target, _restored_mode(rel, entry))
        marker = {
            "backup": str(backup.resolve()),
            "backup_created_at": summary.created_at,
            "log_size": summary.log.size,
            "root_hash": summary.log.root.hex(),
        }
        _write_new(tmp / RESTORE_MARKER, json.dumps(marker, indent=2).encode())
        # The restored data must load as a node before it takes the name.
        cfg.load(tmp)
    return summary


def _restored_mode(rel: str, entry: Mapping[str, Any]) -> int:
    """The original mode, never wider than 0644; secrets always 0600."""
    secret = (
        rel in (cfg.DB_FILE, cfg.ADMIN_TOKEN_FILE)
        or (rel.startswith(f"{cfg.KEY_DIR}/") and rel.endswith(".pem"))
        or (rel.startswith(f"{cfg.TLS_DIR}/") and rel.endswith(".key"))
        or rel.endswith(".link.json")
    )
    if secret:
        return 0o600
    try:
        return int(str(entry.get("mode", "600")), 8) & 0o644
    except ValueError:
        return 0o600


def restore_pending(data_dir: Path) -> dict[str, Any] | None:
    """The restore marker of ``data_dir``, if the partners were not checked yet."""
    path = data_dir / RESTORE_MARKER
    if not path.exists():
        return None
    try:
        marker = json.loads(path.read_bytes()[:_MAX_MANIFEST])
    except ValueError:
        marker = None
    return marker if isinstance(marker, dict) else {}


def clear_restore_marker(data_dir: Path) -> None:
    (data_dir / RESTORE_MARKER).unlink(missing_ok=True)
    _fsync(data_dir)


# -- a restored node and its partners ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartnerView:
    """What one linked partner holds of this node's log."""

    partner: str
    #: None: it answered that it holds no checkpoint of this log.
    size: int | None
    #: Why it could not be checked (unreachable, a bad signature), else None.
    problem: str | None = None


async def ask_partners(
    origin: str, keys: Mapping[str, VerifyingKey], links: Mapping[str, LogSource]
) -> list[tuple[PartnerView, SignedCheckpoint | None]]:
    """What every linked partner holds of ``origin``'s (this node's) log, by
    partner name: its checkpoint, verified with ``keys``, or the problem
    that kept it from being checked."""
    asked: list[tuple[PartnerView, SignedCheckpoint | None]] = []
    for name, link in sorted(links.items()):
        try:
            signed = verify_checkpoint(await link.checkpoint(origin), keys, origin)
        except NotFoundError:
            asked.append((PartnerView(name, None), None))
            continue
        except (UnavailableError, PreconditionError) as exc:
            asked.append((PartnerView(name, None, f"unreachable: {str(exc)[:200]}"), None))
            continue
        except CredfedError as exc:
            asked.append((PartnerView(name, None, f"its checkpoint does not verify: {exc}"), None))
            continue
        asked.append((PartnerView(name, signed.checkpoint.tree_size), signed))
    return asked


async def check_partners(
    origin: str,
    log: LogReader,
    keys: Mapping[str, VerifyingKey],
    links: Mapping[str, LogSource],
    *,
    allow_unverified: bool = False,
) -> list[PartnerView]:
    """Ask every linked partner for its checkpoint of ``origin``'s (this
    node's) log and compare it with the local log. Raises PreconditionError
    if one holds a larger tree, or one that the local log does not contain:
    signing now would fork the log. A partner that cannot be asked (or
    answers with a checkpoint this node did not sign) also refuses, unless
    ``allow_unverified``."""
    local = await log.log_size()
    asked = await ask_partners(origin, keys, links)
    views = [view for view, _ in asked]
    for view, signed in asked:
        if signed is None:
            continue
        name, cp = view.partner, signed.checkpoint
        if cp.tree_size > local:
            raise PreconditionError(
                f"restored log is behind partner {name}: {name} holds {origin}'s log at size "
                f"{cp.tree_size}, this node has {local}; signing now would fork the log. "
                "Run 'credfed recover' to take the missing entries from the partners, or "
                "restore a newer backup (taken after that size)"
            )
        if await root_hash(log, cp.tree_size) != cp.root_hash:
            raise PreconditionError(
                f"restored log disagrees with partner {name}: {name} holds {origin}'s log at "
                f"size {cp.tree_size} with another root than this node's (size {local}); "
                "this backup is not of the log the partners hold: do not serve it"
            )
    unverified = [v for v in views if v.problem is not None]
    if unverified and not allow_unverified:
        first = unverified[0]
        raise PreconditionError(
            f"restored node cannot check partner {first.partner} ({first.problem}); "
            "start it when every linked partner answers, or pass --allow-unverified-restore "
            "if you are sure no partner holds more of this log"
        )
    return views


# -- files ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _building(final: Path, *, replace_empty: bool = False) -> Iterator[Path]:
    """A private temporary directory next to ``final``, renamed to it once
    the block completes, removed if it fails: ``final`` never names half of
    anything."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        for path in sorted(tmp.rglob("*"), reverse=True):
            _fsync(path)
        _fsync(tmp)
        if final.exists() and not replace_empty:
            raise AlreadyExistsError(f"{final} appeared while the backup was being made")
        try:
            os.rename(tmp, final)  # replaces an empty directory only
        except OSError as exc:
            raise BackupError(f"cannot create {final}: {exc.strerror}") from None
        _fsync(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _copy_private(source: Path, target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        shutil.copyfileobj(src, out, _CHUNK)


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _hash_tree(tmp: Path, source: Path) -> dict[str, dict[str, object]]:
    """Every file of the backup: sha256, size and the mode it had in ``source``."""
    files: dict[str, dict[str, object]] = {}
    for path in sorted(tmp.rglob("*")):
        if path.is_file():
            rel = path.relative_to(tmp).as_posix()
            digest, size = _sha256(path)
            original = source / rel
            mode = stat.S_IMODE(original.stat().st_mode) if original.exists() else 0o600
            files[rel] = {"sha256": digest, "size": size, "mode": f"{mode:04o}"}
    return files


def _read_manifest(backup: Path) -> dict[str, Any]:
    path = backup / MANIFEST
    if not backup.is_dir():
        raise BackupError(f"{backup}: not a backup directory")
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_MANIFEST + 1)
    except OSError as exc:
        raise BackupError(f"{MANIFEST}: cannot read: {exc.strerror}") from None
    if len(data) > _MAX_MANIFEST:
        raise BackupError(f"{MANIFEST}: larger than {_MAX_MANIFEST} bytes")
    try:
        manifest = json.loads(data)
    except ValueError:
        raise BackupError(f"{MANIFEST}: not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{MANIFEST}: not a {FORMAT} manifest")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in files.items()
    ):
        raise BackupError(f"{MANIFEST}: files must map names to their hashes")
    for rel in files:
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or not parts or rel == MANIFEST:
            raise BackupError(f"{MANIFEST}: file name {rel[:80]!r} is not inside the backup")
    for name in ("country", "node_id", "created_at"):
        if not isinstance(manifest.get(name), str):
            raise BackupError(f"{MANIFEST}: {name} is missing")
    return manifest


def _log_json(state: LogState) -> dict[str, object]:
    cp = state.checkpoint
    return {
        "size": state.size,
        "root_hash": state.root.hex(),
        "checkpoint": None if cp is None else json.loads(envelope_to_json(cp.envelope)),
    }


def _summary(path: Path, manifest: Mapping[str, Any], state: LogState) -> Summary:
    files = manifest["files"]
    return Summary(
        path=path,
        country=str(manifest["country"]),
        node_id=str(manifest["node_id"]),
        created_at=str(manifest["created_at"]),
        log=state,
        files=len(files),
        bytes=sum(int(entry.get("size", 0)) for entry in files.values()),
    )


__all__ = [
    "FORMAT",
    "MANIFEST",
    "RESTORE_MARKER",
    "BackupError",
    "LogState",
    "PartnerView",
    "Summary",
    "ask_partners",
    "check_database",
    "check_partners",
    "clear_restore_marker",
    "create_backup",
    "restore_backup",
    "restore_pending",
    "verify_backup",
]
