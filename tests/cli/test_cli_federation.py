"""The federation commands against real node processes: peer add with a
link, peer link, status (human and --json), and verify of a foreign
credential checked with the partner's pinned keys."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from clikit import credfed, one_line_error
from fednet import build, eventually, register_issuer

from credfed.bootstrap import init_node

pytestmark = pytest.mark.slow


def _export(data_dir: Path, out: Path) -> str:
    res = credfed("peer", "export", "--data-dir", str(data_dir), "--out", str(out), "--json")
    assert res.code == 0, res.err
    info = res.json()
    assert isinstance(info, dict)
    return str(info["fingerprint"])


async def test_link_errors_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    de = (await init_node(tmp_path / "de", "DE", "127.0.0.1:7410")).config.data_dir
    fr = (await init_node(tmp_path / "fr", "FR", "127.0.0.1:7411")).config.data_dir
    fp = _export(fr, tmp_path / "fr.json")
    token_file = tmp_path / "token"
    token_file.write_text("not-a-token\n")
    d = ["--data-dir", str(de)]

    res = credfed("peer", "link", "FR", "--token-file", str(token_file), *d)
    assert "no partner of country FR" in one_line_error(res)
    # A bad token refuses the whole add: nothing pinned, nothing linked.
    res = credfed(
        "peer", "add", str(tmp_path / "fr.json"), "--fingerprint", fp,
        "--token-file", str(token_file), *d,
    )  # fmt: skip
    assert "token" in one_line_error(res)
    assert not (de / "peers" / "FR.link.json").exists()

    assert credfed("peer", "add", str(tmp_path / "fr.json"), "--fingerprint", fp, *d).code == 0
    listed = credfed("peer", "list", "--json", *d).json()
    assert isinstance(listed, list) and listed[0]["link"] is None
    res = credfed("peer", "link", "FR", "--token-file", str(token_file), *d)
    assert "token" in one_line_error(res)
    token_file.write_text("cf_" + "x" * 43 + "\n")
    res = credfed(
        "peer", "link", "FR", "--token-file", str(token_file), "--endpoint", "nohostport", *d
    )
    assert "endpoint" in one_line_error(res)
    res = credfed("peer", "link", "FR", "--token-file", str(token_file), *d)
    assert res.code == 0, res.err
    assert "127.0.0.1:7411" in res.out  # the descriptor's endpoint by default
    link_file = de / "peers" / "FR.link.json"
    assert link_file.stat().st_mode & 0o777 == 0o600  # it holds a bearer token
    listed = credfed("peer", "list", "--json", *d).json()
    assert isinstance(listed, list) and listed[0]["link"] == "127.0.0.1:7411"
    assert "x" * 43 not in credfed("peer", "list", *d).out  # never printed

    # status works without a running node and reports no data yet; the one
    # alarm is that the node is down (not a STALE line per partner).
    status = credfed("status", "--json", *d).json()
    assert isinstance(status, dict)
    assert status["serving"] is False
    assert status["alarms"] == [
        "DOWN: the node is not serving (it has not served from this data directory)"
    ]
    assert [p["country"] for p in status["peers"]] == ["FR"]
    (fr_row,) = status["origins"]
    assert fr_row["origin"] == "FR" and fr_row["replica_size"] == 0
    assert fr_row["stale"] is True  # nothing received yet is not fresh

    assert credfed("peer", "remove", "FR", *d).code == 0
    assert not link_file.exists()  # removing a partner removes its token too


async def test_status_and_foreign_verify_over_a_running_pair(tmp_path: Path) -> None:
    nodes = await build(tmp_path, ["DE", "FR"], [("FR", "DE"), ("DE", "FR")])
    de, fr = nodes["DE"], nodes["FR"]
    try:
        for n in nodes.values():
            n.start()
        await register_issuer(de)
        cid = await de.issue()
        await eventually(lambda: fr.verify(cid))
        # The CLI checks DE's signature itself with the descriptor FR pinned
        # (found through --data-dir), not with FR's own keys.
        res = credfed(
            "verify", cid, "--birth-date", "1994-03-17", "--data-dir", str(fr.data_dir),
            "--token", fr.tokens["verifier"],
        )  # fmt: skip
        assert res.code == 0, res.err
        assert "signatures checked" in res.out
        assert "origin signature checked by the node" in res.out
        status = credfed("status", "--data-dir", str(fr.data_dir))
        assert status.code == 0, status.err
        assert "DE" in status.out and "alarms: none" in status.out
        data = credfed("status", "--json", "--data-dir", str(fr.data_dir)).json()
        assert isinstance(data, dict)
        (de_row,) = data["origins"]
        assert de_row["replica_size"] >= 1 and de_row["stale"] is False
        assert de_row["link"] == de.target
        assert "Novák" not in status.out and "1994" not in status.out  # no personal data
    finally:
        for n in nodes.values():
            await n.stop()
