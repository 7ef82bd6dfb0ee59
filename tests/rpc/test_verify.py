"""Verification RPCs on a real server: answers an employer can check alone."""

from __future__ import annotations

import logging

import grpc
import pytest
from conftest import RunningNode

from credfed.crypto.keys import SigningKey
from credfed.errors import ProofError
from credfed.independent import check_answer
from credfed.logging import quiet_grpc_logs
from credfed.models import Envelope
from credfed.statuslog import merkle
from credfed.v1 import common_pb2 as c
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v


def _env(pb: c.Envelope) -> Envelope:
    return Envelope(pb.payload, pb.payload_type, pb.key_id, pb.signature)


async def _verify(rn: RunningNode, cid: str, **attr: str) -> v.VerificationResult:
    resp = await rn.verification.Verify(
        v.VerifyRequest(credential_id=cid, **attr), metadata=rn.md("verifier"), timeout=10
    )
    result: v.VerificationResult = resp.result
    return result


def _keys(rn: RunningNode) -> dict[str, object]:
    key = SigningKey.load(rn.init.config.key_path)
    return {key.key_id: key.verifying_key()}


async def test_verify_answer_is_complete_and_checks_independently(running: RunningNode) -> None:
    cid = (await running.issue()).credential.credential_id
    for _ in range(5):  # grow the log so the proof is not trivial
        await running.issue()
    res = await _verify(running, cid, birth_date="1994-03-17")
    assert res.status == c.CREDENTIAL_STATUS_ACTIVE
    assert res.qualification.title.startswith("Elektroniker")
    assert (res.qualification.eqf_level, res.qualification.isco_code) == (4, "7411")
    assert res.qualification.sector == "energy" and res.issuer_id == "de-hwk-muenchen"
    assert (res.issued_on, res.valid_until) == ("2019-07-01", "2039-06-30")
    assert res.provenance.origin == "DE"
    assert not res.provenance.signature_checked  # the origin's own record: the client checks
    assert res.provenance.source == v.STATUS_SOURCE_ORIGIN
    assert res.checkpoint.tree_size == 6 and res.inclusion_proof.tree_size == 6
    checked = check_answer(
        credential_id=cid,
        record=_env(res.signed_record),
        leaf=res.status_entry.leaf,
        leaf_index=res.status_entry.index,
        proof=list(res.inclusion_proof.hashes),
        checkpoint=_env(res.checkpoint.envelope),
        origin="DE",
        keys=_keys(running),  # type: ignore[arg-type]
    )
    assert checked.signatures_checked and checked.entry.credential_id == cid


async def test_proof_is_of_the_newest_status_entry(running: RunningNode) -> None:
    cid = (await running.issue()).credential.credential_id
    revoked = await running.registry.RevokeCredential(
        r.RevokeCredentialRequest(credential_id=cid, reason="fraud"),
        metadata=running.md("admin"),
        timeout=10,
    )
    res = await _verify(running, cid, family_name="novák")
    assert res.status == c.CREDENTIAL_STATUS_REVOKED
    assert res.status_entry.index == revoked.receipt.entry.index
    assert b'"status":"revoked"' in res.status_entry.leaf
    # Tampering with any part of the answer is caught by the client.
    tampered_leaf = res.status_entry.leaf.replace(b"revoked", b"active_")
    with pytest.raises(ProofError):
        merkle.verify_inclusion(
            merkle.leaf_hash(tampered_leaf),
            res.status_entry.index,
            res.checkpoint.tree_size,
            list(res.inclusion_proof.hashes),
            res.checkpoint.root_hash,
        )


@pytest.mark.parametrize(
    "attr",
    [{"birth_date": "1994-03-17"}, {"family_name": "Novák"}, {"family_name": "  NOVÁK "}],
)
async def test_holder_attribute_matches(running: RunningNode, attr: dict[str, str]) -> None:
    cid = (await running.issue()).credential.credential_id
    assert (await _verify(running, cid, **attr)).credential_id == cid


