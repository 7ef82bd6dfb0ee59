"""Attacks with API tokens: stolen, expired, revoked and forged.

Expected defences (DESIGN.md, security model; ``credfed.rpc.auth``):

- a token works only within its client's role, from whatever connection it
  is presented (a stolen token is as good as its role, never more);
- an expired or revoked token is UNAUTHENTICATED, a revocation taking effect
  at a running node within the authenticator's cache lifetime;
- a forged token is UNAUTHENTICATED with an answer that does not depend on
  which tokens exist: a near miss of a real token, the stored hash of a real
  token and a random token are answered alike, and no answer quotes a token,
  a hash, a client id or a client name.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import grpc
import pytest
from conftest import OTHER_ISSUER, RunningNode
from google.protobuf import descriptor_pool, message_factory

from credfed.bootstrap import create_client, revoke_client
from credfed.rpc import auth
from credfed.rpc.auth import METHOD_ROLES
from credfed.rpc_tokens import hash_token, new_token
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v
from credfed.v1 import verification_pb2_grpc

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
CACHE = 0.3  # seconds: the authenticator's token cache in these tests
#: Every guarded RPC, from the role table, with the roles it allows.
GUARDED = {m: roles for m, roles in METHOD_ROLES.items() if roles is not None}


@pytest.fixture(autouse=True)
def short_auth_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Autouse, so that it is in place before ``running`` builds the server."""
    monkeypatch.setattr(auth, "CACHE_SECONDS", CACHE)


def _md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _other_client(rn: RunningNode) -> grpc.aio.Channel:
    """A separate connection: the thief's own client, not the victim's."""
    return grpc.aio.insecure_channel(rn.target, options=[("grpc.use_local_subchannel_pool", 1)])


