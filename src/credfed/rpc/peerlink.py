"""Calls to a partner node's FederationService: the grpc side of
:class:`credfed.federation.sync.PeerLink`.

Every unary call has a deadline; a subscription is re-opened at least every
``STREAM_DEADLINE`` seconds and dropped when the partner falls silent for
three keepalive periods. Partner errors become domain errors: NOT_FOUND stays
NotFoundError (the origin has no such credential or log), FAILED_PRECONDITION
becomes PreconditionError (e.g. a relay not linked to the origin), anything
else UnavailableError. Nothing the partner sends is trusted here: the
federation layer checks every signature and proof.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from credfed.config import Config
from credfed.crypto.tls import TlsFiles
from credfed.errors import ConfigError, NotFoundError, PreconditionError, UnavailableError
from credfed.federation.crossborder import LookupAnswer
from credfed.federation.peers import Link, PeerDirectory
from credfed.federation.replica import Delivered
from credfed.models import Envelope
from credfed.rpc.limits import MAX_MESSAGE_BYTES
from credfed.v1 import common_pb2 as c
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc
from credfed.verification import HolderAttribute

STREAM_DEADLINE = 600.0


def _envelope(pb: c.Envelope) -> Envelope:
    return Envelope(
        payload=bytes(pb.payload),
        payload_type=pb.payload_type,
        key_id=pb.key_id,
        signature=bytes(pb.signature),
    )


@dataclass(frozen=True, slots=True)
class PeerTls:
    """Mutual TLS towards one partner."""

    partner_ca: bytes
    client_key: bytes
    client_cert: bytes


def partner_links(config: Config, peers: PeerDirectory) -> dict[str, GrpcPeerLink]:
    """A link (not yet connected) to every partner this node is linked to,
    with mutual TLS towards the CA in the partner's pinned descriptor."""
    fed = config.federation
    keepalive = min(15.0, fed.checkpoint_interval)
    cas = {p.descriptor.country: p.descriptor.tls_ca_cert for p in peers.list()}
    return {
        link.country: GrpcPeerLink(
            link, fed.call_timeout, keepalive, _peer_tls(config, cas.get(link.country, ""))
        )
        for link in peers.links()
    }


def _peer_tls(config: Config, partner_ca: str) -> PeerTls | None:
    if config.plaintext:
        return None
    if not partner_ca:
        raise ConfigError("a pinned partner's descriptor carries no TLS CA: re-pair with it")
    files = TlsFiles(config.tls_dir)
    return PeerTls(partner_ca.encode(), files.read(files.client_key), files.read(files.client_cert))


class GrpcPeerLink:
    def __init__(
        self, link: Link, timeout: float, keepalive: float, tls: PeerTls | None = None
    ) -> None:
        self.name = link.country
        self._timeout = timeout
        self._silence = 3 * keepalive + timeout
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
            # grpc's default reconnect backoff grows to 120 s; a partner back
            # from maintenance should be picked up within seconds.
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.min_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 5_000),
        ]
        if tls is None:  # plaintext development (loopback only)
            self._channel = grpc.aio.insecure_channel(link.endpoint, options=options)
        else:
            # Mutual TLS: the partner's server certificate must chain to the CA
            # in its pinned descriptor; this node presents its client certificate.
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls.partner_ca,
                private_key=tls.client_key,
                certificate_chain=tls.client_cert,
            )
            self._channel = grpc.aio.secure_channel(link.endpoint, credentials, options=options)
        self._metadata = (("authorization", f"Bearer {link.token}"),)
        self._stub = federation_pb2_grpc.FederationServiceStub(self._channel)

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            self._fail(exc)

    def _fail(self, exc: grpc.aio.AioRpcError) -> NoReturn:
        code, details = exc.code(), (exc.details() or "")[:300]
        if code == grpc.StatusCode.NOT_FOUND:
            raise NotFoundError(details) from None
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            raise PreconditionError(f"{self.name}: {details}") from None
        raise UnavailableError(f"{self.name} answered {code.name}: {details}") from None

    async def checkpoint(self, origin: str) -> Envelope:
        got = await self._call(
            self._stub.GetLogCheckpoint, f.GetLogCheckpointRequest(origin=origin)
        )
        return _envelope(got.checkpoint.envelope)

    async def entries(self, origin: str, start: int, end: int) -> list[bytes]:
        got = await self._call(
            self._stub.GetLogEntries, f.GetLogEntriesRequest(origin=origin, start=start, end=end)
        )
        out = []
        for n, entry in enumerate(got.entries):
            if entry.index != start + n:
                raise UnavailableError(f"{self.name} sent entries out of order")
            out.append(bytes(entry.leaf))
        return out

    async def consistency(self, origin: str, old_size: int, new_size: int) -> list[bytes]:
        got = await self._call(
            self._stub.GetLogConsistencyProof,
            f.GetLogConsistencyProofRequest(origin=origin, old_size=old_size, new_size=new_size),
        )
        return [bytes(h) for h in got.proof.hashes]

    async def subscribe(
        self, origin: str, from_index: int
    ) -> AsyncIterator[tuple[Envelope, Delivered]]:
        call = self._stub.SubscribeLog(
            f.SubscribeLogRequest(origin=origin, from_index=from_index),
            metadata=self._metadata,
            timeout=STREAM_DEADLINE,
        )
        try:
            while True:
                try:
                    message = await asyncio.wait_for(call.read(), self._silence)
                except TimeoutError:
                    raise UnavailableError(f"{self.name} fell silent on the log stream") from None
                if message is grpc.aio.EOF:
                    return
                entries = list(message.entries)
                start = entries[0].index if entries else message.checkpoint.tree_size
                if any(e.index != start + n for n, e in enumerate(entries)):
                    raise UnavailableError(f"{self.name} sent stream entries out of order")
                yield (
                    _envelope(message.checkpoint.envelope),
                    Delivered(start, [bytes(e.leaf) for e in entries]),
                )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return  # the stream's own deadline: the caller re-subscribes
            self._fail(exc)
        finally:
            call.cancel()

    async def descriptor(self, origin: str) -> Envelope:
        got = await self._call(
            self._stub.GetNodeDescriptor, f.GetNodeDescriptorRequest(origin=origin)
        )
        return _envelope(got.descriptor)

    async def lookup(self, credential_id: str, attribute: HolderAttribute) -> LookupAnswer:
        request = f.LookupCredentialRequest(credential_id=credential_id)
        if attribute.birth_date is not None:
            request.birth_date = attribute.birth_date.isoformat()
        elif attribute.family_name is not None:
            request.family_name = attribute.family_name
        got = await self._call(self._stub.LookupCredential, request)
        return LookupAnswer(
            signed_record=_envelope(got.signed_record),
            entry_index=got.status_entry.index,
            leaf=bytes(got.status_entry.leaf),
            proof=[bytes(h) for h in got.inclusion_proof.hashes],
            checkpoint=_envelope(got.checkpoint.envelope),
        )

    async def report_fork(self, evidence: bytes) -> bool:
        got = await self._call(self._stub.ReportFork, f.ReportForkRequest(evidence=evidence))
        return bool(got.newly_recorded)

    async def recognition_rules(self, country: str) -> list[Envelope]:
        got = await self._call(
            self._stub.GetRecognitionRules, f.GetRecognitionRulesRequest(country=country)
        )
        return [_envelope(e) for e in got.rules]

    async def close(self) -> None:
        await self._channel.close()
