"""`credfed status` on a live three-country federation, as an operator
reads it: peers, per-origin replica size, lag and last contact, and the
alarms for a locked store, a partner gone quiet and a node that stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fednet import FAST, build, cli_status, eventually, register_issuer, start_all, stop_all

from credfed import config as cfg

pytestmark = pytest.mark.slow

#: DE and FR are linked, FR and PL are linked: DE hears of PL through FR.
LINKS = [("DE", "FR"), ("FR", "DE"), ("FR", "PL"), ("PL", "FR")]
#: DE calls FR's data stale after 4 s without a newer checkpoint.
SETTINGS = dataclasses.replace(FAST, max_staleness_by_origin={"FR": 4.0})


def _row(report: dict[str, Any], origin: str) -> dict[str, Any]:
    (row,) = [o for o in report["origins"] if o["origin"] == origin]
    assert isinstance(row, dict)
    return row


async def test_status_reports_peers_replicas_contact_and_alarms(tmp_path: Path) -> None:
    nodes = await build(tmp_path, ["DE", "FR", "PL"], LINKS, settings=SETTINGS)
    de, fr, pl = nodes["DE"], nodes["FR"], nodes["PL"]
    await start_all(de, fr, pl)
    try:
        for node in (de, fr, pl):
            await register_issuer(node)
        await fr.issue()
        await fr.issue()
        await pl.issue()

        async def caught_up() -> bool:
            report = await cli_status(de)
            fr_row, pl_row = _row(report, "FR"), _row(report, "PL")
            # Contacts reach status through the run state, every 2 s.
            return (fr_row["replica_size"], pl_row["replica_size"]) == (2, 1) and (
                fr_row["last_contact_via"] == pl_row["last_contact_via"] == "FR"
            )

        await eventually(caught_up, timeout=20)
        report = await cli_status(de)
        assert report["serving"] is True and report["store_writable"] is True
        assert report["alarms"] == []
        assert report["log_size"] == await de.log_size()
        # DE's log is empty and quiet: its heartbeats (kept in memory, not
        # stored) still count, so the own checkpoint is young.
        assert 0 <= report["checkpoint_age_seconds"] < 5
        peers = {p["country"]: p for p in report["peers"]}
        assert set(peers) == {"FR", "PL"}
        assert peers["FR"]["link"] == fr.target and peers["PL"]["link"] is None
        fr_row, pl_row = _row(report, "FR"), _row(report, "PL")
        assert fr_row["checkpoint_size"] == await fr.log_size() == 2
        assert fr_row["entries_behind"] == 0 and fr_row["stale"] is False
        assert fr_row["last_contact_via"] == "FR" and pl_row["last_contact_via"] == "FR"
        for row in (fr_row, pl_row):
            assert 0 <= row["last_contact_age_seconds"] < 5
            assert 0 <= row["checkpoint_age_seconds"] < 5
        health = report["health"]
        assert health["node"] == {"serving": True, "reason": ""}
        assert health["credfed.v1.FederationService"]["serving"] is True

        text = subprocess.run(
            [sys.executable, "-m", "credfed.cli", "status", "--data-dir", str(de.data_dir)],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        assert text.splitlines()[0].startswith(f"node {cfg.load(de.data_dir, {}).node_id} (DE):")
        assert ": serving, log size" in text and "store writable" in text
        assert any(line.split()[:3] == ["FR", "2", "2"] for line in text.splitlines())
        assert text.rstrip().endswith("alarms: none")

        # A write lock held by someone else: the store alarm (status waits 1 s).
        lock = sqlite3.connect(de.data_dir / cfg.DB_FILE, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            report = await cli_status(de)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert report["store_writable"] is False
        assert "STORE: the database cannot be written: database is locked" in report["alarms"]
        assert (await cli_status(de))["store_writable"] is True

        # FR goes quiet: its data ages past DE's 4 s limit for it.
        await fr.stop()

        async def fr_stale() -> bool:
            return any(a.startswith("STALE: FR: ") for a in (await cli_status(de))["alarms"])

        await eventually(fr_stale, timeout=20)
        report = await cli_status(de)
        fr_row = _row(report, "FR")
        assert fr_row["stale"] is True and fr_row["last_contact_age_seconds"] >= 4
        assert fr_row["replica_size"] == 2  # what was proven stays
        (alarm,) = [a for a in report["alarms"] if a.startswith("STALE: FR")]
        assert "(max 4 s), its credentials verify as UNKNOWN" in alarm

        await de.stop()
        await asyncio.sleep(0.1)
        report = await cli_status(de)
        assert report["serving"] is False and report["health"] is None
        assert [a for a in report["alarms"] if a.startswith("DOWN")] == [
            a for a in report["alarms"] if a.startswith("DOWN: the node is not serving (it stopped")
        ]
        assert len([a for a in report["alarms"] if a.startswith("DOWN")]) == 1
        # A stopped node's replicas all age: DOWN says why, no STALE lines.
        assert not any(a.startswith("STALE") for a in report["alarms"])
    finally:
        await stop_all(de, fr, pl)
