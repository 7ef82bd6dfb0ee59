"""Backups of serving nodes and restored nodes in a real federation.

* ``credfed backup`` while the node serves and a client keeps writing: the
  copy is consistent (its leaves hash to its own signed checkpoint) and is
  exactly a prefix of the live log.
* The acceptance test: a node is backed up, killed, its data directory
  deleted and restored; it continues its log and its partner accepts the
  new checkpoints (no fork alarm), verifying credentials from before and
  after the restore.
* The guard: a backup older than what the partner replicated is refused at
  ``credfed serve`` before anything is signed, so the partner sees no fork.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from clikit import COMMAND
from clikit import acredfed as credfed
from fednet import (
    STATUS,
    FedNode,
    build,
    cli_status,
    eventually,
    register_issuer,
)
from nodeproc import NodeProcess

from credfed import backup
from credfed import config as cfg
from credfed.crypto.keys import SigningKey
from credfed.models import Envelope
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import verify_checkpoint

pytestmark = pytest.mark.slow


def leaves_of(db: Path) -> list[bytes]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [bytes(r[0]) for r in conn.execute("SELECT leaf FROM log_leaves ORDER BY idx")]
    finally:
        conn.close()


def checkpoints_of(db: Path) -> list[int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [int(r[0]) for r in conn.execute("SELECT tree_size FROM checkpoints ORDER BY 1")]
    finally:
        conn.close()


def replica_of_de(db: Path) -> tuple[int, bytes]:
    """Size and root of the checkpoint a partner holds of DE's log."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT tree_size, root_hash FROM replica_checkpoints WHERE origin = 'DE'"
        ).fetchone()
    finally:
        conn.close()
    return int(row[0]), bytes(row[1])


def latest_signed(db: Path, key: SigningKey) -> tuple[int, bytes]:
    """The latest checkpoint in ``db``, its signature checked with ``key``."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT payload, payload_type, key_id, signature FROM checkpoints "
            "ORDER BY tree_size DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    envelope = Envelope(bytes(row[0]), str(row[1]), str(row[2]), bytes(row[3]))
    cp = verify_checkpoint(envelope, {key.key_id: key.verifying_key()}, "DE").checkpoint
    return cp.tree_size, cp.root_hash


def tree_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 root, straight from the definition (independent of the store)."""
    if not leaves:
        return merkle.EMPTY_ROOT
    level = [merkle.leaf_hash(x) for x in leaves]

    def mth(items: list[bytes]) -> bytes:
        if len(items) == 1:
            return items[0]
        k = 1 << ((len(items) - 1).bit_length() - 1)
        return merkle.node_hash(mth(items[:k]), mth(items[k:]))

    return mth(level)


# -- online ---------------------------------------------------------------------------


async def test_backup_while_the_node_serves_and_a_client_writes(tmp_path: Path) -> None:
    de = (await build(tmp_path, ["DE"], []))["DE"]
    key = SigningKey.load(cfg.load(de.data_dir).key_path)
    de.start()
    acked: list[int] = []
    stop = asyncio.Event()

    async def writer() -> None:
        """Issue, and revoke every other credential, until told to stop."""
        n = 0
        while not stop.is_set():
            cid = await de.issue(family_name=f"Writer{n}")
            if n % 2:
                acked.append(await de.revoke(cid))
            n += 1

    try:
        await register_issuer(de)
        task = asyncio.ensure_future(writer())
        await eventually(lambda: asyncio.sleep(0, len(acked) >= 10), timeout=30)
        sizes_during = []
        for n in range(3):
            before = await de.log_size()
            code, out, err = await credfed(
                "backup", "--data-dir", str(de.data_dir), "--out", str(tmp_path / f"b{n}"), "--json"
            )
            after = await de.log_size()
            assert code == 0, err
            summary = json.loads(out)
            assert before <= summary["log_size"] <= after
            sizes_during.append((before, summary["log_size"], after))
        stop.set()
        await task
    finally:
        stop.set()
        await de.stop()
    # The writes really ran during the backups (else this test proves nothing).
    assert any(before < after for before, _, after in sizes_during), sizes_during
    live = leaves_of(de.data_dir / cfg.DB_FILE)
    assert len(live) >= max(acked)
    for n, (_, size, _) in enumerate(sizes_during):
        copy = tmp_path / f"b{n}"
        copied = leaves_of(copy / cfg.DB_FILE)
        # Consistent: the copy's leaves hash to its own signed checkpoint...
        assert latest_signed(copy / cfg.DB_FILE, key) == (size, tree_root(copied))
        # ...and are exactly a prefix of the live log.
        assert len(copied) == size
        assert copied == live[:size]
        assert backup.verify_backup(copy).log.size == size


