"""Attacks with sizes: oversized messages, oversized batches, oversized
fields, and subscribers that open log streams and never read them.

Expected defences (DESIGN.md, security model): sizes are capped; bad input
gets INVALID_ARGUMENT with the field named; nothing is written by a refused
call; a client that does not read cannot hold up the node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ISSUER, RunningNode, draft
from fednet import (
    ISSUERS,
    STATUS,
    build,
    peer_token,
    register_issuer,
    set_limits,
    start_all,
    stop_all,
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from credfed import ids
from credfed.rpc.limits import MAX_MESSAGE_BYTES
from credfed.rpc.servicers import MAX_BATCH
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc, registry_pb2_grpc, verification_pb2_grpc
from credfed.v1 import recognition_pb2 as rc
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
#: A field this long is absurd for every text field of every request.
FIELD_100_KB = 100_000


async def _state(rn: RunningNode) -> tuple[Any, ...]:
    latest = await rn.node.store.latest_checkpoint()
    assert latest is not None
    issuers = await rn.node.store.list_issuers()
    return latest.checkpoint.tree_size, latest.checkpoint.root_hash, len(issuers)


async def _healthy(channel: grpc.aio.Channel) -> bool:
    got = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=5
    )
    return bool(got.status == health_pb2.HealthCheckResponse.SERVING)


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


# -- 1. a message over the 4 MiB cap --------------------------------------------------


async def test_a_request_over_the_message_size_cap_is_refused_without_a_crash(
    running: RunningNode,
) -> None:
    """Attack: requests larger than the server's 4 MiB message cap (a unary
    Verify, and one message of a BulkIssueCredentials stream). Defence:
    RESOURCE_EXHAUSTED (or INVALID_ARGUMENT), nothing issued, the server
    keeps serving the same and other clients."""
    rn = running
    await rn.issue()
    before = await _state(rn)
    huge = "A" * (MAX_MESSAGE_BYTES + 1024)
    code, _ = await _code(
        rn.verification.Verify(
            v.VerifyRequest(credential_id=huge, birth_date="1994-03-17"),
            metadata=rn.md("verifier"),
            timeout=30,
        )
    )
    assert code in (EXHAUSTED, INVALID)

    big_draft = draft(title="T" * (MAX_MESSAGE_BYTES // 2))

    async def stream() -> AsyncIterator[r.BulkIssueCredentialsRequest]:
        yield r.BulkIssueCredentialsRequest(drafts=[draft()])
        yield r.BulkIssueCredentialsRequest(drafts=[big_draft, big_draft, draft()])

    code, _ = await _code(
        rn.registry.BulkIssueCredentials(stream(), metadata=rn.md("admin"), timeout=30)
    )
    assert code in (EXHAUSTED, INVALID)
    assert await _state(rn) == before, "a refused oversized bulk issue wrote"
    assert await _healthy(rn.channel)
    assert (await rn.issue()).credential.credential_id  # still serving, same channel


# -- 2. a batch over the item cap -------------------------------------------------------


async def test_a_verify_batch_over_1000_items_is_refused_naming_requests(
    running: RunningNode,
) -> None:
    """Attack: one VerifyBatch of 1,001 lookups (enumeration in bulk).
    Defence: INVALID_ARGUMENT naming ``requests``, before any lookup; the
    cap itself (1,000) is served."""
    rn = running
    item = v.VerifyRequest(credential_id=ids.new_credential_id("DE"), birth_date="1994-03-17")
    code, details = await _code(
        rn.verification.VerifyBatch(
            v.VerifyBatchRequest(requests=[item] * (MAX_BATCH + 1)),
            metadata=rn.md("verifier"),
            timeout=30,
        )
    )
    assert code == INVALID
    assert details.startswith("requests:"), details
    got = await rn.verification.VerifyBatch(
        v.VerifyBatchRequest(requests=[item] * MAX_BATCH), metadata=rn.md("verifier"), timeout=30
    )
    assert len(got.items) == MAX_BATCH
    assert {i.error.code for i in got.items} == {"NOT_FOUND"}


# -- 3. a 100 KB value in every text field of every request ----------------------------

_RULE = rc.RecognitionRule(
    rule_id="fr-elec",
    origin="FR",
    eqf_min=4,
    eqf_max=4,
    isco_prefix="7411",
    sector="energy",
    outcome=rc.RECOGNITION_OUTCOME_CONDITIONAL,
    local_occupation="Elektroniker/in",
    local_code="DE-EL-1",
    conditions=rc.CompensationMeasures(aptitude_test=True, language_level="B1"),
    legal_basis="BQFG § 4",
    valid_from="2025-01-01",
    valid_until="2030-12-31",
)


def _valid_requests(cid: str) -> dict[str, Message]:
    """A request each RPC accepts (or refuses for a reason other than size),
    with every text field filled in; a field is then replaced by 100 KB."""
    return {
        "RegisterIssuer": r.RegisterIssuerRequest(
            issuer_id="de-new-body", name="New body", sectors=["energy"]
        ),
        "SuspendIssuer": r.SuspendIssuerRequest(issuer_id=ISSUER),
        "IssueCredential": r.IssueCredentialRequest(draft=draft()),
        "BulkIssueCredentials": r.BulkIssueCredentialsRequest(drafts=[draft()]),
        "GetCredential": r.GetCredentialRequest(credential_id=cid),
        "SuspendCredential": r.SuspendCredentialRequest(
            credential_id=cid, reason="disciplinary", until="2030-01-01", appeal_case_ref="C-1"
        ),
        "ReinstateCredential": r.ReinstateCredentialRequest(
            credential_id=cid, reason="appeal_upheld", appeal_case_ref="C-1"
        ),
        "RevokeCredential": r.RevokeCredentialRequest(credential_id=cid, reason="fraud"),
        "SupersedeCredential": r.SupersedeCredentialRequest(
            credential_id=cid, reason="upgrade", replacement=draft(eqf_level=5)
        ),
        "AddRecognitionRule": r.AddRecognitionRuleRequest(rule=_RULE),
        "ImportRecognitionRules": r.ImportRecognitionRulesRequest(rules=[_RULE]),
        "RemoveRecognitionRule": r.RemoveRecognitionRuleRequest(rule_id="fr-elec"),
        "Verify": v.VerifyRequest(credential_id=cid, family_name="Novák"),
        "VerifyBatch": v.VerifyBatchRequest(
            requests=[v.VerifyRequest(credential_id=cid, family_name="Novák")]
        ),
        "WhereRecognised": v.WhereRecognisedRequest(credential_id=cid, family_name="Novák"),
        "GetNodeDescriptor": f.GetNodeDescriptorRequest(origin="DE"),
        "LookupCredential": f.LookupCredentialRequest(credential_id=cid, family_name="Novák"),
        "GetLogCheckpoint": f.GetLogCheckpointRequest(origin="DE"),
        "GetLogEntries": f.GetLogEntriesRequest(origin="DE", start=0, end=1),
        "GetLogConsistencyProof": f.GetLogConsistencyProofRequest(
            origin="DE", old_size=1, new_size=1
        ),
        "SubscribeLog": f.SubscribeLogRequest(origin="DE"),
        "ReportFork": f.ReportForkRequest(evidence=b"{}"),
        "GetRecognitionRules": f.GetRecognitionRulesRequest(country="DE"),
    }


_SERVICES: dict[str, tuple[Any, str]] = {
    "RegistryService": (registry_pb2_grpc.RegistryServiceStub, "admin"),
    "VerificationService": (verification_pb2_grpc.VerificationServiceStub, "verifier"),
    "FederationService": (federation_pb2_grpc.FederationServiceStub, "peer"),
}
_TEXT = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)
#: Documented as set by the node (recognition.proto): ignored on input, so
#: any value is accepted and none is stored (the node writes its own country).
SET_BY_THE_NODE = {"rule.country", "rules[0].country"}


def _text_fields(base: Message) -> Iterator[tuple[Any, ...]]:
    """Paths to every text field of ``base`` (into set sub-messages and the
    first item of repeated ones): names, with 0 for a repeated item."""
    for field in base.DESCRIPTOR.fields:
        if field.type in _TEXT:
            yield (field.name,)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                items = getattr(base, field.name)
                if len(items):
                    for rest in _text_fields(items[0]):
                        yield (field.name, 0, *rest)
            elif base.HasField(field.name):
                for rest in _text_fields(getattr(base, field.name)):
                    yield (field.name, *rest)


def _with(base: Message, path: tuple[Any, ...], value: str | bytes) -> Message:
    request = type(base)()
    request.CopyFrom(base)
    target: Any = request
    for step in path[:-1]:
        target = target[step] if isinstance(step, int) else getattr(target, step)
    name = path[-1]
    field = target.DESCRIPTOR.fields_by_name[name]
    if field.type == FieldDescriptor.TYPE_BYTES and isinstance(value, str):
        value = value.encode()
    if field.is_repeated:
        del getattr(target, name)[:]
        getattr(target, name).append(value)
    else:
        setattr(target, name, value)
    return request


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


async def _send(rn: RunningNode, service: str, method: str, request: Message) -> tuple[str, str]:
    """(code name, "field: message") of the answer; for VerifyBatch, of its
    one item (the call itself succeeds, each item has its own outcome)."""
    stub_class, role = _SERVICES[service]
    call = getattr(stub_class(rn.channel), method)
    md = rn.md(role)
    try:
        if method == "BulkIssueCredentials":
            await call(iter([request]), metadata=md, timeout=10)
        elif method == "SubscribeLog":
            stream = call(request, metadata=md, timeout=10)
            try:
                await asyncio.wait_for(stream.read(), 3)
            finally:
                stream.cancel()
        else:
            got = await call(request, metadata=md, timeout=10)
            if method == "VerifyBatch":
                error = got.items[0].error
                return (error.code or "OK"), f"{error.field}: {error.message}"
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


async def test_a_100_kb_value_in_any_text_field_is_refused_naming_that_field(
    running: RunningNode,
) -> None:
    """Attack: 100 KB in one text (or bytes) field of an otherwise valid
    request, for every such field of every RPC (walked from the message
    descriptors). Defence: INVALID_ARGUMENT whose details start with the
    field's path (``draft.holder.family_name: …``), short details (the value
    is not echoed back), nothing written."""
    rn = running
    cid = (await rn.issue()).credential.credential_id
    await rn.registry.AddRecognitionRule(
        r.AddRecognitionRuleRequest(rule=_RULE), metadata=rn.md("admin"), timeout=10
    )
    requests = _valid_requests(cid)
    services = {
        m.name: svc.name
        for mod in (r, v, f)
        for svc in mod.DESCRIPTOR.services_by_name.values()
        for m in svc.methods
    }
    with_text = {name for name, service in services.items() if _has_text(_input(service, name))}
    assert with_text <= set(requests), (
        f"no valid request to start from: {with_text - set(requests)}"
    )
    failures = []
    for method, base in requests.items():
        service = services[method]
        for path in _text_fields(base):
            before = await _state(rn)
            code, details = await _send(rn, service, method, _with(base, path, "x" * FIELD_100_KB))
            field = _dotted(path)
            named = details.split(": ", 1)[0].replace(f"{field}[0]", field)
            if field in SET_BY_THE_NODE and code == "OK":
                continue
            if code != "INVALID_ARGUMENT" or named != field or len(details) > 1000:
                failures.append(f"{method} {field}: {code} {details[:160]!r}")
            if await _state(rn) != before:
                failures.append(f"{method} {field}: {code} and wrote")
    assert await _healthy(rn.channel)
    assert not failures, "\n".join(failures)


def _input(service: str, method: str) -> Descriptor:
    for mod in (r, v, f):
        svc = mod.DESCRIPTOR.services_by_name.get(service)
        if svc is not None:
            found: Descriptor = svc.methods_by_name[method].input_type
            return found
    raise KeyError(method)


def _has_text(descriptor: Descriptor | None, depth: int = 0) -> bool:
    """Whether a request type has a text field, at any depth."""
    return (
        descriptor is not None
        and depth < 5
        and any(
            field.type in _TEXT
            or (
                field.type == FieldDescriptor.TYPE_MESSAGE
                and _has_text(field.message_type, depth + 1)
            )
            for field in descriptor.fields
        )
    )


# -- 4. subscribers that never read ---------------------------------------------------

#: Entries each stalled subscription is owed: several 1,000-entry messages,
#: each far beyond the 64 KiB HTTP/2 window a non-reading client grants.
BACKLOG = 3000
STALLED = 30
#: With BDP probing off, grpc grants a stream only its initial window; one
#: connection per subscriber, as separate partners would have.
SLOW_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.http2.bdp_probe", 0)]
ROUNDS = 60


async def _bulk_issue(node: Any, count: int) -> None:
    one = draft(issuer_id=ISSUERS[node.country])

    async def messages() -> AsyncIterator[r.BulkIssueCredentialsRequest]:
        for _ in range(count // 1000):
            yield r.BulkIssueCredentialsRequest(drafts=[one] * 1000)

    await node.registry.BulkIssueCredentials(messages(), metadata=node.md(), timeout=60)


@pytest.mark.slow
async def test_slowloris_subscribers_do_not_hold_up_issuing_or_other_clients(
    tmp_path: Path,
) -> None:
    """Attack: one partner's (stolen) peer token opens as many SubscribeLog
    streams as it may, each on its own connection, from index 0 of a large
    log, and never reads; then more. Defence: the per-client subscription cap
    refuses the streams beyond it (RESOURCE_EXHAUSTED); while the stalled
    streams hold their backlog, issuing keeps a low p95 latency, an
    employer's verify is answered, and an honest partner's subscription gets
    each new checkpoint at once."""
    nodes = await build(tmp_path, ["DE"], [])
    de = nodes["DE"]
    set_limits(de, max_subscriptions_per_client=STALLED)
    attacker = (("authorization", f"Bearer {await peer_token(de, 'attacker')}"),)
    honest = (("authorization", f"Bearer {await peer_token(de, 'honest partner')}"),)
    channels: list[grpc.aio.Channel] = []
    streams: list[Any] = []

    def subscribe(md: Any, from_index: int, options: Any = SLOW_OPTIONS) -> Any:
        channel = grpc.aio.insecure_channel(de.target, options=options)
        channels.append(channel)
        call = federation_pb2_grpc.FederationServiceStub(channel).SubscribeLog(
            f.SubscribeLogRequest(origin="DE", from_index=from_index), metadata=md, timeout=120
        )
        streams.append(call)
        return call

    try:
        await start_all(de)
        await register_issuer(de)
        await _bulk_issue(de, BACKLOG)
        stalled = [subscribe(attacker, 0) for _ in range(STALLED)]
        for call in stalled:
            await asyncio.wait_for(call.initial_metadata(), 10)  # open; never read
        extra = subscribe(attacker, 0)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(extra.read(), 10)
        assert refused.value.code() == EXHAUSTED

        size = await de.log_size()
        follower = subscribe(honest, size, options=[("grpc.use_local_subchannel_pool", 1)])
        first = await asyncio.wait_for(follower.read(), 10)
        assert first.checkpoint.tree_size == size

        latencies = []
        cid = ""
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            cid = await de.issue()
            latencies.append(time.perf_counter() - t0)
        latencies.sort()
        p95 = latencies[int(len(latencies) * 0.95) - 1]
        assert p95 < 0.5, f"issue p95 {p95:.3f}s (max {latencies[-1]:.3f}s) with stalled readers"
        assert (await de.verify(cid)).status == STATUS.CREDENTIAL_STATUS_ACTIVE
        # The honest partner received every change as it happened.
        seen = first.checkpoint.tree_size
        while seen < size + ROUNDS:
            message = await asyncio.wait_for(follower.read(), 5)
            seen = max(seen, message.checkpoint.tree_size)
        assert not any(call.done() for call in stalled), "a stalled stream was dropped early"
        # A stalled stream, read now, was owed far more than a window: it
        # really was stalled, and still delivers everything in order.
        owed, expected = 0, 0
        while expected < size + ROUNDS:
            message = await asyncio.wait_for(stalled[0].read(), 10)
            owed += message.ByteSize()
            for entry in message.entries:
                assert entry.index == expected
                expected += 1
        assert owed > 4 * 64 * 2**10, f"only {owed} bytes were owed: the streams never stalled"
    finally:
        for call in streams:
            call.cancel()
        for channel in channels:
            await channel.close()
        await stop_all(*nodes.values())
