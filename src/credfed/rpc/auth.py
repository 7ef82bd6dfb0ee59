"""Authentication and the role check of every RPC.

Clients send ``authorization: Bearer <token>``. Only SHA-256 of a token is
stored (tokens are 256-bit random, so a slow hash adds nothing). The
:data:`METHOD_ROLES` table lists, for every method the server exposes, the
roles that may call it; a method missing from the table is refused, so a new
RPC cannot ship unguarded.

On the mutual-TLS federation port a ``peer`` token is bound to the partner
it was issued to (``Client.partner``): the client certificate must have been
issued by that partner's pinned CA (:mod:`credfed.rpc.peerid`), so FR's
certificate does not work with the token this node issued to PL.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import grpc

from credfed import clock
from credfed import logging as clog
from credfed.crypto.tls import certificate_digest
from credfed.errors import PermissionDeniedError, UnauthenticatedError
from credfed.models import Client, Role, RoleKind
from credfed.rpc.errors import status_for
from credfed.rpc.handlers import WrapperCache
from credfed.rpc.peerid import PartnerCAs
from credfed.rpc_tokens import TOKEN_PREFIX, hash_token
from credfed.storage.base import Store

_R = RoleKind
_REGISTRY = "/credfed.v1.RegistryService/"
_VERIFY = "/credfed.v1.VerificationService/"
_FED = "/credfed.v1.FederationService/"
ADMIN_ONLY: Final = frozenset({_R.ADMIN})
ADMIN_OR_ISSUER: Final = frozenset({_R.ADMIN, _R.ISSUER})
VERIFIERS: Final = frozenset({_R.ADMIN, _R.VERIFIER})
PEERS: Final = frozenset({_R.PEER})

#: None means public: health checks and reflection carry no data.
METHOD_ROLES: Final[dict[str, frozenset[RoleKind] | None]] = {
    _REGISTRY + "RegisterIssuer": ADMIN_ONLY,
    _REGISTRY + "ListIssuers": ADMIN_ONLY,
    _REGISTRY + "SuspendIssuer": ADMIN_ONLY,
    _REGISTRY + "IssueCredential": ADMIN_OR_ISSUER,
    _REGISTRY + "BulkIssueCredentials": ADMIN_OR_ISSUER,
    _REGISTRY + "GetCredential": ADMIN_OR_ISSUER,
    _REGISTRY + "SuspendCredential": ADMIN_OR_ISSUER,
    _REGISTRY + "ReinstateCredential": ADMIN_OR_ISSUER,
    _REGISTRY + "RevokeCredential": ADMIN_OR_ISSUER,
    _REGISTRY + "SupersedeCredential": ADMIN_OR_ISSUER,
    _REGISTRY + "AddRecognitionRule": ADMIN_ONLY,
    _REGISTRY + "ImportRecognitionRules": ADMIN_ONLY,
    _REGISTRY + "ListRecognitionRules": ADMIN_ONLY,
    _REGISTRY + "RemoveRecognitionRule": ADMIN_ONLY,
    _REGISTRY + "PurgeCachedRecords": ADMIN_ONLY,
    _VERIFY + "Verify": VERIFIERS,
    _VERIFY + "VerifyBatch": VERIFIERS,
    _VERIFY + "GetCheckpoint": VERIFIERS,
    _VERIFY + "GetConsistencyProof": VERIFIERS,
    _VERIFY + "WhereRecognised": VERIFIERS,
    _FED + "GetNodeDescriptor": PEERS,
    _FED + "LookupCredential": PEERS,
    _FED + "GetLogCheckpoint": PEERS,
    _FED + "GetLogEntries": PEERS,
    _FED + "GetLogConsistencyProof": PEERS,
    _FED + "SubscribeLog": PEERS,
    _FED + "ReportFork": PEERS,
    _FED + "GetRecognitionRules": PEERS,
    "/grpc.health.v1.Health/Check": None,
    "/grpc.health.v1.Health/Watch": None,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": None,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": None,
}

_caller: contextvars.ContextVar[Client] = contextvars.ContextVar("credfed_caller")
log = clog.get("credfed.rpc.auth")


def current_caller() -> Client:
    """The authenticated client of the RPC being served."""
    return _caller.get()


def current_role() -> Role:
    return _caller.get().role


#: Default lifetime, in seconds, of the authenticator's token → client cache.
#: A revocation (``credfed token revoke`` writes the database, possibly from
#: another process) takes effect at a running node within this time; expiry
#: takes effect exactly (checked on every call, cached or not).
CACHE_SECONDS: Final[float] = 5.0


class Authenticator:
    """Resolves bearer tokens to clients, with a short cache so that the hot
    path (verify) does not pay a database read per call.

    Refused with UNAUTHENTICATED: an unknown token, a revoked client's token
    ("token revoked") and an expired one ("token expired"). The token itself
    is never logged nor put in an error message.

    Expiry is checked against ``now`` on every call, from the cached client
    too, and a cache entry never outlives the token's expiry. Revocation is
    seen when the client is read again from the store: within
    ``cache_seconds`` (default :data:`CACHE_SECONDS`, 5 s) of the revocation
    being committed.
    """

    def __init__(
        self,
        store: Store,
        cache_seconds: float | None = None,
        now: clock.Clock = clock.utc_now,
    ) -> None:
        self._store = store
        self._ttl = CACHE_SECONDS if cache_seconds is None else cache_seconds
        self._now = now
        self._cache: dict[bytes, tuple[float, Client]] = {}

    async def authenticate(
        self,
        metadata: tuple[tuple[str, str | bytes], ...] | None,
        certificate: bytes | None = None,
    ) -> Client:
        """The client of a call: by its bearer token, or, on the
        client-certificate port, by the certificate the TLS layer verified
        (``certificate``, PEM) -- then no token is read."""
        if certificate is not None:
            digest = certificate_digest(certificate)
        else:
            digest = hash_token(_bearer(metadata))
        mono = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > mono:
            client, cached = hit[1], True
        else:
            self._cache.pop(digest, None)
            found = await self._store.get_client_by_token_hash(digest)
            if found is None:
                what = "client certificate" if certificate is not None else "API token"
                raise UnauthenticatedError(f"unknown {what}")
            client, cached = found, False
        # Expiry is checked on every call, from the cache too.
        now = self._now()
        refusal = client.refusal(now)
        if refusal is not None:
            self._cache.pop(digest, None)
            log.info("auth.refused", client_id=client.client_id, reason=refusal)
            raise UnauthenticatedError(refusal)
        if not cached:
            ttl = self._ttl
            if client.expires_at is not None:
                ttl = min(ttl, (client.expires_at - now).total_seconds())
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (mono + ttl, client)
        return client


def _bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
                raise UnauthenticatedError("authorization must be 'Bearer cf_…'")
            if len(token) > 128:
                raise UnauthenticatedError("token too long")
            return token
    raise UnauthenticatedError("missing authorization metadata (Bearer token)")


def authorize(method: str, role: Role) -> None:
    allowed = METHOD_ROLES.get(method)
    if allowed is None or role.kind not in allowed:
        raise PermissionDeniedError(f"role {role.kind.value} may not call {method}")


def bind_partner(client: Client, certificate: bytes, partners: PartnerCAs) -> None:
    """Refuse a peer token presented with a certificate of another
    partner's CA than the one of the partner it was issued to."""
    if client.partner is None:
        raise PermissionDeniedError(
            "this peer token records no partner country (created before tokens were bound"
            " to certificates): recreate it with 'credfed token create --role peer --partner CC'"
        )
    countries = partners.countries_of(certificate)
    if client.partner not in countries:
        log.warning(
            "auth.partner_mismatch",
            client_id=client.client_id,
            partner=client.partner,
            certificate_of=",".join(sorted(countries)) or None,
        )
        of = f"{'/'.join(sorted(countries))}'s CA" if countries else "no pinned partner's CA"
        raise PermissionDeniedError(
            f"peer token issued to {client.partner} used with a certificate of {of}"
        )


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates and authorises every call before the servicer runs.

    ``by_certificate``: the port requires a client certificate of this
    node's CA, and the client is the one registered for that certificate.
    ``partners``: the mutual-TLS federation port -- a peer token works only
    with a certificate of its partner's CA (see :func:`bind_partner`)."""

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        by_certificate: bool = False,
        partners: PartnerCAs | None = None,
    ) -> None:
        self._auth = authenticator
        self._by_certificate = by_certificate
        self._partners = partners
        self._cache = WrapperCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if method in METHOD_ROLES and METHOD_ROLES[method] is None:
            return handler
        return self._cache.get(
            method,
            handler,
            lambda: _guarded(handler, method, self._auth, self._by_certificate, self._partners),
        )


