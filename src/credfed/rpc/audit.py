"""The audit interceptor: one audit record per audited call (see
:mod:`credfed.audit` for the record format and the group-commit window).

It sits outside :class:`credfed.rpc.auth.AuthInterceptor`, so calls refused
there (UNAUTHENTICATED, PERMISSION_DENIED) are recorded too. The caller is
the client authentication established; for a refused call, the client the
token belongs to (found by the token's hash, revoked and expired clients
included), or nobody for an unknown token.

Subjects come from the request's id fields (``credential_id``, ``rule_id``,
``rules[].rule_id``, ``issuer_id``), and from the response for the ids a call
created (an issued credential, a bulk import's ids, a supersession's
replacement). Holder fields (names, birth date) are never read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import grpc

from credfed import audit
from credfed import logging as clog
from credfed.models import Client, RoleKind
from credfed.rpc.auth import current_caller
from credfed.rpc.handlers import WrapperCache
from credfed.rpc_tokens import hash_token
from credfed.storage.base import Store

log = clog.get("credfed.rpc.audit")

_REGISTRY: Final = "/credfed.v1.RegistryService/"
_VERIFY: Final = "/credfed.v1.VerificationService/"
_FED: Final = "/credfed.v1.FederationService/"

#: (subject, count, outcome) of one record.
Item = tuple[tuple[str, ...], int, str]
#: Builds the records of a call from its request, its response (None when
#: the call failed) and its status code name.
Extract = Callable[[Any, Any, str], list[Item]]


def _credential(request: Any, response: Any, code: str) -> list[Item]:
    return [((audit.credential_subject(request.credential_id),), 1, code)]


def _issued(request: Any, response: Any, code: str) -> list[Item]:
    subject = () if response is None else (response.receipt.credential.credential_id,)
    return [(subject, 1, code)]


def _superseded(request: Any, response: Any, code: str) -> list[Item]:
    old = audit.credential_subject(request.credential_id)
    new = () if response is None else (response.replacement.credential_id,)
    return [((old, *new), 1, code)]


def _rule(request: Any, response: Any, code: str) -> list[Item]:
    return [((audit.rule_subject(request.rule.rule_id),), 1, code)]


def _rule_id(request: Any, response: Any, code: str) -> list[Item]:
    return [((audit.rule_subject(request.rule_id),), 1, code)]


def _rules(request: Any, response: Any, code: str) -> list[Item]:
    rules = request.rules
    subject = tuple(audit.rule_subject(r.rule_id) for r in rules[: audit.MAX_SUBJECTS])
    return [(subject, len(rules), code)]


def _issuer(request: Any, response: Any, code: str) -> list[Item]:
    return [((audit.issuer_subject(request.issuer_id),), 1, code)]


def _no_subject(request: Any, response: Any, code: str) -> list[Item]:
    return [((), 1, code)]


def _batch(request: Any, response: Any, code: str) -> list[Item]:
    """One record per item of an answered batch, with the item's outcome; one
    record for a batch refused as a whole (see credfed.audit)."""
    asked = request.requests
    if response is None or len(response.items) != len(asked):
        subject = tuple(
            dict.fromkeys(
                audit.credential_subject(item.credential_id) for item in asked[: audit.MAX_SUBJECTS]
            )
        )
        return [(subject, len(asked), code)]
    return [
        (
            (audit.credential_subject(item.credential_id),),
            1,
            "OK" if answer.WhichOneof("outcome") == "result" else answer.error.code or "UNKNOWN",
        )
        for item, answer in zip(asked, response.items, strict=True)
    ]


#: The audited methods: full method name -> how to build its records.
AUDITED: Final[dict[str, Extract]] = {
    _VERIFY + "Verify": _credential,
    _VERIFY + "VerifyBatch": _batch,
    _VERIFY + "WhereRecognised": _credential,
    _FED + "LookupCredential": _credential,
    _REGISTRY + "GetCredential": _credential,
    _REGISTRY + "IssueCredential": _issued,
    # BulkIssueCredentials streams its requests: see _Audited.stream_unary.
    _REGISTRY + "BulkIssueCredentials": _issued,
    _REGISTRY + "SupersedeCredential": _superseded,
    _REGISTRY + "SuspendCredential": _credential,
    _REGISTRY + "ReinstateCredential": _credential,
    _REGISTRY + "RevokeCredential": _credential,
    _REGISTRY + "AddRecognitionRule": _rule,
    _REGISTRY + "ImportRecognitionRules": _rules,
    _REGISTRY + "RemoveRecognitionRule": _rule_id,
    _REGISTRY + "RegisterIssuer": _issuer,
    _REGISTRY + "SuspendIssuer": _issuer,
    # Drops the in-memory copies of other countries' records (personal data).
    _REGISTRY + "PurgeCachedRecords": _no_subject,
}
_BULK: Final = _REGISTRY + "BulkIssueCredentials"


@dataclass(frozen=True, slots=True)
class _Actor:
    client_id: str
    client_name: str
    role: str
    country: str | None


_NOBODY: Final = _Actor("", "", audit.UNAUTHENTICATED, None)


class AuditInterceptor(grpc.aio.ServerInterceptor):
    """Queues one audit record per audited call on ``trail``.

    A peer client's country is the partner its token was issued to
    (``Client.partner``). ``partners``: the countries of the pinned partners,
    to tell which one a legacy peer client (no partner recorded) is from, by
    its name (see :func:`credfed.audit.peer_country`).
    """

    def __init__(
        self,
        trail: audit.AuditTrail,
        store: Store,
        country: str,
        partners: Callable[[], Iterable[str]],
    ) -> None:
        self._trail = trail
        self._store = store
        self._country = country
        self._partners = partners
        self._actors: dict[str, _Actor] = {}
        self._wrappers = WrapperCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        extract = AUDITED.get(method)
        if handler is None or extract is None:
            return handler
        return self._wrappers.get(method, handler, lambda: self._wrap(handler, method, extract))

    def _wrap(
        self, handler: grpc.RpcMethodHandler, method: str, extract: Extract
    ) -> grpc.RpcMethodHandler:
        action = method.rsplit("/", 1)[-1]
        des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                return await self._audited(
                    action, extract, request, context, inner_uu(request, context)
                )

            return grpc.unary_unary_rpc_method_handler(unary_unary, des, ser)
        if handler.stream_unary and method == _BULK:
            inner_su = handler.stream_unary

            async def stream_unary(requests: Any, context: Any) -> Any:
                drafts = [0]

                async def counted() -> AsyncIterator[Any]:
                    async for message in requests:
                        drafts[0] += len(message.drafts)
                        yield message

                def bulk(request: Any, response: Any, code: str) -> list[Item]:
                    ids = () if response is None else tuple(response.credential_ids)
                    return [(ids, drafts[0], code)]

                return await self._audited(
                    action, bulk, None, context, inner_su(counted(), context)
                )

            return grpc.stream_unary_rpc_method_handler(stream_unary, des, ser)
        return handler  # pragma: no cover - every audited method is unary or Bulk

    async def _audited(
        self, action: str, extract: Extract, request: Any, context: Any, call: Awaitable[Any]
    ) -> Any:
        response: Any = None
        code: str | None = None
        try:
            response = await call
            return response
        except grpc.aio.AbortError:
            raise  # context.abort(): the status code says what happened
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception:
            code = "UNKNOWN"  # a bug: grpc answers UNKNOWN
            raise
        finally:
            if code is None:
                status = context.code()
                code = status.name if isinstance(status, grpc.StatusCode) else "OK"
            await self._record(
                action=action,
                extract=extract,
                request=request,
                response=response if code == "OK" else None,
                code=code,
                context=context,
            )

    async def _record(
        self,
        *,
        action: str,
        extract: Extract,
        request: Any,
        response: Any,
        code: str,
        context: Any,
    ) -> None:
        at = datetime.now(UTC)
        try:
            actor = await self._actor(context)
            items = extract(request, response, code)
        except Exception as exc:  # a bug here must not fail the call, nor go unrecorded
            log.error("audit.extract_failed", action=action, error=type(exc).__name__)
            actor, items = _NOBODY, [((), 1, code)]
        for subject, count, outcome in items:
            await self._trail.record(
                audit.AuditEntry(
                    at=at,
                    client_id=actor.client_id,
                    client_name=actor.client_name,
                    role=actor.role,
                    country=actor.country,
                    action=action,
                    subject=subject,
                    outcome=outcome,
                    count=count,
                )
            )

    async def _actor(self, context: Any) -> _Actor:
        try:
            client: Client | None = current_caller()
        except LookupError:  # authentication refused the call
            client = await self._token_owner(context)
        if client is None:
            return _NOBODY
        actor = self._actors.get(client.client_id)
        if actor is None or actor.client_name != client.name:
            if client.role.kind is not RoleKind.PEER:
                country: str | None = self._country
            elif client.partner is not None:
                country = client.partner  # recorded at token creation, bound to its certificate
            else:  # a peer token from before partners were recorded
                country = audit.peer_country(client.name, self._partners())
            actor = _Actor(client.client_id, client.name, str(client.role), country)
            if len(self._actors) > 10_000:
                self._actors.clear()
            self._actors[client.client_id] = actor
        return actor

    async def _token_owner(self, context: Any) -> Client | None:
        """The client a refused call's token belongs to, if any."""
        for key, value in context.invocation_metadata() or ():
            if key != "authorization":
                continue
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token or len(token) > 128:
                return None
            try:
                return await self._store.get_client_by_token_hash(hash_token(token))
            except Exception as exc:  # the record is still written, without the client
                log.warning("audit.caller_unknown", error=type(exc).__name__)
                return None
        return None
