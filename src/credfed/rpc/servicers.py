"""gRPC servicers: validate, call the domain, convert. No business rules here."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from credfed import codelists, ids, validation
from credfed.clock import Clock
from credfed.errors import CredfedError, NotFoundError, PreconditionError, ValidationError
from credfed.federation.crossborder import CrossBorder
from credfed.federation.evidence import MAX_EVIDENCE
from credfed.models import CredentialDraft, SignedCheckpoint, Status
from credfed.recognition.service import Recognition
from credfed.records import Record
from credfed.registry import Receipt, Registry
from credfed.rpc import convert
from credfed.rpc import convert_recognition as cr
from credfed.rpc.auth import current_role
from credfed.rpc.errors import status_for
from credfed.v1 import common_pb2 as c
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc, registry_pb2_grpc, verification_pb2_grpc
from credfed.v1 import recognition_pb2 as rc
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v
from credfed.verification import HolderAttribute, StatusSource, Verification, Verifier

if TYPE_CHECKING:
    from credfed.node import Node

MAX_BATCH = 1000
Context = Any  # grpc.aio.ServicerContext (grpc ships no types)
_T = TypeVar("_T")


def rpc(fn: Callable[..., Awaitable[_T]]) -> Callable[..., Awaitable[_T]]:
    """Turn domain errors into the status code of the one error table."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: Context) -> _T:
        try:
            return await fn(self, request, context)
        except CredfedError as exc:
            await context.abort(status_for(exc), str(exc))
            raise  # pragma: no cover - abort raises

    return wrapper


def _receipt(receipt: Receipt) -> r.ChangeReceipt:
    return r.ChangeReceipt(
        credential=convert.credential(receipt.credential),
        entry=c.LogEntry(index=receipt.entry.index, leaf=receipt.entry.leaf),
        checkpoint=convert.checkpoint(receipt.checkpoint),
    )


