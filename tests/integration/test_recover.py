"""``credfed recover``: a restored node takes back from its partner the
entries of its own log signed after the backup (real processes, mutual TLS).

* The acceptance test: a revocation made after the backup survives the
  restore (DE says REVOKED), a credential issued after it is reported lost,
  and DE then continues its log with FR following, no fork alarm.
* Refusals: recovering under a serving node, and a partner's checkpoint that
  does not extend the local log (DE served a diverging log after a restore):
  a fork, refused with nothing written.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import grpc
import pytest
from clikit import acredfed as credfed
from fednet import STATUS, FedNode, eventually
from test_backup import (
    _fr_holds,
    _fr_view_of_de,
    _pair,
    _restored_node,
    _serve_unverified,
    _stop,
    checkpoints_of,
    fork_alarms,
    leaves_of,
    replica_of_de,
    tree_root,
)

from credfed import backup
from credfed import config as cfg

pytestmark = pytest.mark.slow


async def _backup(de: FedNode, out: Path) -> int:
    code, out_text, err = await credfed(
        "backup", "--data-dir", str(de.data_dir), "--out", str(out), "--json"
    )
    assert code == 0, err
    return int(json.loads(out_text)["log_size"])


async def _lose_and_restore(de: FedNode, backup_dir: Path, new_dir: Path) -> None:
    """The machine is lost (SIGKILL, data directory gone); restore the backup."""
    await de.close_channel()
    await asyncio.to_thread(de.proc.kill)
    shutil.rmtree(de.data_dir)
    code, _, err = await credfed("restore", str(backup_dir), "--data-dir", str(new_dir))
    assert code == 0, err


async def test_recover_keeps_a_revocation_made_after_the_backup(tmp_path: Path) -> None:
    de, fr = await _pair(tmp_path)
    restored: FedNode | None = None
    try:
        a = await de.issue(family_name="Alpha")
        b = await de.issue(family_name="Beta")
        backup_size = await _backup(de, tmp_path / "backup")
        assert backup_size == 2
        # After the backup: A revoked, C issued; FR replicates both.
        await de.revoke(a)
        c = await de.issue(family_name="Gamma")
        size = await de.log_size()
        assert size == 4
        await eventually(lambda: _fr_holds(fr, size))

        new_dir = tmp_path / "DE-restored"
        await _lose_and_restore(de, tmp_path / "backup", new_dir)
        code, _, err = await credfed("serve", "--data-dir", str(new_dir))
        assert code == 1
        assert "restored log is behind partner FR" in err

        code, out, err = await credfed("recover", "--data-dir", str(new_dir), "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["partner"] == "FR"
        assert (report["size_before"], report["size_after"], report["entries"]) == (2, 4, 2)
        assert report["applied"] == {"revoked": 1}
        assert report["lost"] == [c]
        assert report["partners"] == [{"partner": "FR", "size": 4, "problem": None}]
        assert report["restore_pending"] is False
        assert not (new_dir / backup.RESTORE_MARKER).exists()
        # DE's log is now exactly the one FR holds, under FR's checkpoint.
        db = new_dir / cfg.DB_FILE
        assert replica_of_de(fr.data_dir / cfg.DB_FILE) == (size, tree_root(leaves_of(db)))
        assert checkpoints_of(db)[-1] == size
        assert backup.check_database(db, backup._own_keys(new_dir), "DE").size == size

        # Again: nothing left to take back.
        code, out, err = await credfed("recover", "--data-dir", str(new_dir))
        assert code == 0, err
        assert out.splitlines() == [
            "nothing to recover: no linked partner holds more of DE's log than this node (size 4)",
            "the partners hold no more of the log: 'credfed serve' may start",
        ]

        restored = _restored_node(de, new_dir, tmp_path / "DE-restored.log")
        await asyncio.to_thread(restored.start)
        # The key property: the revocation made after the backup holds.
        got = await restored.verify(a)
        assert got.status == STATUS.CREDENTIAL_STATUS_REVOKED
        assert got.status_entry.index == 2
        assert (await restored.verify(b)).status == STATUS.CREDENTIAL_STATUS_ACTIVE
        with pytest.raises(grpc.aio.AioRpcError) as lost:
            await restored.verify(c)
        assert lost.value.code() == grpc.StatusCode.NOT_FOUND

        # DE continues its log; FR follows without a fork alarm.
        d = await restored.issue(family_name="Delta")
        assert await restored.log_size() == size + 1
        await eventually(lambda: _fr_holds(fr, size + 1))
        view = await _fr_view_of_de(fr)
        assert view["forked"] is False
        assert fork_alarms(view) == []
        assert view["replica_size"] == size + 1

        async def fr_says_active() -> bool:
            return (await fr.verify(d)).status == STATUS.CREDENTIAL_STATUS_ACTIVE

        await eventually(fr_says_active)
        assert (await fr.verify(a)).status == STATUS.CREDENTIAL_STATUS_REVOKED
    finally:
        await _stop(fr, de, restored)


async def test_recover_refuses_a_serving_node_and_a_forked_log(tmp_path: Path) -> None:
    de, fr = await _pair(tmp_path)
    restored: FedNode | None = None
    serve: asyncio.subprocess.Process | None = None
    try:
        a = await de.issue()
        await de.issue()
        assert await _backup(de, tmp_path / "backup") == 2
        await eventually(lambda: _fr_holds(fr, 2))

        code, _, err = await credfed("recover", "--data-dir", str(de.data_dir))
        assert code == 1
        assert err.startswith(f"error: the node in {de.data_dir} is serving (run state ")
        assert err.strip().endswith("old): stop it first")

        await de.revoke(a)
        await de.issue()
        await eventually(lambda: _fr_holds(fr, 4))

        # Restored while FR is down, DE is told to serve anyway and signs a
        # third entry that FR never sees: its log now differs from FR's copy.
        new_dir = tmp_path / "DE-restored"
        await _lose_and_restore(de, tmp_path / "backup", new_dir)
        await fr.stop()
        restored = _restored_node(de, new_dir, tmp_path / "DE-restored.log")
        port_file = restored.proc.port_file
        serve = await _serve_unverified(new_dir, port_file)
        await eventually(lambda: asyncio.sleep(0, port_file.exists()), timeout=30)
        await restored.issue(family_name="Diverging")
        await restored.close_channel()
        serve.terminate()
        assert await serve.wait() == 0
        serve = None

        fr.start()
        db = new_dir / cfg.DB_FILE
        leaves, signed = leaves_of(db), checkpoints_of(db)
        assert len(leaves) == 3
        code, out, err = await credfed("recover", "--data-dir", str(new_dir))
        assert code == 1, out
        assert err.strip() == (
            "error: partner FR holds DE's log at size 4, signed by this node, and it does not "
            "extend this node's log of size 3: the log has forked (this node signed entries "
            "the partners never saw); refused, nothing written"
        )
        assert leaves_of(db) == leaves
        assert checkpoints_of(db) == signed
        view = await _fr_view_of_de(fr)
        assert view["checkpoint_size"] == 4
        assert fork_alarms(view) == []
    finally:
        if serve is not None:
            serve.terminate()
            await serve.wait()
        await _stop(fr, de, restored)
