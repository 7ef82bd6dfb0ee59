"""The audit trail over a real server: who, what, subject and outcome of
every audited call, refused ones included; no holder data in the table;
one linear chain under concurrent calls and a concurrent local command."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from conftest import ISSUER, RunningNode, draft

from credfed import audit
from credfed.bootstrap import add_client, init_node
from credfed.crypto.keys import SigningKey
from credfed.federation.descriptor import fingerprint
from credfed.federation.local import own_descriptor
from credfed.federation.peers import PeerDirectory
from credfed.node import Node
from credfed.rpc import server
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc
from credfed.v1 import recognition_pb2 as rc
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v

EMPLOYER = "Elektro Bauer GmbH"
# Holder data the tests send: none of it may reach the audit table.
PERSONAL = ["Jana", "Novák", "1994-03-17", "Schmidt", "1980-01-01"]


async def _records(rn: RunningNode) -> list[audit.AuditRecord]:
    await rn.node.audit.flush()
    return await rn.node.store.audit_records(0, 100_000)


async def _employer(rn: RunningNode) -> tuple[tuple[str, str], ...]:
    token = await add_client(rn.init.config, "verifier", EMPLOYER)
    return (("authorization", f"Bearer {token}"),)


def _rule(rule_id: str, origin: str = "FR") -> rc.RecognitionRule:
    return rc.RecognitionRule(
        rule_id=rule_id,
        origin=origin,
        eqf_min=4,
        eqf_max=4,
        isco_prefix="7411",
        outcome=rc.RECOGNITION_OUTCOME_FULL,
        local_occupation="Elektroniker/in",
        legal_basis="BQFG § 4",
        valid_from="2025-01-01",
    )


async def test_issue_verify_and_revoke_are_recorded(running: RunningNode) -> None:
    employer = await _employer(running)
    cid = (await running.issue()).credential.credential_id
    await running.verification.Verify(
        v.VerifyRequest(credential_id=cid, birth_date="1994-03-17"), metadata=employer, timeout=10
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.verification.Verify(
            v.VerifyRequest(credential_id=cid, family_name="Schmidt"), metadata=employer, timeout=10
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    await running.registry.RevokeCredential(
        r.RevokeCredentialRequest(credential_id=cid, reason="fraud"),
        metadata=running.md("admin"),
        timeout=10,
    )
    records = await _records(running)
    about = [x for x in records if cid in x.subject]
    assert [(x.action, x.outcome) for x in about] == [
        ("IssueCredential", "OK"),
        ("Verify", "OK"),
        ("Verify", "NOT_FOUND"),
        ("RevokeCredential", "OK"),
    ]
    issue, verify, _, revoke = about
    assert (issue.client_name, issue.role, issue.country) == ("node administrator", "admin", "DE")
    assert (verify.client_name, verify.role, verify.country) == (EMPLOYER, "verifier", "DE")
    assert verify.subject == (cid,)
    assert verify.client_id not in ("", issue.client_id)
    assert revoke.role == "admin"
    assert all(x.at.utcoffset() is not None for x in about)
    assert audit.verify_chain(records) is None


async def test_refused_calls_are_recorded_with_who_tried(running: RunningNode) -> None:
    cid = (await running.issue()).credential.credential_id
    # An issuer may not verify: PERMISSION_DENIED, and the record names it.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.verification.Verify(
            v.VerifyRequest(credential_id=cid, birth_date="1994-03-17"),
            metadata=running.md(f"issuer:{ISSUER}"),
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # An unknown token: UNAUTHENTICATED, nobody known.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.verification.Verify(
            v.VerifyRequest(credential_id=cid, birth_date="1994-03-17"),
            metadata=(("authorization", "Bearer cf_not-a-token"),),
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    records = [x for x in await _records(running) if x.action == "Verify"]
    denied, unknown = records
    assert (denied.outcome, denied.role, denied.client_name) == (
        "PERMISSION_DENIED",
        f"issuer:{ISSUER}",
        f"test issuer:{ISSUER}",
    )
    assert denied.subject == (cid,)
    assert (unknown.outcome, unknown.role, unknown.client_id, unknown.client_name) == (
        "UNAUTHENTICATED",
        "unauthenticated",
        "",
        "",
    )


async def test_rule_changes_are_recorded(running: RunningNode) -> None:
    admin = running.md("admin")
    await running.registry.AddRecognitionRule(
        r.AddRecognitionRuleRequest(rule=_rule("fr-elec")), metadata=admin, timeout=10
    )
    await running.registry.ImportRecognitionRules(
        r.ImportRecognitionRulesRequest(rules=[_rule("pl-elec", "PL")]), metadata=admin, timeout=10
    )
    await running.registry.RemoveRecognitionRule(
        r.RemoveRecognitionRuleRequest(rule_id="fr-elec"), metadata=admin, timeout=10
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await running.registry.AddRecognitionRule(
            r.AddRecognitionRuleRequest(rule=_rule("fr-elec-3")),
            metadata=running.md("verifier"),
            timeout=10,
        )
    got = [
        (x.action, x.subject, x.count, x.outcome, x.role)
        for x in await _records(running)
        if "Recognition" in x.action
    ]
    assert got == [
        ("AddRecognitionRule", ("fr-elec",), 1, "OK", "admin"),
        ("ImportRecognitionRules", ("pl-elec",), 1, "OK", "admin"),
        ("RemoveRecognitionRule", ("fr-elec",), 1, "OK", "admin"),
        ("AddRecognitionRule", ("fr-elec-3",), 1, "PERMISSION_DENIED", "verifier"),
    ]


async def test_batch_items_bulk_issue_and_supersede(running: RunningNode) -> None:
    employer = await _employer(running)
    first = (await running.issue()).credential.credential_id
    second = (await running.issue(given_names="Eva")).credential.credential_id
    await running.verification.VerifyBatch(
        v.VerifyBatchRequest(
            requests=[
                v.VerifyRequest(credential_id=first, birth_date="1994-03-17"),
                v.VerifyRequest(credential_id=second, family_name="Schmidt"),
                v.VerifyRequest(credential_id="Jana Novák", birth_date="1994-03-17"),
            ]
        ),
        metadata=employer,
        timeout=10,
    )

    async def messages() -> AsyncIterator[r.BulkIssueCredentialsRequest]:
        yield r.BulkIssueCredentialsRequest(drafts=[draft(), draft()])
        yield r.BulkIssueCredentialsRequest(drafts=[draft()])

    bulk = await running.registry.BulkIssueCredentials(
        messages(), metadata=running.md("admin"), timeout=30
    )
    sup = await running.registry.SupersedeCredential(
        r.SupersedeCredentialRequest(
            credential_id=first, reason="upgrade", replacement=draft(eqf_level=5)
        ),
        metadata=running.md("admin"),
        timeout=10,
    )
    records = await _records(running)
    batch = [(x.subject, x.outcome) for x in records if x.action == "VerifyBatch"]
    assert batch == [
        ((first,), "OK"),
        ((second,), "NOT_FOUND"),
        ((audit.MALFORMED,), "INVALID_ARGUMENT"),
    ]
    (bulk_record,) = [x for x in records if x.action == "BulkIssueCredentials"]
    assert bulk_record.subject == tuple(bulk.credential_ids)
    assert bulk_record.count == 3
    (sup_record,) = [x for x in records if x.action == "SupersedeCredential"]
    assert sup_record.subject == (first, sup.replacement.credential_id)


async def test_partner_lookups_name_the_partner_country(tmp_path: Path) -> None:
    # A DE node that pinned FR: a lookup with the peer token issued as
    # "FR node" is recorded as coming from FR.
    de = await init_node(tmp_path / "de", "DE", "127.0.0.1:0")
    fr = await init_node(tmp_path / "fr", "FR", "127.0.0.1:0")
    envelope = own_descriptor(fr.config, SigningKey.load(fr.config.key_path), datetime.now(UTC))
    PeerDirectory(de.config.data_dir, "DE").add(envelope, fingerprint(envelope))
    node = await Node.open(de.config)
    srv = await server.start(node, "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            admin = (("authorization", f"Bearer {de.admin_token}"),)
            await _registry_issuer(channel, admin)
            peer = await add_client(de.config, "peer", "FR node", partner="FR")
            issued = await _issue(channel, admin)
            stub = federation_pb2_grpc.FederationServiceStub(channel)
            await stub.LookupCredential(
                f.LookupCredentialRequest(credential_id=issued, family_name="Novák"),
                metadata=(("authorization", f"Bearer {peer}"),),
                timeout=10,
            )
        await node.audit.flush()
        issuance, lookup = await node.store.audit_records_about(issued)
    finally:
        await srv.stop(0)
        await node.close()
    assert issuance.action == "IssueCredential"
    assert (lookup.action, lookup.role, lookup.client_name, lookup.country, lookup.outcome) == (
        "LookupCredential",
        "peer",
        "FR node",
        "FR",
        "OK",
    )


async def _registry_issuer(channel: grpc.aio.Channel, admin: tuple[tuple[str, str], ...]) -> None:
    from credfed.v1 import registry_pb2_grpc

    await registry_pb2_grpc.RegistryServiceStub(channel).RegisterIssuer(
        r.RegisterIssuerRequest(issuer_id=ISSUER, name="HWK", sectors=["energy"]),
        metadata=admin,
        timeout=10,
    )


async def _issue(channel: grpc.aio.Channel, admin: tuple[tuple[str, str], ...]) -> str:
    from credfed.v1 import registry_pb2_grpc

    resp = await registry_pb2_grpc.RegistryServiceStub(channel).IssueCredential(
        r.IssueCredentialRequest(draft=draft()), metadata=admin, timeout=10
    )
    cid: str = resp.receipt.credential.credential_id
    return cid


async def test_no_holder_attribute_or_name_reaches_the_audit_table(
    running: RunningNode,
) -> None:
    employer = await _employer(running)
    cid = (await running.issue()).credential.credential_id
    for request in (
        v.VerifyRequest(credential_id=cid, birth_date="1994-03-17"),
        v.VerifyRequest(credential_id=cid, family_name="Novák"),
    ):
        await running.verification.Verify(request, metadata=employer, timeout=10)
    for request in (
        v.VerifyRequest(credential_id=cid, family_name="Schmidt"),
        v.VerifyRequest(credential_id="Jana Novák 1994-03-17", birth_date="1980-01-01"),
    ):
        with pytest.raises(grpc.aio.AioRpcError):
            await running.verification.Verify(request, metadata=employer, timeout=10)
    await running.verification.WhereRecognised(
        v.WhereRecognisedRequest(credential_id=cid, family_name="Novák"),
        metadata=employer,
        timeout=10,
    )
    await running.registry.GetCredential(
        r.GetCredentialRequest(credential_id=cid), metadata=running.md("admin"), timeout=10
    )
    await federation_pb2_grpc.FederationServiceStub(running.channel).LookupCredential(
        f.LookupCredentialRequest(credential_id=cid, birth_date="1994-03-17"),
        metadata=running.md("peer"),
        timeout=10,
    )
    records = await _records(running)
    assert {x.action for x in records} >= {
        "IssueCredential",
        "Verify",
        "WhereRecognised",
        "GetCredential",
        "LookupCredential",
    }
    with closing(sqlite3.connect(running.init.config.db_path)) as raw:
        cells = [
            str(cell)
            for table in ("audit_log", "audit_subjects")
            for row in raw.execute(f"SELECT * FROM {table}")
            for cell in row
        ]
    text = "\n".join(cells)
    for value in PERSONAL:
        assert value not in text, f"{value!r} is in the audit table"
    assert cid in text


async def test_concurrent_verifies_and_a_local_command_keep_one_chain(
    running: RunningNode,
) -> None:
    employer = await _employer(running)
    cid = (await running.issue()).credential.credential_id
    request = v.VerifyRequest(credential_id=cid, birth_date="1994-03-17")

    async def verify_many(n: int) -> None:
        for _ in range(n):
            await running.verification.Verify(request, metadata=employer, timeout=30)

    data_dir = str(running.init.config.data_dir)

    async def local_commands(n: int) -> None:
        # Another process writing the same trail (a refused peer removal is
        # still a pairing change attempt, and recorded).
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "credfed.cli",
                "peer",
                "remove",
                "ZZ",
                "--data-dir",
                data_dir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await proc.wait()

    await asyncio.gather(*(verify_many(25) for _ in range(16)), local_commands(3))
    records = await _records(running)
    assert audit.verify_chain(records) is None
    assert [x.seq for x in records] == list(range(1, len(records) + 1))
    verifies = [x for x in records if x.action == "Verify"]
    assert len(verifies) == 16 * 25
    local = [x for x in records if x.action == "peer remove"]
    assert len(local) == 3
    assert {(x.role, x.country, x.subject) for x in local} == {("operator", "DE", ("ZZ",))}
    assert await running.node.store.audit_index_problem() is None
    # The command-line check agrees.
    done = subprocess.run(
        [sys.executable, "-m", "credfed.cli", "audit", "verify", "--data-dir", data_dir],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(records)} records, chain intact" in done.stdout


async def test_stopping_the_server_writes_the_queued_records(node_dir: object) -> None:
    from credfed.bootstrap import Initialised

    assert isinstance(node_dir, Initialised)
    node = await Node.open(node_dir.config)
    srv = await server.start(node, "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            admin = (("authorization", f"Bearer {node_dir.admin_token}"),)
            await _registry_issuer(channel, admin)
    finally:
        await srv.stop(0)
    try:
        records = await node.store.audit_records()
    finally:
        await node.close()
    assert [x.action for x in records] == ["RegisterIssuer"]
