"""Every RPC × every role: the role table is enforced on the wire.

The expected outcome of each cell is derived from a table written out here,
independently of ``credfed.rpc.auth.METHOD_ROLES``; a test also checks that
every method the services expose is covered.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from conftest import ISSUER, OTHER_ISSUER, RunningNode, draft

from credfed.bootstrap import create_client
from credfed.models import Client, Role, RoleKind
from credfed.rpc.auth import METHOD_ROLES
from credfed.rpc_tokens import hash_token, new_token
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc, registry_pb2_grpc, verification_pb2_grpc
from credfed.v1 import recognition_pb2 as rc
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED

ROLES = (
    "admin",
    "own-issuer",
    "other-issuer",
    "verifier",
    "peer",
    "anonymous",
    "forged",
    "expired",
    "revoked",
)
# Callers whose token is refused whatever the method: none, an unknown one, a
# verifier's that expired, a verifier's that was revoked.
UNAUTHENTICATED_CALLERS = ("anonymous", "forged", "expired", "revoked")
# Which roles succeed; the rest get PERMISSION_DENIED (or UNAUTHENTICATED
# without a valid token). "other-issuer" is allowed by role but refused on
# the credential of another issuer.
ADMIN = {"admin"}
OWNER = {"admin", "own-issuer"}
VERIFY = {"admin", "verifier"}
PEER = {"peer"}

Factory = Callable[[RunningNode, str], Any]


def _rule(rule_id: str) -> rc.RecognitionRule:
    """A valid rule of this (DE) node about French electricians."""
    return rc.RecognitionRule(
        rule_id=rule_id,
        origin="FR",
        eqf_min=4,
        eqf_max=4,
        isco_prefix="7411",
        outcome=rc.RECOGNITION_OUTCOME_FULL,
        local_occupation="Elektroniker/in",
        legal_basis="BQFG § 4",
        valid_from="2025-01-01",
    )


CASES: dict[str, tuple[str, set[str], Factory | None]] = {
    "RegisterIssuer": (
        "registry",
        ADMIN,
        lambda rn, cid: r.RegisterIssuerRequest(
            issuer_id=f"x-{cid[-6:].lower().replace('-', '')}", name="X", sectors=["energy"]
        ),
    ),
    "ListIssuers": ("registry", ADMIN, lambda rn, cid: r.ListIssuersRequest()),
    "SuspendIssuer": (
        "registry",
        ADMIN,
        lambda rn, cid: r.SuspendIssuerRequest(issuer_id=OTHER_ISSUER),
    ),
    "IssueCredential": ("registry", OWNER, lambda rn, cid: r.IssueCredentialRequest(draft=draft())),
    "BulkIssueCredentials": (
        "registry",
        OWNER,
        lambda rn, cid: [r.BulkIssueCredentialsRequest(drafts=[draft(), draft()])],
    ),
    "GetCredential": ("registry", OWNER, lambda rn, cid: r.GetCredentialRequest(credential_id=cid)),
    "SuspendCredential": (
        "registry",
        OWNER,
        lambda rn, cid: r.SuspendCredentialRequest(credential_id=cid, reason="disciplinary"),
    ),
    "ReinstateCredential": ("registry", OWNER, None),  # needs a suspended credential
    "RevokeCredential": (
        "registry",
        OWNER,
        lambda rn, cid: r.RevokeCredentialRequest(credential_id=cid, reason="fraud"),
    ),
    "SupersedeCredential": (
        "registry",
        OWNER,
        lambda rn, cid: r.SupersedeCredentialRequest(
            credential_id=cid, reason="upgrade", replacement=draft(eqf_level=5)
        ),
    ),
    "Verify": (
        "verification",
        VERIFY,
        lambda rn, cid: v.VerifyRequest(credential_id=cid, birth_date="1994-03-17"),
    ),
    "VerifyBatch": (
        "verification",
        VERIFY,
        lambda rn, cid: v.VerifyBatchRequest(
            requests=[v.VerifyRequest(credential_id=cid, family_name="Novák")]
        ),
    ),
    "GetCheckpoint": ("verification", VERIFY, lambda rn, cid: v.GetCheckpointRequest()),
    "GetConsistencyProof": (
        "verification",
        VERIFY,
        lambda rn, cid: v.GetConsistencyProofRequest(old_size=1),
    ),
    "GetNodeDescriptor": ("federation", PEER, lambda rn, cid: f.GetNodeDescriptorRequest()),
    "LookupCredential": (
        "federation",
        PEER,
        lambda rn, cid: f.LookupCredentialRequest(credential_id=cid, birth_date="1994-03-17"),
    ),
    "GetLogCheckpoint": (
        "federation",
        PEER,
        lambda rn, cid: f.GetLogCheckpointRequest(origin="DE"),
    ),
    "GetLogEntries": (
        "federation",
        PEER,
        lambda rn, cid: f.GetLogEntriesRequest(origin="DE", start=0, end=1),
    ),
    "GetLogConsistencyProof": (
        "federation",
        PEER,
        lambda rn, cid: f.GetLogConsistencyProofRequest(origin="DE", old_size=1, new_size=1),
    ),
    "SubscribeLog": ("federation", PEER, lambda rn, cid: f.SubscribeLogRequest(origin="DE")),
    # Empty evidence: past the role check it is refused as INVALID_ARGUMENT
    # (real evidence is exercised in tests/integration/test_federation.py).
    "ReportFork": ("federation", PEER, lambda rn, cid: f.ReportForkRequest()),
    "GetRecognitionRules": ("federation", PEER, lambda rn, cid: f.GetRecognitionRulesRequest()),
    "AddRecognitionRule": (
        "registry",
        ADMIN,
        lambda rn, cid: r.AddRecognitionRuleRequest(rule=_rule("fr-elec-added")),
    ),
    "ImportRecognitionRules": (
        "registry",
        ADMIN,
        lambda rn, cid: r.ImportRecognitionRulesRequest(rules=[_rule("fr-elec-imported")]),
    ),
    "ListRecognitionRules": ("registry", ADMIN, lambda rn, cid: r.ListRecognitionRulesRequest()),
    "PurgeCachedRecords": ("registry", ADMIN, lambda rn, cid: r.PurgeCachedRecordsRequest()),
    "RemoveRecognitionRule": (
        "registry",
        ADMIN,
        lambda rn, cid: r.RemoveRecognitionRuleRequest(rule_id="fr-elec-existing"),
    ),
    "WhereRecognised": (
        "verification",
        VERIFY,
        lambda rn, cid: v.WhereRecognisedRequest(credential_id=cid, birth_date="1994-03-17"),
    ),
}
SERVICES = {
    "registry": ("credfed.v1.RegistryService", registry_pb2_grpc.RegistryServiceStub),
    "verification": (
        "credfed.v1.VerificationService",
        verification_pb2_grpc.VerificationServiceStub,
    ),
    "federation": ("credfed.v1.FederationService", federation_pb2_grpc.FederationServiceStub),
}


def test_every_exposed_method_is_in_the_matrix_and_the_role_table() -> None:
    exposed = {
        f"/{name}/{m.name}"
        for mod in (r, v, f)
        for svc in mod.DESCRIPTOR.services_by_name.values()
        for name, m in ((svc.full_name, m) for m in svc.methods)
    }
    matrix = {f"/{SERVICES[s][0]}/{m}" for m, (s, _, _) in CASES.items()}
    assert exposed == matrix
    assert exposed <= set(METHOD_ROLES)


def _metadata(rn: RunningNode, role: str) -> tuple[tuple[str, str], ...]:
    tokens = {
        "admin": "admin",
        "own-issuer": f"issuer:{ISSUER}",
        "other-issuer": f"issuer:{OTHER_ISSUER}",
        "verifier": "verifier",
        "peer": "peer",
        "expired": "expired",
        "revoked": "revoked",
    }
    if role == "anonymous":
        return ()
    if role == "forged":
        return (("authorization", "Bearer cf_" + "A" * 43),)
    return rn.md(tokens[role])


async def _add_lifetime_token(rn: RunningNode, role: str) -> None:
    """The token of the "expired" caller (a verifier's, expired a day ago) or
    of the "revoked" one (a verifier's, revoked before its first use, so the
    authenticator's cache plays no part)."""
    now = datetime.now(UTC)
    if role == "expired":
        token = new_token()
        await rn.node.store.add_client(
            Client(
                client_id="expired-verifier",
                name="test expired verifier",
                role=Role(RoleKind.VERIFIER),
                token_hash=hash_token(token),
                created_at=now - timedelta(days=91),
                expires_at=now - timedelta(days=1),
            )
        )
    else:
        client, token = await create_client(rn.init.config, "verifier", "test revoked verifier")
        await rn.node.store.revoke_client(client.client_id, now)
    rn.tokens[role] = token


def _expected(method: str, role: str) -> grpc.StatusCode:
    _, allowed, _ = CASES[method]
    if role in UNAUTHENTICATED_CALLERS:
        return UNAUTH
    if role == "other-issuer" and "own-issuer" in allowed:
        # Passes the role table, refused by ownership - except where it acts
        # as itself (the drafts name ISSUER, so issuing is refused too).
        return DENIED
    if role not in allowed:
        return DENIED
    if method == "ReportFork":
        return grpc.StatusCode.INVALID_ARGUMENT
    return OK


async def _invoke(rn: RunningNode, method: str, request: Any, md: Any) -> grpc.StatusCode:
    service, _, _ = CASES[method]
    stub = SERVICES[service][1](rn.channel)
    call = getattr(stub, method)
    try:
        if method == "BulkIssueCredentials":
            await call(iter(request), metadata=md, timeout=10)
        elif method == "SubscribeLog":
            stream = call(request, metadata=md, timeout=10)
            await stream.read()  # the first update proves the call was let through
            stream.cancel()
        else:
            await call(request, metadata=md, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return OK


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", sorted(CASES))
async def test_role_matrix(running: RunningNode, method: str, role: str) -> None:
    rn = running
    receipt = await rn.issue()
    cid = receipt.credential.credential_id
    factory = CASES[method][2]
    if method == "RemoveRecognitionRule":
        await rn.registry.AddRecognitionRule(
            r.AddRecognitionRuleRequest(rule=_rule("fr-elec-existing")),
            metadata=rn.md("admin"),
            timeout=10,
        )
    if method == "ReinstateCredential":
        await rn.registry.SuspendCredential(
            r.SuspendCredentialRequest(credential_id=cid, reason="disciplinary"),
            metadata=rn.md("admin"),
            timeout=10,
        )
        request: Any = r.ReinstateCredentialRequest(credential_id=cid, reason="appeal_upheld")
    else:
        assert factory is not None
        request = factory(rn, cid)
    size_before = await rn.node.store.latest_checkpoint()
    assert size_before is not None
    rules_before = rn.node.recognition.rules()
    if role in ("expired", "revoked"):
        await _add_lifetime_token(rn, role)
    code = await _invoke(rn, method, request, _metadata(rn, role))
    assert code == _expected(method, role), (method, role, code)
    if code != OK:
        # A refused call changed nothing.
        after = await rn.node.store.latest_checkpoint()
        assert after == size_before
        assert rn.node.recognition.rules() == rules_before
