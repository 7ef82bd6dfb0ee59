"""Server assembly: servicers, health, reflection, interceptors, limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from credfed import logging as clog
from credfed.config import check_listen
from credfed.errors import ConfigError, CredfedError
from credfed.federation.serving import LogServer
from credfed.federation.sync import Replicator
from credfed.node import Node
from credfed.rpc.auth import Authenticator, AuthInterceptor
from credfed.rpc.limits import MAX_MESSAGE_BYTES
from credfed.rpc.peerlink import GrpcPeerLink
from credfed.rpc.servicers import FederationServicer, RegistryServicer, VerificationServicer
from credfed.v1 import (
    federation_pb2,
    federation_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)

FEDERATION_SERVICE = federation_pb2.DESCRIPTOR.services_by_name["FederationService"].full_name
SERVICE_NAMES = (
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
    verification_pb2.DESCRIPTOR.services_by_name["VerificationService"].full_name,
    federation_pb2.DESCRIPTOR.services_by_name["FederationService"].full_name,
)
log = clog.get("credfed.rpc")


class AccessLogInterceptor(grpc.aio.ServerInterceptor):
    """One log line per call: method, outcome, duration. Requests and
    responses are never logged (they hold personal data)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or (not handler.unary_unary and not handler.stream_unary):
            return handler
        inner = handler.unary_unary or handler.stream_unary
        factory = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary
            else grpc.stream_unary_rpc_method_handler
        )

        async def logged(request: Any, context: Any) -> Any:
            start = time.perf_counter()
            crashed: str | None = None
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise  # context.abort(): the status code says what happened
            except Exception as exc:
                # A bug: grpc answers UNKNOWN. Log the type only; a message
                # may quote the request, which may hold personal data.
                crashed = type(exc).__name__
                raise
            finally:
                code = context.code()
                name = code.name if isinstance(code, grpc.StatusCode) else "OK"
                if crashed is not None:
                    name = "UNKNOWN"
                    log.error("rpc.crashed", method=method, exception=crashed)
                # Successful calls at debug: at thousands of verifications a
                # second, one log line each is a measurable share of the CPU.
                # Changes are logged by the domain; failures here at info.
                emit = log.debug if name == "OK" else log.info
                emit(
                    "rpc",
                    method=method,
                    code=name,
                    ms=round((time.perf_counter() - start) * 1000, 2),
                )

        return factory(logged, handler.request_deserializer, handler.response_serializer)


@dataclass(slots=True)
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    replicator: Replicator
    tasks: list[asyncio.Task[None]]
    log_server: LogServer

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        for task in self.tasks:
            task.cancel()
        await self.replicator.stop()
        await self.log_server.close()  # subscriptions end now, not after the grace
        await self.server.stop(grace)


async def _heartbeats(node: Node) -> None:
    """Re-sign the unchanged log every checkpoint_interval (see Node.heartbeat)."""
    interval = node.config.federation.checkpoint_interval
    while True:
        try:
            await node.heartbeat()
        except CredfedError as exc:  # a store hiccup must not end the heartbeat
            log.warning("heartbeat.failed", error=type(exc).__name__)
        await asyncio.sleep(max(0.05, interval / 4))


def connect(node: Node) -> Replicator:
    """Open links to the partners the node is linked to (not yet calling them)."""
    fed = node.config.federation
    keepalive = min(15.0, fed.checkpoint_interval)
    links = {
        link.country: GrpcPeerLink(link, fed.call_timeout, keepalive) for link in node.peers.links()
    }
    replicator = Replicator(
        node.replicas,
        links,
        node.config.country,
        node.now,
        interval=fed.sync_interval,
        save_descriptor=node.peers.replace,
        rules=node.recognition.accept,
    )
    node.attach(replicator)
    return replicator


async def start(node: Node, listen: str | None = None) -> RunningServer:
    """Start serving ``node``. ``listen`` overrides the configured address
    (tests pass 127.0.0.1:0); the bound port is returned."""
    address = listen or node.config.listen
    check_listen(address, node.config.plaintext)
    server = grpc.aio.server(
        interceptors=[AccessLogInterceptor(), AuthInterceptor(Authenticator(node.store))],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_concurrent_streams", 256),
            ("grpc.so_reuseport", 0),
        ],
    )
    origin = node.config.country
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(node.registry, origin, node.recognition), server
    )
    verification_pb2_grpc.add_VerificationServiceServicer_to_server(
        VerificationServicer(node.verifier, node.crossborder, node.recognition, origin, node.now),
        server,
    )
    federation_pb2_grpc.add_FederationServiceServicer_to_server(FederationServicer(node), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    # Plaintext only: check_listen refused anything but loopback above.
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc's only signal that the bind failed
        raise ConfigError(f"server.listen: cannot listen on {address} (in use?)") from exc
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def fork_alarm(evidence: object = None) -> None:
        # Replication of a forked origin has stopped: the federation service is
        # degraded (`credfed status` names the origin); the rest serves on.
        await health_servicer.set(FEDERATION_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)

    replicator = connect(node)
    replicator.alarms.append(fork_alarm)
    if node.replicas.trust.forked_origins():
        await fork_alarm()
    await node.heartbeat()
    replicator.start()
    tasks = [asyncio.ensure_future(_heartbeats(node))]
    log.info(
        "server.started",
        country=origin,
        port=port,
        services=len(SERVICE_NAMES),
        partners=len(node.replicas.trust.origins()),
        links=len(replicator.links()),
    )
    return RunningServer(server, port, health_servicer, replicator, tasks, node.log_server)
