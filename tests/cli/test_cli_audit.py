"""credfed audit verify / export and credfed access-log: local commands on a
node's data directory, run as real processes (while the node serves, for
the access log), and the records of the local pairing and key commands."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from clikit import acredfed, credfed
from conftest import RunningNode

from credfed import audit
from credfed.bootstrap import add_client, init_node
from credfed.config import DB_FILE
from credfed.v1 import verification_pb2 as v

pytestmark = pytest.mark.slow  # real processes
EMPLOYER = "Elektro Bauer GmbH"


def _lines(text: str) -> list[audit.AuditRecord]:
    return [audit.record_from_json(json.loads(line)) for line in text.splitlines() if line]


# -- a serving node: the holder's access log ----------------------------------------------


async def test_access_log_lists_a_verification_by_a_named_employer(
    running: RunningNode, tmp_path: Path
) -> None:
    token = await add_client(running.init.config, "verifier", EMPLOYER)
    cid = (await running.issue()).credential.credential_id
    other = (await running.issue(given_names="Eva")).credential.credential_id
    for credential_id in (cid, other):
        await running.verification.Verify(
            v.VerifyRequest(credential_id=credential_id, birth_date="1994-03-17"),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
    await running.node.audit.flush()
    d = ["--data-dir", str(running.init.config.data_dir)]

    res = await acredfed("access-log", cid.lower(), "--json", *d)  # typed in lower case
    assert res.code == 0, res.err
    log = json.loads(res.out)
    assert log["credential_id"] == cid
    rows = log["records"]
    assert [
        (x["action"], x["organisation"], x["role"], x["country"], x["outcome"]) for x in rows
    ] == [
        ("IssueCredential", "node administrator", "admin", "DE", "OK"),
        ("Verify", EMPLOYER, "verifier", "DE", "OK"),
    ]
    assert rows[1]["at"].endswith("Z")
    human = await acredfed("access-log", cid, *d)
    assert human.code == 0, human.err
    assert EMPLOYER in human.out
    assert "Verify" in human.out
    assert "(verifier, DE)" in human.out
    assert other not in human.out
    # Nobody checked this one.
    unknown = "DE-2222-2222-222M-F"
    res = await acredfed("access-log", unknown, *d)
    assert res.code == 0, res.err
    assert "0 record(s)" in res.out
    bad = await acredfed("access-log", "Jana Novák", *d)
    assert bad.code == 2

    # The whole trail, while the node serves.
    res = await acredfed("audit", "verify", *d)
    assert res.code == 0, res.err
    count = len(await running.node.store.audit_records(0, 10_000))
    assert res.out.splitlines()[0] == f"{count} records, chain intact"
    res = await acredfed("audit", "export", *d)
    assert res.code == 0, res.err
    records = _lines(res.out)
    assert len(records) == count
    assert audit.verify_chain(records) is None
    assert {r.action for r in records} >= {"RegisterIssuer", "IssueCredential", "Verify"}
    out = tmp_path / "audit.jsonl"
    res = await acredfed("audit", "export", "--out", str(out), *d)
    assert res.code == 0, res.err
    assert out.stat().st_mode & 0o777 == 0o600
    for line in out.read_text().splitlines():
        data = json.loads(line)
        assert len(bytes.fromhex(data["hash"])) == len(bytes.fromhex(data["prev_hash"])) == 32
    assert _lines(out.read_text()) == records


# -- local commands write their own records --------------------------------------------------


@pytest.fixture
def node_with_local_records(tmp_path: Path) -> Path:
    """A DE node (not serving) that paired with FR, rotated its key and
    failed to remove a partner it never had."""
    de = asyncio.run(init_node(tmp_path / "de", "DE", "127.0.0.1:0")).config.data_dir
    fr = asyncio.run(init_node(tmp_path / "fr", "FR", "127.0.0.1:0")).config.data_dir
    res = credfed("peer", "export", "--data-dir", str(fr), "--out", str(tmp_path / "fr.json"))
    assert res.code == 0, res.err
    fp = res.out.rsplit("fingerprint ", 1)[1].strip()
    d = ["--data-dir", str(de)]
    assert credfed("peer", "add", str(tmp_path / "fr.json"), "--fingerprint", fp, *d).code == 0
    assert credfed("key", "rotate", *d).code == 0
    res = credfed("peer", "remove", "ZZ", *d)
    assert res.code == 1
    assert len(res.err.strip().splitlines()) == 1  # still one line
    assert credfed("peer", "remove", "fr", *d).code == 0
    return de


def test_local_pairing_and_key_commands_are_recorded(node_with_local_records: Path) -> None:
    res = credfed("audit", "export", "--data-dir", str(node_with_local_records))
    assert res.code == 0, res.err
    records = _lines(res.out)
    got = [(r.action, r.subject, r.outcome) for r in records]
    assert got[0] == ("peer add", ("FR",), "OK")
    assert got[1][0] == "key rotate"
    assert got[1][1][0] != audit.MALFORMED
    assert got[1][2] == "OK"
    assert got[2:] == [("peer remove", ("ZZ",), "NOT_FOUND"), ("peer remove", ("FR",), "OK")]
    assert {(r.client_id, r.role, r.country) for r in records} == {("local", "operator", "DE")}
    assert audit.verify_chain(records) is None


# -- tampering -----------------------------------------------------------------------------------


def _tampered_copy(data_dir: Path, target: Path, *statements: str) -> Path:
    """A copy of the node's directory whose database had its audit triggers
    dropped and ``statements`` run on it (what someone with the file could do)."""
    shutil.copytree(data_dir, target)
    with closing(sqlite3.connect(target / DB_FILE, isolation_level=None)) as raw:
        for trigger in (
            "audit_log_no_update",
            "audit_log_no_delete",
            "audit_subjects_no_delete",
            "audit_log_linear",
        ):
            raw.execute(f"DROP TRIGGER {trigger}")
        for statement in statements:
            raw.execute(statement)
    return target


def test_audit_verify_intact(node_with_local_records: Path) -> None:
    res = credfed("audit", "verify", "--data-dir", str(node_with_local_records))
    assert res.code == 0, res.err
    first, head = res.out.splitlines()
    assert first == "4 records, chain intact"
    assert head.startswith("head ")
    assert len(bytes.fromhex(head.removeprefix("head "))) == 32
    res = credfed("audit", "verify", "--json", "--data-dir", str(node_with_local_records))
    data = json.loads(res.out)
    assert (data["records"], data["intact"], data["broken_seq"]) == (4, True, None)


@pytest.mark.parametrize(
    ("statements", "seq", "needle"),
    [
        (
            ["UPDATE audit_log SET client_name = 'mallory' WHERE seq = 2"],
            2,
            "do not match its hash",
        ),
        (["UPDATE audit_log SET outcome = 'OK' WHERE seq = 3"], 3, "do not match its hash"),
        (["UPDATE audit_log SET at = at + 1 WHERE seq = 1"], 1, "do not match its hash"),
        (["DELETE FROM audit_log WHERE seq = 2"], 3, "record 2 is missing"),
        (
            [
                "UPDATE audit_log SET seq = 99 WHERE seq = 2",
                "UPDATE audit_log SET seq = 2 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = 99",
            ],
            2,
            "prev_hash does not match the hash of record 1",
        ),
    ],
)
def test_audit_verify_names_the_first_broken_record(
    node_with_local_records: Path, tmp_path: Path, statements: list[str], seq: int, needle: str
) -> None:
    copy = _tampered_copy(node_with_local_records, tmp_path / "copy", *statements)
    res = credfed("audit", "verify", "--data-dir", str(copy))
    assert res.code == 1, res.out
    (line,) = res.err.strip().splitlines()
    assert f"record {seq}:" in line
    assert needle in line
    res = credfed("audit", "verify", "--json", "--data-dir", str(copy))
    assert res.code == 1
    data = json.loads(res.out)
    assert (data["intact"], data["broken_seq"]) == (False, seq)
    # The original is untouched.
    assert credfed("audit", "verify", "--data-dir", str(node_with_local_records)).code == 0


def test_audit_verify_sees_a_doctored_subject_index(
    node_with_local_records: Path, tmp_path: Path
) -> None:
    # Hiding a record from a holder's access log by editing only the index.
    copy = _tampered_copy(
        node_with_local_records, tmp_path / "copy", "DELETE FROM audit_subjects WHERE seq = 1"
    )
    res = credfed("audit", "verify", "--data-dir", str(copy))
    assert res.code == 1
    assert "subject index lacks 'FR' of record 1" in res.err


def test_token_and_client_certificate_changes_are_recorded(tmp_path: Path) -> None:
    de = asyncio.run(init_node(tmp_path / "de", "DE", "127.0.0.1:0")).config.data_dir
    d = ["--data-dir", str(de)]
    made = credfed("token", "create", "--role", "verifier", "--name", "Bauer", "--json", *d)
    assert made.code == 0, made.err
    client_id = json.loads(made.out)["client_id"]
    assert credfed("token", "revoke", client_id, *d).code == 0
    assert credfed("token", "revoke", "0123456789abcdef", *d).code == 1
    records = _lines(credfed("audit", "export", *d).out)
    got = [(r.action, r.subject, r.outcome) for r in records]
    assert got == [
        ("token create", (client_id,), "OK"),
        ("token revoke", (client_id,), "OK"),
        ("token revoke", ("0123456789abcdef",), "NOT_FOUND"),
    ]
    assert audit.verify_chain(records) is None