async def _any_call(
    channel: grpc.aio.Channel, path: str, metadata: tuple[tuple[str, str], ...]
) -> tuple[grpc.StatusCode, str]:
    """Call ``path`` with an empty request (the role check comes first)."""
    service, method = path.strip("/").split("/")
    desc = descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]
    request = message_factory.GetMessageClass(desc.input_type)()
    out = message_factory.GetMessageClass(desc.output_type)
    kw = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": out.FromString,
    }
    try:
        if desc.client_streaming:
            await channel.stream_unary(path, **kw)(iter([request]), metadata=metadata, timeout=10)
        elif desc.server_streaming:
            stream = channel.unary_stream(path, **kw)(request, metadata=metadata, timeout=10)
            try:
                await asyncio.wait_for(stream.read(), 5)
            finally:
                stream.cancel()
        else:
            await channel.unary_unary(path, **kw)(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return OK, ""


async def _state(rn: RunningNode) -> tuple[object, ...]:
    latest = await rn.node.store.latest_checkpoint()
    assert latest is not None
    return (
        latest.checkpoint.tree_size,
        latest.checkpoint.root_hash,
        len(await rn.node.store.list_issuers()),
        len(rn.node.recognition.rules()),
    )


@pytest.mark.parametrize("role", ["verifier", "peer", f"issuer:{OTHER_ISSUER}"])
async def test_a_stolen_token_works_from_another_client_only_within_its_role(
    running: RunningNode, role: str
) -> None:
    """Attack: a thief replays an employer's (verifier), a partner's (peer)
    or an issuer's token from its own client, against every RPC the role
    table does not grant that role, and against another issuer's credential.
    Defence: PERMISSION_DENIED for each, nothing written; the token still
    does what its role may (it is a bearer token: only revocation ends it)."""
    rn = running
    cid = (await rn.issue()).credential.credential_id  # ISSUER's credential
    kind = role.split(":", maxsplit=1)[0]
    before = await _state(rn)
    channel = _other_client(rn)
    try:
        refused = []
        for path, roles in GUARDED.items():
            if any(k.value == kind for k in roles):
                continue
            code, details = await _any_call(channel, path, rn.md(role))
            if code != DENIED:
                refused.append(f"{path}: {code.name} {details!r}")
        assert not refused, "\n".join(refused)
        if kind == "issuer":
            # Allowed by the table, refused by ownership: not its credential.
            stub_md = rn.md(role)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await rn.registry.RevokeCredential(
                    r.RevokeCredentialRequest(credential_id=cid, reason="fraud"),
                    metadata=stub_md,
                    timeout=10,
                )
            assert info.value.code() == DENIED
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await rn.registry.GetCredential(
                    r.GetCredentialRequest(credential_id=cid), metadata=stub_md, timeout=10
                )
            assert info.value.code() == DENIED
        assert await _state(rn) == before, "a refused call wrote"
        if kind == "verifier":
            got = await verification_pb2_grpc.VerificationServiceStub(channel).Verify(
                v.VerifyRequest(credential_id=cid, birth_date="1994-03-17"),
                metadata=rn.md(role),
                timeout=10,
            )
            assert got.result.credential_id == cid
    finally:
        await channel.close()


async def _checkpoint(channel: grpc.aio.Channel, token: str) -> tuple[grpc.StatusCode, str]:
    try:
        await verification_pb2_grpc.VerificationServiceStub(channel).GetCheckpoint(
            v.GetCheckpointRequest(), metadata=_md(token), timeout=10
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return OK, ""


async def test_a_stolen_token_stops_working_when_it_expires(running: RunningNode) -> None:
    """Attack: a thief keeps using a short-lived token (``credfed token
    create --expires-in``) after its lifetime. Defence: UNAUTHENTICATED
    "token expired" from the moment it expires, although it was cached."""
    rn = running
    client, token = await create_client(
        rn.init.config, "verifier", "test short-lived", expires_in=timedelta(seconds=0.5)
    )
    assert client.expires_at is not None
    channel = _other_client(rn)
    try:
        assert await _checkpoint(channel, token) == (OK, "")  # now in the cache
        await asyncio.sleep(0.6)
        assert await _checkpoint(channel, token) == (UNAUTH, "token expired")
    finally:
        await channel.close()


async def test_a_stolen_token_stops_working_once_revoked(running: RunningNode) -> None:
    """Attack: a thief keeps using a token after the operator revoked its
    client (``credfed token revoke``, written to the database from another
    process while the node runs). Defence: UNAUTHENTICATED "token revoked"
    within the authenticator's cache lifetime; other clients unaffected."""
    rn = running
    client, token = await create_client(rn.init.config, "verifier", "test stolen")
    channel = _other_client(rn)
    try:
        assert await _checkpoint(channel, token) == (OK, "")
        await revoke_client(rn.init.config, client.client_id)
        start = time.monotonic()
        while (outcome := await _checkpoint(channel, token))[0] == OK:
            assert time.monotonic() - start < CACHE + 2.0, "the revocation was not seen"
            await asyncio.sleep(0.05)
        assert outcome == (UNAUTH, "token revoked")
        assert await _checkpoint(channel, token) == (UNAUTH, "token revoked")
        assert await _checkpoint(channel, rn.tokens["verifier"]) == (OK, "")
    finally:
        await channel.close()


async def test_a_forged_token_is_refused_and_learns_nothing(running: RunningNode) -> None:
    """Attack: forged tokens - random, a near miss of a real (admin) token, a
    real token in another case, the SHA-256 stored at rest presented as a
    token, a near miss of a revoked token, too long, another scheme, none.
    Defence: UNAUTHENTICATED for each, on every RPC alike; every well-formed
    forgery gets the same details as a random one (no oracle for which tokens
    exist), and no details quote a token, a hash, a client id or a name."""
    rn = running
    admin = rn.tokens["admin"]
    revoked_client, revoked = await create_client(rn.init.config, "admin", "test revoked admin")
    await revoke_client(rn.init.config, revoked_client.client_id)
    flip = {"A": "B"}

    def near_miss(token: str) -> str:
        last = token[-1]
        return token[:-1] + flip.get(last, "A")

    well_formed = {
        "random": new_token(),
        "near miss of the admin token": near_miss(admin),
        "admin token upper-cased": admin[:3] + admin[3:].upper(),
        "stored hash as a token": "cf_" + hash_token(admin).hex(),
        "near miss of a revoked token": near_miss(revoked),
    }
    malformed = {
        "too long": admin + "A" * 200,
        "no prefix": admin[3:],
        "empty": "",
    }
    never_quoted = [
        admin,
        revoked,
        hash_token(admin).hex(),
        revoked_client.client_id,
        "test revoked",
    ]
    never_quoted += list(rn.tokens.values())
    paths = ["/credfed.v1.RegistryService/ListIssuers", "/credfed.v1.VerificationService/Verify"]
    paths += ["/credfed.v1.FederationService/GetNodeDescriptor"]
    answers: dict[str, set[tuple[grpc.StatusCode, str]]] = {}
    for name, token in {**well_formed, **malformed}.items():
        for path in paths:
            answers.setdefault(name, set()).add(await _any_call(rn.channel, path, _md(token)))
    for path in paths:
        answers.setdefault("another scheme", set()).add(
            await _any_call(rn.channel, path, (("authorization", f"Basic {admin}"),))
        )
        answers.setdefault("no metadata", set()).add(await _any_call(rn.channel, path, ()))
    for name, seen in answers.items():
        assert {code for code, _ in seen} == {UNAUTH}, name
        assert len(seen) == 1, f"{name}: answered differently by RPC: {seen}"
        (details,) = {d for _, d in seen}
        for secret in never_quoted:
            assert secret not in details, f"{name}: the answer quotes a secret"
    random_answer = answers["random"]
    for name in well_formed:
        assert answers[name] == random_answer, f"{name} is answered unlike a random token"
