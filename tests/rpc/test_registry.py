"""Registry RPCs on a real server: lifecycle, validation, bulk issue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ISSUER, OTHER_ISSUER, RunningNode, draft

from credfed import ids
from credfed.statuslog.entries import decode_entry
from credfed.v1 import common_pb2 as c
from credfed.v1 import registry_pb2 as r

ACTIVE = c.CREDENTIAL_STATUS_ACTIVE
SUSPENDED = c.CREDENTIAL_STATUS_SUSPENDED
REVOKED = c.CREDENTIAL_STATUS_REVOKED
REINSTATED = c.CREDENTIAL_STATUS_REINSTATED
SUPERSEDED = c.CREDENTIAL_STATUS_SUPERSEDED


async def _code(coro: Any) -> grpc.StatusCode:
    try:
        await coro
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_issue_returns_signed_record_log_entry_and_checkpoint(running: RunningNode) -> None:
    receipt = await running.issue()
    cred = receipt.credential
    assert ids.parse_credential_id(cred.credential_id) == cred.credential_id
    assert cred.origin == "DE" and cred.status.status == ACTIVE
    assert cred.qualification.isco_code == "7411" and cred.holder.family_name == "Novák"
    entry = decode_entry(receipt.entry.leaf)
    assert entry.credential_id == cred.credential_id and entry.index == receipt.entry.index
    assert entry.state.status.value == "active" and entry.state.reason == "issued"
    assert (
        b"Nov" not in receipt.entry.leaf and b"1994" not in receipt.entry.leaf
    )  # no personal data
    assert receipt.checkpoint.tree_size == receipt.entry.index + 1


async def test_full_lifecycle(running: RunningNode) -> None:
    reg, md = running.registry, running.md(f"issuer:{ISSUER}")
    cid = (await running.issue()).credential.credential_id
    s = await reg.SuspendCredential(
        r.SuspendCredentialRequest(
            credential_id=cid,
            reason="under_investigation",
            until="2099-01-31",
            appeal_case_ref="VG-M-2026-118",
        ),
        metadata=md,
        timeout=10,
    )
    st = s.receipt.credential.status
    assert (st.status, st.suspended_until, st.appeal_case_ref) == (
        SUSPENDED,
        "2099-01-31",
        "VG-M-2026-118",
    )
    assert decode_entry(s.receipt.entry.leaf).state.suspended_until is not None
    assert b"VG-M" not in s.receipt.entry.leaf  # the case reference stays at the origin
    rein = await reg.ReinstateCredential(
        r.ReinstateCredentialRequest(credential_id=cid, reason="appeal_upheld"),
        metadata=md,
        timeout=10,
    )
    assert rein.receipt.credential.status.status == REINSTATED
    rev = await reg.RevokeCredential(
        r.RevokeCredentialRequest(credential_id=cid, reason="fraud"), metadata=md, timeout=10
    )
    assert rev.receipt.credential.status.status == REVOKED
    assert rev.receipt.entry.index > rein.receipt.entry.index > s.receipt.entry.index
    got = await reg.GetCredential(
        r.GetCredentialRequest(credential_id=cid), metadata=md, timeout=10
    )
    assert got.credential.status.status == REVOKED and got.credential.status.reason == "fraud"


@pytest.mark.parametrize(
    ("steps", "illegal"),
    [
        ([], "reinstate"),  # not suspended
        (["revoke"], "suspend"),  # revoked is terminal
        (["revoke"], "reinstate"),
        (["revoke"], "revoke"),
        (["suspend"], "suspend"),  # already suspended (no until-date)
        (["suspend"], "supersede"),  # reinstate first
        (["supersede"], "suspend"),
        (["supersede"], "supersede"),
    ],
)
async def test_illegal_transitions_are_failed_precondition(
    running: RunningNode, steps: list[str], illegal: str
) -> None:
    cid = (await running.issue()).credential.credential_id
    reg, md = running.registry, running.md("admin")
    calls = {
        "suspend": lambda: reg.SuspendCredential(
            r.SuspendCredentialRequest(credential_id=cid, reason="disciplinary"),
            metadata=md,
            timeout=10,
        ),
        "reinstate": lambda: reg.ReinstateCredential(
            r.ReinstateCredentialRequest(credential_id=cid, reason="appeal_upheld"),
            metadata=md,
            timeout=10,
        ),
        "revoke": lambda: reg.RevokeCredential(
            r.RevokeCredentialRequest(credential_id=cid, reason="fraud"), metadata=md, timeout=10
        ),
        "supersede": lambda: reg.SupersedeCredential(
            r.SupersedeCredentialRequest(credential_id=cid, reason="upgrade", replacement=draft()),
            metadata=md,
            timeout=10,
        ),
    }
    for step in steps:
        await calls[step]()
    before = await running.node.store.latest_checkpoint()
    assert await _code(calls[illegal]()) == grpc.StatusCode.FAILED_PRECONDITION
    assert await running.node.store.latest_checkpoint() == before


async def test_supersede_links_old_and_new(running: RunningNode) -> None:
    old = (await running.issue()).credential.credential_id
    resp = await running.registry.SupersedeCredential(
        r.SupersedeCredentialRequest(
            credential_id=old,
            reason="specialisation_added",
            replacement=draft(
                title="Elektroniker/in, Fachrichtung Gebäudesystemintegration", eqf_level=5
            ),
        ),
        metadata=running.md(f"issuer:{ISSUER}"),
        timeout=10,
    )
    new = resp.replacement
    assert new.supersedes == old and new.status.status == ACTIVE
    assert resp.superseded.credential.status.status == SUPERSEDED
    assert resp.superseded.credential.status.superseded_by == new.credential_id
    assert b'"supersedes":"' + old.encode() in new.signed_record.payload


async def test_issuer_rules(running: RunningNode) -> None:
    reg, admin = running.registry, running.md("admin")
    # Not accredited for the sector.
    assert await _code(running.issue(issuer_id=OTHER_ISSUER, sector="construction")) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    # Not registered.
    assert await _code(running.issue(issuer_id="de-unknown")) == grpc.StatusCode.FAILED_PRECONDITION
    # Suspended issuers cannot issue.
    await reg.SuspendIssuer(
        r.SuspendIssuerRequest(issuer_id=OTHER_ISSUER), metadata=admin, timeout=10
    )
    assert await _code(running.issue(issuer_id=OTHER_ISSUER)) == grpc.StatusCode.FAILED_PRECONDITION
    listed = await reg.ListIssuers(r.ListIssuersRequest(), metadata=admin, timeout=10)
    status = {i.issuer_id: i.status for i in listed.issuers}
    assert status == {ISSUER: r.ISSUER_STATUS_ACTIVE, OTHER_ISSUER: r.ISSUER_STATUS_SUSPENDED}
    # Duplicate registration.
    assert (
        await _code(
            reg.RegisterIssuer(
                r.RegisterIssuerRequest(issuer_id=ISSUER, name="again", sectors=["energy"]),
                metadata=admin,
                timeout=10,
            )
        )
        == grpc.StatusCode.ALREADY_EXISTS
    )


async def test_an_issuer_touches_only_its_own_credentials(running: RunningNode) -> None:
    cid = (await running.issue()).credential.credential_id
    other = running.md(f"issuer:{OTHER_ISSUER}")
    for call in (
        running.registry.GetCredential(
            r.GetCredentialRequest(credential_id=cid), metadata=other, timeout=10
        ),
        running.registry.RevokeCredential(
            r.RevokeCredentialRequest(credential_id=cid, reason="fraud"), metadata=other, timeout=10
        ),
    ):
        assert await _code(call) == grpc.StatusCode.PERMISSION_DENIED


INVALID = [
    ({"birth_date": "17.03.1994"}, "draft.holder.birth_date"),
    ({"birth_date": ""}, "draft.holder.birth_date"),
    ({"family_name": ""}, "draft.holder.family_name"),
    ({"family_name": "x" * 5000}, "draft.holder.family_name"),
    ({"given_names": "Jana\x00"}, "draft.holder.given_names"),
    ({"eqf_level": 0}, "draft.qualification.eqf_level"),
    ({"eqf_level": 9}, "draft.qualification.eqf_level"),
    ({"isco_code": "74"}, "draft.qualification.isco_code"),
    ({"isco_code": "9999"}, "draft.qualification.isco_code"),  # not an ISCO-08 unit group
    ({"sector": "piracy"}, "draft.qualification.sector"),
    ({"title": ""}, "draft.qualification.title"),
    ({"national_code": "a b"}, "draft.qualification.national_code"),
    ({"issued_on": "2019-02-30"}, "draft.issued_on"),
    ({"valid_until": "2018-01-01"}, "draft.valid_until"),
    ({"issuer_id": "Not An Id"}, "draft.issuer_id"),
]


@pytest.mark.parametrize(("override", "field"), INVALID)
async def test_invalid_drafts_name_the_field(
    running: RunningNode, override: dict[str, Any], field: str
) -> None:
    before = await running.node.store.latest_checkpoint()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.issue(**override)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (info.value.details() or "")
    assert await running.node.store.latest_checkpoint() == before


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            r.SuspendCredentialRequest(credential_id="DE-7K3F-Q9XM-2PLA-9", reason="disciplinary"),
            "credential_id",
        ),
        (r.SuspendCredentialRequest(credential_id="{cid}", reason="holiday"), "reason"),
        (
            r.SuspendCredentialRequest(
                credential_id="{cid}", reason="disciplinary", until="2020-01-01"
            ),
            "until",
        ),
        (r.SuspendCredentialRequest(credential_id="{cid}", reason="fraud"), "reason"),
    ],
)
async def test_invalid_status_changes_name_the_field(
    running: RunningNode, request_: r.SuspendCredentialRequest, field: str
) -> None:
    cid = (await running.issue()).credential.credential_id
    request_.credential_id = request_.credential_id.replace("{cid}", cid)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.registry.SuspendCredential(request_, metadata=running.md("admin"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(field)


async def test_bulk_issue_commits_everything_at_once(running: RunningNode) -> None:
    await running.issue()
    before = await running.node.store.latest_checkpoint()
    assert before is not None

    async def messages() -> AsyncIterator[r.BulkIssueCredentialsRequest]:
        for _ in range(3):
            yield r.BulkIssueCredentialsRequest(drafts=[draft() for _ in range(400)])

    resp = await running.registry.BulkIssueCredentials(
        messages(), metadata=running.md(f"issuer:{ISSUER}"), timeout=60
    )
    assert len(set(resp.credential_ids)) == 1200
    assert resp.checkpoint.tree_size == before.checkpoint.tree_size + 1200
    got = await running.registry.GetCredential(
        r.GetCredentialRequest(credential_id=resp.credential_ids[777]),
        metadata=running.md("admin"),
        timeout=10,
    )
    assert got.credential.status.status == ACTIVE


async def test_bulk_issue_with_one_bad_draft_issues_nothing(running: RunningNode) -> None:
    before = await running.node.store.latest_checkpoint()

    async def messages() -> AsyncIterator[r.BulkIssueCredentialsRequest]:
        yield r.BulkIssueCredentialsRequest(drafts=[draft() for _ in range(500)])
        bad = [draft() for _ in range(500)]
        bad[123] = draft(eqf_level=12)
        yield r.BulkIssueCredentialsRequest(drafts=bad)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.registry.BulkIssueCredentials(
            messages(), metadata=running.md("admin"), timeout=60
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "drafts[623].qualification.eqf_level" in (info.value.details() or "")
    assert await running.node.store.latest_checkpoint() == before
    assert await running.node.store.log_size() == 0


async def test_bulk_issue_refuses_oversized_messages(running: RunningNode) -> None:
    async def messages() -> AsyncIterator[r.BulkIssueCredentialsRequest]:
        yield r.BulkIssueCredentialsRequest(drafts=[draft() for _ in range(1001)])

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.registry.BulkIssueCredentials(
            messages(), metadata=running.md("admin"), timeout=60
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_bulk_issue_beyond_the_stream_cap_issues_nothing(tmp_path: Path) -> None:
    """Past the cap the stream is refused before commit: its answer (every
    new id) must always fit in one message."""
    from credfed.bootstrap import init_node
    from credfed.clock import utc_now
    from credfed.crypto.keys import SigningKey
    from credfed.errors import ValidationError
    from credfed.models import Issuer, IssuerStatus, Role, RoleKind
    from credfed.registry import Registry
    from credfed.rpc import convert
    from credfed.statuslog.log import StatusLog
    from credfed.storage.sqlite import SqliteStore

    init = await init_node(tmp_path / "de", "DE", "127.0.0.1:0")
    store = await SqliteStore.open(init.config.db_path)
    try:
        await store.add_issuer(Issuer(ISSUER, "HWK", ("energy",), IssuerStatus.ACTIVE))
        key = SigningKey.load(init.config.key_path)
        registry = Registry(store, StatusLog("DE", key, utc_now), key, "DE", utc_now, max_bulk=5)
        one = convert.draft(draft(), "d")

        async def batches(sizes: list[int]) -> AsyncIterator[list[Any]]:
            for size in sizes:
                yield [one] * size

        done = await registry.bulk_issue(Role(RoleKind.ADMIN), batches([3, 2]))
        assert len(done.credential_ids) == 5
        with pytest.raises(ValidationError, match="more than 5 drafts"):
            await registry.bulk_issue(Role(RoleKind.ADMIN), batches([3, 3]))
        assert await store.log_size() == 5
    finally:
        await store.close()
