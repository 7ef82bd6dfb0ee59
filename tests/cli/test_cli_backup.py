"""``credfed backup`` and ``credfed restore`` of a stopped node: the round
trip gives the same log and answers, and a damaged backup, an occupied
target or an existing --out are refused with one line naming the problem."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clikit import credfed
from fednet import FedNode, build, register_issuer
from nodeproc import NodeProcess

pytestmark = pytest.mark.slow


@dataclass
class Stopped:
    node: FedNode
    ids: list[str]
    checkpoint: dict[str, Any]


@pytest.fixture
async def stopped(tmp_path: Path) -> Stopped:
    """A DE node that issued three credentials and revoked one, then stopped."""
    de = (await build(tmp_path, ["DE"], []))["DE"]
    de.start()
    try:
        await register_issuer(de)
        ids = [await de.issue(family_name=f"Holder{n}") for n in range(3)]
        await de.revoke(ids[0])
    finally:
        await de.stop()
    checkpoint = _checkpoint_of(de.data_dir)
    return Stopped(de, ids, checkpoint)


def _checkpoint_of(data_dir: Path) -> dict[str, Any]:
    """The node's latest checkpoint as `credfed log checkpoint` prints it
    (the node is started for the call)."""
    proc = NodeProcess(data_dir, data_dir.parent / f"{data_dir.name}-cp.log")
    proc.listen = _listen(data_dir)
    proc.start()
    try:
        got = credfed("log", "checkpoint", "--data-dir", str(data_dir), "--json")
        assert got.code == 0, got.err
        return dict(got.json())
    finally:
        proc.stop()


def _listen(data_dir: Path) -> str:
    from credfed import config as cfg

    return cfg.load(data_dir).listen


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


async def test_round_trip_of_a_stopped_node(stopped: Stopped, tmp_path: Path) -> None:
    out = tmp_path / "backup"
    made = credfed("backup", "--data-dir", str(stopped.node.data_dir), "--out", str(out), "--json")
    assert made.code == 0, made.err
    summary = made.json()
    assert summary["log_size"] == 4  # three issued, one revoked
    assert int(stopped.checkpoint["tree_size"]) == 4
    assert summary["root_hash"] == base64.b64decode(stopped.checkpoint["root_hash"]).hex()
    assert summary["integrity"] == "ok"
    # Secrets: the backup is private, and nothing half-written stays next to it.
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.rglob("*") if p.is_file())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["country"] == "DE"
    assert manifest["log"]["size"] == 4
    assert manifest["log"]["checkpoint"] is not None
    for rel, entry in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == entry["sha256"]
    assert {"credfed.db", "credfed.toml", "descriptor.json", "admin.token"} <= set(
        manifest["files"]
    )
    assert any(rel.startswith("keys/") and rel.endswith(".pem") for rel in manifest["files"])

    restored = tmp_path / "restored"
    done = credfed("restore", str(out), "--data-dir", str(restored), "--json")
    assert done.code == 0, done.err
    assert done.json()["log_size"] == 4
    assert (restored / "restored.json").exists()
    assert stat.S_IMODE(restored.stat().st_mode) == 0o700
    for key in (restored / "keys").glob("*.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((restored / "admin.token").stat().st_mode) == 0o600
    assert stat.S_IMODE((restored / "credfed.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((restored / "keys").stat().st_mode) == 0o700

    # The restored node (no partners: nothing to compare with) serves the same log.
    after = _checkpoint_of(restored)
    assert not (restored / "restored.json").exists()
    for field in ("origin", "tree_size", "root_hash"):
        assert after[field] == stopped.checkpoint[field]
    proc = NodeProcess(restored, tmp_path / "restored.log", listen=_listen(restored))
    proc.start()
    try:
        proof = credfed("log", "proof", "--old-size", "1", "--data-dir", str(restored), "--json")
        assert proof.code == 0, proof.err
        assert proof.json()["new_size"] == 4
        revoked = credfed(
            "verify", stopped.ids[0], "--birth-date", "1994-03-17", "--data-dir", str(restored)
        )
        valid = credfed(
            "verify", stopped.ids[1], "--birth-date", "1994-03-17", "--data-dir", str(restored)
        )
        assert revoked.code == 0, revoked.err
        assert valid.code == 0, valid.err
        assert "REVOKED" in revoked.out.upper()
        assert "REVOKED" not in valid.out.upper()
    finally:
        proc.stop()

    # Both steps are on the record: the backup in the node's trail, the
    # restore in the restored trail (which continues the backup's chain).
    def actions(data_dir: Path) -> list[str]:
        exported = credfed("audit", "export", "--data-dir", str(data_dir))
        assert exported.code == 0, exported.err
        return [json.loads(line)["action"] for line in exported.out.splitlines()]

    assert actions(stopped.node.data_dir)[-1] == "backup"
    assert "restore" in actions(restored) and "backup" not in actions(restored)
    assert credfed("audit", "verify", "--data-dir", str(restored)).code == 0


async def _backup(stopped: Stopped, out: Path) -> None:
    made = credfed("backup", "--data-dir", str(stopped.node.data_dir), "--out", str(out))
    assert made.code == 0, made.err


@pytest.mark.parametrize("target", ["credfed.db", "key"])
async def test_a_damaged_backup_is_refused_naming_the_file(
    stopped: Stopped, tmp_path: Path, target: str
) -> None:
    out = tmp_path / "backup"
    await _backup(stopped, out)
    path = out / "credfed.db" if target == "credfed.db" else next((out / "keys").glob("*.pem"))
    _flip_byte(path)
    restored = tmp_path / "restored"
    got = credfed("restore", str(out), "--data-dir", str(restored))
    assert got.code == 1
    rel = path.relative_to(out).as_posix()
    assert got.err.strip().splitlines() == [
        f"error: {rel}: damaged (its sha256 differs from the manifest)"
    ]
    assert not restored.exists()
    assert list(tmp_path.glob(".restored.*")) == []


async def test_a_log_that_does_not_match_its_checkpoint_is_refused(
    stopped: Stopped, tmp_path: Path
) -> None:
    """Even with the manifest rewritten to match, a changed status entry
    does not hash to the signed checkpoint."""
    out = tmp_path / "backup"
    await _backup(stopped, out)
    db = out / "credfed.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER log_leaves_no_update")
    leaf = conn.execute("SELECT leaf FROM log_leaves WHERE idx = 3").fetchone()[0]
    conn.execute(
        "UPDATE log_leaves SET leaf = ? WHERE idx = 3", (leaf.replace(b"fraud", b"fraux"),)
    )
    conn.close()
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["credfed.db"]["sha256"] = hashlib.sha256(db.read_bytes()).hexdigest()
    manifest["files"]["credfed.db"]["size"] = db.stat().st_size
    (out / "manifest.json").write_text(json.dumps(manifest))
    got = credfed("restore", str(out), "--data-dir", str(tmp_path / "restored"))
    assert got.code == 1
    assert got.err.strip() == (
        "error: credfed.db: the log's entries do not hash to its checkpoint's root"
    )
    assert not (tmp_path / "restored").exists()


async def test_a_file_added_to_the_backup_is_refused(stopped: Stopped, tmp_path: Path) -> None:
    out = tmp_path / "backup"
    await _backup(stopped, out)
    (out / "keys" / "extra.pem").write_text("not ours\n")
    got = credfed("restore", str(out), "--data-dir", str(tmp_path / "restored"))
    assert got.code == 1
    assert got.err.strip() == "error: keys/extra.pem: not listed in the manifest"


async def test_restore_into_a_non_empty_directory_is_refused(
    stopped: Stopped, tmp_path: Path
) -> None:
    out = tmp_path / "backup"
    await _backup(stopped, out)
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "notes.txt").write_text("keep me\n")
    got = credfed("restore", str(out), "--data-dir", str(target))
    assert got.code == 1
    assert got.err.strip() == f"error: --data-dir {target} is not empty: restore into a new one"
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    # An empty directory is fine (e.g. a mount point prepared by the operator).
    empty = tmp_path / "empty"
    empty.mkdir()
    assert credfed("restore", str(out), "--data-dir", str(empty)).code == 0
    assert (empty / "credfed.toml").exists()


async def test_an_existing_out_is_refused(stopped: Stopped, tmp_path: Path) -> None:
    out = tmp_path / "backup"
    out.mkdir()
    got = credfed("backup", "--data-dir", str(stopped.node.data_dir), "--out", str(out))
    assert got.code == 1
    assert got.err.strip() == f"error: --out {out} already exists: backups are never overwritten"
    assert list(out.iterdir()) == []
    missing_parent = tmp_path / "nowhere" / "backup"
    got = credfed("backup", "--data-dir", str(stopped.node.data_dir), "--out", str(missing_parent))
    assert got.code == 1
    assert "--out" in got.err and "does not exist" in got.err