def _credential_id(
    value: str, origin: str, field: str = "credential_id", *, foreign_ok: bool = False
) -> str:
    credential_id = ids.parse_credential_id(convert.bounded(value, field), field)
    country = credential_id[:2]  # the canonical form starts with the country
    if country != origin and not foreign_ok:
        raise PreconditionError(
            f"{field}: {country} credentials are not held at this node"
            f" ({origin}); cross-border lookups need federation"
        )
    return credential_id


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(
        self,
        registry: Registry,
        origin: str,
        recognition: Recognition,
        crossborder: CrossBorder | None = None,
    ) -> None:
        self._registry = registry
        self._origin = origin
        self._recognition = recognition
        self._crossborder = crossborder

    @rpc
    async def RegisterIssuer(
        self, request: r.RegisterIssuerRequest, context: Context
    ) -> r.RegisterIssuerResponse:
        issuer = await self._registry.register_issuer(
            validation.issuer_id(request.issuer_id),
            validation.text(convert.bounded(request.name, "name"), "name"),
            validation.sectors(list(request.sectors)),
        )
        return r.RegisterIssuerResponse(issuer=convert.issuer(issuer))

    @rpc
    async def ListIssuers(
        self, request: r.ListIssuersRequest, context: Context
    ) -> r.ListIssuersResponse:
        issuers = await self._registry.list_issuers()
        return r.ListIssuersResponse(issuers=[convert.issuer(i) for i in issuers])

    @rpc
    async def SuspendIssuer(
        self, request: r.SuspendIssuerRequest, context: Context
    ) -> r.SuspendIssuerResponse:
        issuer = await self._registry.suspend_issuer(validation.issuer_id(request.issuer_id))
        return r.SuspendIssuerResponse(issuer=convert.issuer(issuer))

    @rpc
    async def IssueCredential(
        self, request: r.IssueCredentialRequest, context: Context
    ) -> r.IssueCredentialResponse:
        draft = convert.draft(request.draft, "draft")
        receipt = await self._registry.issue(current_role(), draft)
        return r.IssueCredentialResponse(receipt=_receipt(receipt))

    @rpc
    async def BulkIssueCredentials(
        self, request_iterator: AsyncIterator[r.BulkIssueCredentialsRequest], context: Context
    ) -> r.BulkIssueCredentialsResponse:
        async def batches() -> AsyncIterator[Sequence[CredentialDraft]]:
            seen = 0
            async for message in request_iterator:
                if len(message.drafts) > MAX_BATCH:
                    raise ValidationError("drafts", f"more than {MAX_BATCH} drafts in one message")
                yield [
                    convert.draft(d, f"drafts[{seen + n}]") for n, d in enumerate(message.drafts)
                ]
                seen += len(message.drafts)

        result = await self._registry.bulk_issue(current_role(), batches())
        return r.BulkIssueCredentialsResponse(
            credential_ids=result.credential_ids,
            checkpoint=convert.checkpoint(result.checkpoint) if result.checkpoint else None,
        )

    @rpc
    async def GetCredential(
        self, request: r.GetCredentialRequest, context: Context
    ) -> r.GetCredentialResponse:
        cid = _credential_id(request.credential_id, self._origin)
        credential = await self._registry.get_credential(current_role(), cid)
        return r.GetCredentialResponse(credential=convert.credential(credential))

    @rpc
    async def SuspendCredential(
        self, request: r.SuspendCredentialRequest, context: Context
    ) -> r.SuspendCredentialResponse:
        cid = _credential_id(request.credential_id, self._origin)
        receipt = await self._registry.suspend(
            current_role(),
            cid,
            validation.reason(request.reason, Status.SUSPENDED),
            validation.iso_date(request.until, "until", required=False),
            validation.case_ref(request.appeal_case_ref),
        )
        return r.SuspendCredentialResponse(receipt=_receipt(receipt))

    @rpc
    async def ReinstateCredential(
        self, request: r.ReinstateCredentialRequest, context: Context
    ) -> r.ReinstateCredentialResponse:
        cid = _credential_id(request.credential_id, self._origin)
        receipt = await self._registry.reinstate(
            current_role(),
            cid,
            validation.reason(request.reason, Status.REINSTATED),
            validation.case_ref(request.appeal_case_ref),
        )
        return r.ReinstateCredentialResponse(receipt=_receipt(receipt))

    @rpc
    async def RevokeCredential(
        self, request: r.RevokeCredentialRequest, context: Context
    ) -> r.RevokeCredentialResponse:
        cid = _credential_id(request.credential_id, self._origin)
        receipt = await self._registry.revoke(
            current_role(), cid, validation.reason(request.reason, Status.REVOKED)
        )
        return r.RevokeCredentialResponse(receipt=_receipt(receipt))

    @rpc
    async def SupersedeCredential(
        self, request: r.SupersedeCredentialRequest, context: Context
    ) -> r.SupersedeCredentialResponse:
        cid = _credential_id(request.credential_id, self._origin)
        reason = validation.reason(request.reason, Status.SUPERSEDED)
        replacement = convert.draft(request.replacement, "replacement")
        receipt, new = await self._registry.supersede(current_role(), cid, reason, replacement)
        return r.SupersedeCredentialResponse(
            superseded=_receipt(receipt), replacement=convert.credential(new)
        )

    # -- recognition rules (admin only, by the role table) ---------------------------

    @rpc
    async def AddRecognitionRule(
        self, request: r.AddRecognitionRuleRequest, context: Context
    ) -> r.AddRecognitionRuleResponse:
        draft = cr.rule_draft(request.rule, "rule", self._origin)
        signed = await _pb_fields(self._recognition.add(draft))
        return r.AddRecognitionRuleResponse(
            rule=cr.rule_pb(signed.rule), signed_rule=convert.envelope(signed.envelope)
        )

    @rpc
    async def ImportRecognitionRules(
        self, request: r.ImportRecognitionRulesRequest, context: Context
    ) -> r.ImportRecognitionRulesResponse:
        if len(request.rules) > MAX_BATCH:
            raise ValidationError("rules", f"at most {MAX_BATCH} per call")
        drafts = [
            cr.rule_draft(rule, f"rules[{n}]", self._origin) for n, rule in enumerate(request.rules)
        ]
        signed = await _pb_fields(self._recognition.add_many(drafts))
        return r.ImportRecognitionRulesResponse(rules=[cr.rule_pb(s.rule) for s in signed])

    @rpc
    async def ListRecognitionRules(
        self, request: r.ListRecognitionRulesRequest, context: Context
    ) -> r.ListRecognitionRulesResponse:
        return r.ListRecognitionRulesResponse(
            rules=[cr.rule_pb(s.rule) for s in self._recognition.rules()]
        )

    @rpc
    async def RemoveRecognitionRule(
        self, request: r.RemoveRecognitionRuleRequest, context: Context
    ) -> r.RemoveRecognitionRuleResponse:
        rule_id = convert.bounded(request.rule_id, "rule_id").strip()
        if not rule_id:
            raise ValidationError("rule_id", "is required")
        signed = await self._recognition.remove(rule_id)
        return r.RemoveRecognitionRuleResponse(rule=cr.rule_pb(signed.rule))

    @rpc
    async def PurgeCachedRecords(
        self, request: r.PurgeCachedRecordsRequest, context: Context
    ) -> r.PurgeCachedRecordsResponse:
        purged = self._crossborder.purge() if self._crossborder is not None else 0
        return r.PurgeCachedRecordsResponse(purged=purged)