async def test_wrong_attribute_and_unknown_id_are_indistinguishable(running: RunningNode) -> None:
    cid = (await running.issue()).credential.credential_id
    from credfed import ids

    unknown = ids.new_credential_id("DE")
    answers = []
    for cred, attr in (
        (cid, {"birth_date": "1994-03-18"}),
        (cid, {"family_name": "Novak"}),
        (unknown, {"birth_date": "1994-03-17"}),
        (unknown, {"family_name": "Novák"}),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _verify(running, cred, **attr)
        answers.append((info.value.code(), info.value.details(), info.value.trailing_metadata()))
    assert all(a[0] == grpc.StatusCode.NOT_FOUND for a in answers)
    assert len({(a[0], a[1]) for a in answers}) == 1


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (v.VerifyRequest(credential_id="{cid}"), "holder_attribute"),
        (v.VerifyRequest(credential_id="nonsense", birth_date="1994-03-17"), "credential_id"),
        (v.VerifyRequest(credential_id="{cid}", birth_date="17/03/1994"), "birth_date"),
        (v.VerifyRequest(credential_id="{cid}", family_name=""), "family_name"),
    ],
)
async def test_invalid_verify_requests_name_the_field(
    running: RunningNode, request_: v.VerifyRequest, field: str
) -> None:
    cid = (await running.issue()).credential.credential_id
    request_.credential_id = request_.credential_id.replace("{cid}", cid)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.verification.Verify(request_, metadata=running.md("verifier"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(field)


async def test_a_typo_in_the_id_is_caught_before_lookup(running: RunningNode) -> None:
    cid = (await running.issue()).credential.credential_id
    typo = cid[:3] + cid[4] + cid[3] + cid[5:] if cid[3] != cid[4] else cid[:-1] + "Z"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _verify(running, typo, birth_date="1994-03-17")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_expiry_is_derived(running: RunningNode) -> None:
    cid = (
        await running.issue(issued_on="2010-01-01", valid_until="2015-12-31")
    ).credential.credential_id
    res = await _verify(running, cid, birth_date="1994-03-17")
    assert res.status == c.CREDENTIAL_STATUS_EXPIRED
    assert res.status_detail.status == c.CREDENTIAL_STATUS_ACTIVE  # what the log says
    assert b"expired" not in res.status_entry.leaf


async def test_batch_verify_has_one_outcome_per_item(running: RunningNode) -> None:
    good = [(await running.issue()).credential.credential_id for _ in range(3)]
    reqs = [v.VerifyRequest(credential_id=g, birth_date="1994-03-17") for g in good]
    reqs.insert(1, v.VerifyRequest(credential_id=good[0], birth_date="2000-01-01"))
    reqs.append(v.VerifyRequest(credential_id="DE-BAD", birth_date="1994-03-17"))
    resp = await running.verification.VerifyBatch(
        v.VerifyBatchRequest(requests=reqs), metadata=running.md("verifier"), timeout=10
    )
    kinds = [item.WhichOneof("outcome") for item in resp.items]
    assert kinds == ["result", "error", "result", "result", "error"]
    assert resp.items[1].error.code == "NOT_FOUND"
    assert resp.items[4].error.code == "INVALID_ARGUMENT"
    assert resp.items[4].error.field == "requests[4].credential_id"
    assert [i.result.credential_id for i in resp.items if i.HasField("result")] == good


async def test_batch_verify_caps_at_1000(running: RunningNode) -> None:
    reqs = [v.VerifyRequest(credential_id="DE-X", birth_date="1994-03-17")] * 1001
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.verification.VerifyBatch(
            v.VerifyBatchRequest(requests=reqs), metadata=running.md("verifier"), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_consistency_proof_between_checkpoints(running: RunningNode) -> None:
    first = (await running.issue()).checkpoint
    for _ in range(6):
        last = (await running.issue()).checkpoint
    resp = await running.verification.GetConsistencyProof(
        v.GetConsistencyProofRequest(old_size=first.tree_size),
        metadata=running.md("verifier"),
        timeout=10,
    )
    assert resp.checkpoint.tree_size == last.tree_size
    merkle.verify_consistency(
        first.tree_size, last.tree_size, first.root_hash, last.root_hash, list(resp.proof.hashes)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.verification.GetConsistencyProof(
            v.GetConsistencyProofRequest(old_size=last.tree_size + 5),
            metadata=running.md("verifier"),
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_foreign_ids_are_not_answered_without_federation(running: RunningNode) -> None:
    from credfed import ids

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _verify(running, ids.new_credential_id("FR"), birth_date="1994-03-17")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_crash_is_unknown_and_logged_without_its_message(
    running: RunningNode,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cid = (await running.issue()).credential.credential_id
    grpc_logger = logging.getLogger("grpc")
    monkeypatch.setattr(grpc_logger, "level", grpc_logger.level)  # restored afterwards
    quiet_grpc_logs()  # what every node does when it configures logging

    async def broken(*args: object) -> None:
        raise RuntimeError("Novák 1994-03-17")  # as if a bug quoted the request

    monkeypatch.setattr(running.node.verifier, "verify", broken)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _verify(running, cid, birth_date="1994-03-17")
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    out = capsys.readouterr()
    logged = out.out + out.err
    assert "rpc.crashed" in logged and "RuntimeError" in logged
    assert "Novák" not in logged and "1994-03-17" not in logged
    assert not [r for r in caplog.records if "Novák" in r.getMessage() or r.exc_info]