# -- a federation --------------------------------------------------------------------


async def _pair(root: Path) -> tuple[FedNode, FedNode]:
    """DE and FR, serving over mutual TLS, each replicating the other."""
    nodes = await build(root, ["DE", "FR"], [("DE", "FR"), ("FR", "DE")], tls=True)
    for node in nodes.values():
        node.start()
    for node in nodes.values():
        await register_issuer(node)
    return nodes["DE"], nodes["FR"]


async def _stop(*nodes: FedNode | None) -> None:
    """Close the channels and stop the processes of the nodes a test got to."""
    for node in nodes:
        if node is not None:
            await node.close_channel()
            await asyncio.to_thread(node.proc.stop)


async def _serve_unverified(data_dir: Path, port_file: Path) -> asyncio.subprocess.Process:
    """``credfed serve --allow-unverified-restore``: the operator vouches for a
    restored node that cannot ask its partners."""
    port_file.unlink(missing_ok=True)
    return await asyncio.create_subprocess_exec(
        *COMMAND,
        "serve",
        "--data-dir",
        str(data_dir),
        "--port-file",
        str(port_file),
        "--allow-unverified-restore",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _fr_view_of_de(fr: FedNode) -> dict[str, Any]:
    report = await cli_status(fr)
    (de,) = [o for o in report["origins"] if o["origin"] == "DE"]
    return {"alarms": report["alarms"], **de}


def fork_alarms(view: dict[str, Any]) -> list[str]:
    return [a for a in view["alarms"] if a.startswith("FORK")]


async def _fr_holds(fr: FedNode, size: int) -> bool:
    view = await _fr_view_of_de(fr)
    return bool(view["checkpoint_size"] == size)


def _restored_node(de: FedNode, data_dir: Path, log: Path) -> FedNode:
    config = cfg.load(data_dir)
    proc = NodeProcess(data_dir, log, listen=config.listen)
    return dataclasses.replace(de, data_dir=data_dir, proc=proc, _channel=None)


async def test_a_restored_node_continues_its_log_and_its_partner_accepts_it(
    tmp_path: Path,
) -> None:
    de, fr = await _pair(tmp_path)
    restored: FedNode | None = None
    try:
        before = [await de.issue(family_name=f"Before{n}") for n in range(3)]
        await de.revoke(before[0])
        size = await de.log_size()
        await eventually(lambda: _fr_holds(fr, size))
        # Writes have stopped; the backup is taken while DE serves.
        code, out, err = await credfed(
            "backup", "--data-dir", str(de.data_dir), "--out", str(tmp_path / "backup"), "--json"
        )
        assert code == 0, err
        assert json.loads(out)["log_size"] == size

        # The machine is lost.
        await de.close_channel()
        await asyncio.to_thread(de.proc.kill)
        shutil.rmtree(de.data_dir)

        new_dir = tmp_path / "DE-restored"
        code, out, err = await credfed(
            "restore", str(tmp_path / "backup"), "--data-dir", str(new_dir), "--json"
        )
        assert code == 0, err
        restored = _restored_node(de, new_dir, tmp_path / "DE-restored.log")
        await asyncio.to_thread(restored.start)
        assert not (new_dir / backup.RESTORE_MARKER).exists()  # FR agreed: size == size

        # DE continues its log; FR follows it to the new size.
        after = [await restored.issue(family_name=f"After{n}") for n in range(2)]
        await restored.revoke(after[1])
        new_size = await restored.log_size()
        assert new_size == size + 3
        await eventually(lambda: _fr_holds(fr, new_size))
        view = await _fr_view_of_de(fr)
        assert view["forked"] is False
        assert fork_alarms(view) == []
        assert view["replica_size"] == new_size
        # FR's copy of DE's log is the restored node's log.
        assert replica_of_de(fr.data_dir / cfg.DB_FILE) == (
            new_size,
            tree_root(leaves_of(new_dir / cfg.DB_FILE)),
        )

        # FR verifies credentials from before and after the restore.
        async def status_at_fr(cid: str, expected: int) -> bool:
            return (await fr.verify(cid)).status == expected

        await eventually(lambda: status_at_fr(after[0], STATUS.CREDENTIAL_STATUS_ACTIVE))
        await eventually(lambda: status_at_fr(after[1], STATUS.CREDENTIAL_STATUS_REVOKED))
        await eventually(lambda: status_at_fr(before[1], STATUS.CREDENTIAL_STATUS_ACTIVE))
        await eventually(lambda: status_at_fr(before[0], STATUS.CREDENTIAL_STATUS_REVOKED))
        result = await fr.verify(after[0])
        assert result.provenance.origin == "DE"
        assert result.provenance.signature_checked
        assert fork_alarms(await _fr_view_of_de(fr)) == []
    finally:
        await _stop(fr, de, restored)


async def test_a_restored_node_behind_its_partner_refuses_to_start(tmp_path: Path) -> None:
    de, fr = await _pair(tmp_path)
    try:
        await de.issue()
        await de.issue()
        code, out, err = await credfed(
            "backup", "--data-dir", str(de.data_dir), "--out", str(tmp_path / "old"), "--json"
        )
        assert code == 0, err
        old_size = json.loads(out)["log_size"]
        # More changes after the backup, replicated by FR.
        await de.issue()
        await de.revoke(await de.issue())
        size = await de.log_size()
        assert size == old_size + 3
        await eventually(lambda: _fr_holds(fr, size))

        await de.close_channel()
        await asyncio.to_thread(de.proc.kill)
        new_dir = tmp_path / "DE-old"
        code, _, err = await credfed("restore", str(tmp_path / "old"), "--data-dir", str(new_dir))
        assert code == 0, err
        signed_before = checkpoints_of(new_dir / cfg.DB_FILE)

        code, out, err = await credfed("serve", "--data-dir", str(new_dir), timeout=60)
        assert code == 1
        assert err.strip() == (
            f"error: restored log is behind partner FR: FR holds DE's log at size {size}, "
            f"this node has {old_size}; signing now would fork the log. Run 'credfed "
            "recover' to take the missing entries from the partners, or restore a newer "
            "backup (taken after that size)"
        )
        # Nothing was signed, the marker stays, FR raised no alarm.
        assert checkpoints_of(new_dir / cfg.DB_FILE) == signed_before
        assert (new_dir / backup.RESTORE_MARKER).exists()
        view = await _fr_view_of_de(fr)
        assert view["forked"] is False
        assert fork_alarms(view) == []
        assert view["checkpoint_size"] == size
    finally:
        await _stop(fr, de)


async def test_a_restored_node_that_cannot_ask_its_partner_waits_unless_told(
    tmp_path: Path,
) -> None:
    de, fr = await _pair(tmp_path)
    restored: FedNode | None = None
    try:
        await de.issue()
        code, _, err = await credfed(
            "backup", "--data-dir", str(de.data_dir), "--out", str(tmp_path / "b")
        )
        assert code == 0, err
        await de.stop()
        await fr.stop()
        new_dir = tmp_path / "DE-b"
        assert (await credfed("restore", str(tmp_path / "b"), "--data-dir", str(new_dir)))[0] == 0

        code, _, err = await credfed("serve", "--data-dir", str(new_dir))
        assert code == 1
        assert err.strip().startswith("error: restored node cannot check partner FR (unreachable")
        assert err.strip().endswith(
            "pass --allow-unverified-restore if you are sure no partner holds more of this log"
        )
        assert (new_dir / backup.RESTORE_MARKER).exists()

        # The operator vouches for it: the node starts and clears the marker.
        restored = _restored_node(de, new_dir, tmp_path / "DE-b.log")
        proc = restored.proc
        serve = await _serve_unverified(new_dir, proc.port_file)
        try:
            await eventually(lambda: asyncio.sleep(0, proc.port_file.exists()), timeout=30)
            assert not (new_dir / backup.RESTORE_MARKER).exists()
            assert await restored.log_size() == 1
        finally:
            serve.terminate()
            await serve.wait()
    finally:
        await _stop(fr, de, restored)