async def _pb_fields(call: Awaitable[_T]) -> _T:
    """Name a refused field as the request does (the message is flat where
    the domain nests the match criteria)."""
    try:
        return await call
    except ValidationError as exc:
        raise ValidationError(cr.pb_field(exc.field), exc.message) from None


class VerifyOutcomes(Protocol):
    """Told of every Verify answer and VerifyBatch item (metrics)."""

    def found(self, found: Verification) -> None: ...

    def failed(self, code: Any) -> None: ...  # a grpc.StatusCode


class _Unobserved:
    def found(self, found: Verification) -> None:
        pass

    def failed(self, code: Any) -> None:
        pass


class VerificationServicer(verification_pb2_grpc.VerificationServiceServicer):
    """Local verify, and cross-border verify of ids of other countries."""

    def __init__(
        self,
        verifier: Verifier,
        crossborder: CrossBorder,
        recognition: Recognition,
        origin: str,
        clock: Clock,
        *,
        outcomes: VerifyOutcomes | None = None,
    ) -> None:
        self._outcomes = outcomes or _Unobserved()
        self._verifier = verifier
        self._crossborder = crossborder
        self._recognition = recognition
        self._origin = origin
        self._clock = clock
        # The latest checkpoint changes only with the log; converting it once
        # per checkpoint instead of once per answer shows in verify profiles.
        # One per origin (this node's, and each replica's for cross-border
        # answers), so bounded by the number of pinned partners.
        self._checkpoint_pb: dict[str, tuple[SignedCheckpoint, c.SignedCheckpoint]] = {}

    def _checkpoint(self, signed: SignedCheckpoint) -> c.SignedCheckpoint:
        origin = signed.checkpoint.origin
        cached = self._checkpoint_pb.get(origin)
        if cached is None or (cached[0] is not signed and cached[0] != signed):
            cached = self._checkpoint_pb[origin] = (signed, convert.checkpoint(signed))
        return cached[1]

    def _result(self, found: Verification) -> v.VerificationResult:
        result = _result(found, self._checkpoint(found.checkpoint))
        record = found.record
        # Rules in force now: a rule change applies to the next answer.
        decision = self._recognition.decide(
            record.origin, record.qualification, self._clock().date()
        )
        result.recognition.CopyFrom(cr.decision_pb(decision))
        result.labels.CopyFrom(_labels(record))
        return result

    @rpc
    async def WhereRecognised(
        self, request: v.WhereRecognisedRequest, context: Context
    ) -> v.WhereRecognisedResponse:
        found = await self._verify(request, "")  # id + holder attribute, like Verify
        record = found.record
        decisions = self._recognition.where(
            record.origin, record.qualification, self._clock().date()
        )
        return v.WhereRecognisedResponse(
            credential_id=found.credential_id,
            decisions=[cr.decision_pb(d) for d in decisions],
        )

    async def _verify(
        self, request: v.VerifyRequest | v.WhereRecognisedRequest, prefix: str
    ) -> Verification:
        cid, attribute = _parse_lookup(self._origin, request, prefix, foreign_ok=True)
        if cid[:2] != self._origin:
            return await self._crossborder.verify(cid, attribute)
        return await self._verifier.verify(cid, attribute)

    @rpc
    async def Verify(self, request: v.VerifyRequest, context: Context) -> v.VerifyResponse:
        try:
            found = await self._verify(request, "")
        except CredfedError as exc:
            self._outcomes.failed(status_for(exc))
            raise
        self._outcomes.found(found)
        return v.VerifyResponse(result=self._result(found))

    @rpc
    async def VerifyBatch(
        self, request: v.VerifyBatchRequest, context: Context
    ) -> v.VerifyBatchResponse:
        if len(request.requests) > MAX_BATCH:
            raise ValidationError("requests", f"at most {MAX_BATCH} per call")
        items = []
        for n, item in enumerate(request.requests):
            try:
                found = await self._verify(item, f"requests[{n}].")
                items.append(v.VerifyBatchItem(result=self._result(found)))
                self._outcomes.found(found)
            except CredfedError as exc:
                self._outcomes.failed(status_for(exc))
                error = v.VerifyBatchItemError(code=status_for(exc).name, message=str(exc))
                if isinstance(exc, ValidationError):
                    error.field = exc.field
                items.append(v.VerifyBatchItem(error=error))
        return v.VerifyBatchResponse(items=items)

    @rpc
    async def GetCheckpoint(
        self, request: v.GetCheckpointRequest, context: Context
    ) -> v.GetCheckpointResponse:
        return v.GetCheckpointResponse(
            checkpoint=convert.checkpoint(await self._verifier.checkpoint())
        )

    @rpc
    async def GetConsistencyProof(
        self, request: v.GetConsistencyProofRequest, context: Context
    ) -> v.GetConsistencyProofResponse:
        proof, signed = await self._verifier.consistency(request.old_size, request.new_size)
        new_size = signed.checkpoint.tree_size if signed else request.new_size
        return v.GetConsistencyProofResponse(
            proof=c.ConsistencyProof(old_size=request.old_size, new_size=new_size, hashes=proof),
            checkpoint=convert.checkpoint(signed) if signed else None,
        )