def _peer_certificate(context: Any) -> bytes:
    certs = (context.auth_context() or {}).get("x509_pem_cert") or []
    if not certs:
        raise UnauthenticatedError("no client certificate")
    cert: bytes = certs[0]
    return cert


def _guarded(
    handler: grpc.RpcMethodHandler,
    method: str,
    auth: Authenticator,
    by_certificate: bool,
    partners: PartnerCAs | None,
) -> grpc.RpcMethodHandler:
    async def check(context: Any) -> None:
        try:
            certificate = _peer_certificate(context) if by_certificate else None
            client = await auth.authenticate(context.invocation_metadata(), certificate)
            if method not in METHOD_ROLES:
                raise PermissionDeniedError(f"{method} is not exposed")
            authorize(method, client.role)
            if partners is not None and client.role.kind is RoleKind.PEER:
                bind_partner(client, _peer_certificate(context), partners)
        except (UnauthenticatedError, PermissionDeniedError) as exc:
            await context.abort(status_for(exc), str(exc))
        _caller.set(client)

    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: Any) -> Any:
            await check(context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, des, ser)
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: Any) -> Any:
            await check(context)
            return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, des, ser)
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            await check(context)
            async for response in inner_us(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, des, ser)
    inner_ss = handler.stream_stream

    async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
        await check(context)
        async for response in inner_ss(requests, context):
            yield response

    return grpc.stream_stream_rpc_method_handler(stream_stream, des, ser)