def _parse_lookup(
    origin: str,
    request: v.VerifyRequest | v.WhereRecognisedRequest | f.LookupCredentialRequest,
    prefix: str,
    *,
    foreign_ok: bool,
) -> tuple[str, HolderAttribute]:
    """Validate an id + holder attribute request."""
    cid = _credential_id(
        request.credential_id, origin, prefix + "credential_id", foreign_ok=foreign_ok
    )
    which = request.WhichOneof("holder_attribute")
    if which == "birth_date":
        attribute = HolderAttribute(
            birth_date=validation.required_date(request.birth_date, prefix + "birth_date")
        )
    elif which == "family_name":
        name = convert.bounded(request.family_name, prefix + "family_name")
        attribute = HolderAttribute(
            family_name=validation.text(name, prefix + "family_name", max_len=validation.MAX_NAME)
        )
    else:
        raise ValidationError(
            prefix + "holder_attribute", "give the holder's birth_date or family_name"
        )
    return cid, attribute


def _labels(record: Record) -> rc.QualificationLabels:
    q = record.qualification
    return rc.QualificationLabels(
        isco_label=codelists.isco_label(q.isco_code) or "",
        eqf_level_descriptor=codelists.EQF_LEVELS.get(q.eqf_level, ""),
        sector_label=codelists.sector_label(q.sector),
    )


_SOURCE_PB = {
    StatusSource.ORIGIN: v.STATUS_SOURCE_ORIGIN,
    StatusSource.REPLICA: v.STATUS_SOURCE_REPLICA,
    StatusSource.CACHED_RECORD: v.STATUS_SOURCE_CACHED_RECORD,
}


def _result(found: Verification, checkpoint: c.SignedCheckpoint) -> v.VerificationResult:
    record = found.record
    cp = found.checkpoint.checkpoint
    return v.VerificationResult(
        credential_id=found.credential_id,
        status=(
            c.CREDENTIAL_STATUS_UNKNOWN if found.status is None else convert.STATUS_PB[found.status]
        ),
        status_detail=convert.status_detail(found.state),
        holder=convert.holder(record),
        qualification=convert.qualification(record),
        issuer_id=record.issuer_id,
        issuer_name=record.issuer_name,
        issued_on=record.issued_on.isoformat(),
        valid_until=record.valid_until.isoformat() if record.valid_until else "",
        supersedes=record.supersedes or "",
        signed_record=convert.envelope(found.signed_record),
        provenance=v.Provenance(
            origin=record.origin,
            # At the origin, this node signed the record itself: it serves the
            # signed bytes for the client to check and does not re-check them.
            signature_checked=found.signature_checked,
            status_as_of=convert.timestamp(cp.timestamp),
            source=_SOURCE_PB[found.source],
            data_age_seconds=found.data_age_seconds,
            record_cached=found.record_cached,
        ),
        status_entry=c.LogEntry(index=found.entry_index, leaf=found.leaf),
        inclusion_proof=c.InclusionProof(
            leaf_index=found.entry_index, tree_size=cp.tree_size, hashes=found.proof
        ),
        checkpoint=checkpoint,
    )


class FederationServicer(federation_pb2_grpc.FederationServiceServicer):
    """What partner nodes (role ``peer``) may ask: descriptors, credentials
    (id + holder attribute, as an employer; relayed once to a linked origin),
    status logs (this node's and the ones it replicates) and fork evidence."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._log = node.log_server
        self._origin = node.config.country

    @rpc
    async def GetNodeDescriptor(
        self, request: f.GetNodeDescriptorRequest, context: Context
    ) -> f.GetNodeDescriptorResponse:
        origin = convert.bounded(request.origin, "origin")
        if origin in ("", self._origin):
            return f.GetNodeDescriptorResponse(descriptor=convert.envelope(self._node.descriptor))
        for peer in self._node.peers.list():
            if peer.descriptor.country == origin:
                return f.GetNodeDescriptorResponse(descriptor=convert.envelope(peer.envelope))
        raise NotFoundError(f"this node has pinned no descriptor of {origin[:8]!r}")

    @rpc
    async def LookupCredential(
        self, request: f.LookupCredentialRequest, context: Context
    ) -> f.LookupCredentialResponse:
        cid, attribute = _parse_lookup(self._origin, request, "", foreign_ok=True)
        if cid[:2] != self._origin:
            replicator = self._node.replicator
            if replicator is None:
                raise PreconditionError("credential_id: this node relays no lookups")
            # Relayed as received: the asking node checks every signature itself.
            got = await replicator.forward_lookup(cid[:2], cid, attribute)
            return f.LookupCredentialResponse(
                signed_record=convert.envelope(got.signed_record),
                status_entry=c.LogEntry(index=got.entry_index, leaf=got.leaf),
                inclusion_proof=c.InclusionProof(leaf_index=got.entry_index, hashes=got.proof),
                checkpoint=c.SignedCheckpoint(envelope=convert.envelope(got.checkpoint)),
            )
        found = await self._node.verifier.verify(cid, attribute)
        cp = found.checkpoint.checkpoint
        return f.LookupCredentialResponse(
            signed_record=convert.envelope(found.signed_record),
            status=convert.status_detail(found.state),
            status_entry=c.LogEntry(index=found.entry_index, leaf=found.leaf),
            inclusion_proof=c.InclusionProof(
                leaf_index=found.entry_index, tree_size=cp.tree_size, hashes=found.proof
            ),
            checkpoint=convert.checkpoint(found.checkpoint),
        )

    @rpc
    async def GetLogCheckpoint(
        self, request: f.GetLogCheckpointRequest, context: Context
    ) -> f.GetLogCheckpointResponse:
        checkpoint = await self._log.checkpoint(convert.bounded(request.origin, "origin"))
        return f.GetLogCheckpointResponse(checkpoint=convert.checkpoint(checkpoint))

    @rpc
    async def GetLogEntries(
        self, request: f.GetLogEntriesRequest, context: Context
    ) -> f.GetLogEntriesResponse:
        origin = convert.bounded(request.origin, "origin")
        leaves = await self._log.entries(origin, request.start, request.end)
        return f.GetLogEntriesResponse(
            entries=[c.LogEntry(index=request.start + n, leaf=x) for n, x in enumerate(leaves)]
        )

    @rpc
    async def GetLogConsistencyProof(
        self, request: f.GetLogConsistencyProofRequest, context: Context
    ) -> f.GetLogConsistencyProofResponse:
        origin = convert.bounded(request.origin, "origin")
        proof = await self._log.consistency(origin, request.old_size, request.new_size)
        return f.GetLogConsistencyProofResponse(
            proof=c.ConsistencyProof(
                old_size=request.old_size, new_size=request.new_size, hashes=proof
            )
        )

    async def SubscribeLog(
        self, request: f.SubscribeLogRequest, context: Context
    ) -> AsyncIterator[f.SubscribeLogResponse]:
        try:
            origin = convert.bounded(request.origin, "origin")
            async for update in self._log.subscribe(origin, request.from_index):
                yield f.SubscribeLogResponse(
                    checkpoint=convert.checkpoint(update.checkpoint),
                    entries=[
                        c.LogEntry(index=update.start + n, leaf=x)
                        for n, x in enumerate(update.leaves)
                    ],
                )
        except CredfedError as exc:
            await context.abort(status_for(exc), str(exc))

    @rpc
    async def GetRecognitionRules(
        self, request: f.GetRecognitionRulesRequest, context: Context
    ) -> f.GetRecognitionRulesResponse:
        country = convert.bounded(request.country, "country").strip().upper() or self._origin
        if not ids.is_country_code(country):
            raise ValidationError("country", "must be a two-letter country code")
        envelopes = self._node.recognition.served(country)
        return f.GetRecognitionRulesResponse(rules=[convert.envelope(e) for e in envelopes])

    @rpc
    async def ReportFork(
        self, request: f.ReportForkRequest, context: Context
    ) -> f.ReportForkResponse:
        if len(request.evidence) > MAX_EVIDENCE:
            raise ValidationError("evidence", f"larger than {MAX_EVIDENCE} bytes")
        fresh = await self._node.replicas.record_fork(bytes(request.evidence))
        return f.ReportForkResponse(newly_recorded=fresh)
