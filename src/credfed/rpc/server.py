"""Server assembly: servicers, health, reflection, interceptors, limits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from credfed import logging as clog
from credfed import runstate
from credfed.audit import AuditTrail
from credfed.config import check_listen
from credfed.crypto.tls import TlsFiles
from credfed.errors import ConfigError, CredfedError
from credfed.federation.serving import LogServer
from credfed.federation.sync import Replicator
from credfed.models import SignedCheckpoint
from credfed.node import Node
from credfed.rpc.audit import AuditInterceptor
from credfed.rpc.auth import Authenticator, AuthInterceptor
from credfed.rpc.healthmon import HealthMonitor
from credfed.rpc.limits import MAX_MESSAGE_BYTES
from credfed.rpc.metrics import Endpoint, Metrics
from credfed.rpc.observe import ObserveInterceptor, in_task, started_in_task
from credfed.rpc.peerid import PartnerCAs, of_trust
from credfed.rpc.peerlink import partner_links
from credfed.rpc.ratelimit import RateLimitInterceptor, server_options
from credfed.rpc.servicers import FederationServicer, RegistryServicer, VerificationServicer
from credfed.v1 import (
    federation_pb2,
    federation_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)

SERVICE_NAMES = (
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
    verification_pb2.DESCRIPTOR.services_by_name["VerificationService"].full_name,
    federation_pb2.DESCRIPTOR.services_by_name["FederationService"].full_name,
)
log = clog.get("credfed.rpc")


@dataclass(slots=True)
class RunningServer:
    servers: list[grpc.aio.Server]
    port: int
    #: The mutual-TLS federation port (the main port in plaintext development).
    federation_port: int
    health: health.aio.HealthServicer
    replicator: Replicator
    tasks: list[asyncio.Task[None]]
    log_server: LogServer
    #: Written out once the servers have stopped (see credfed.audit).
    audit: AuditTrail | None = None
    #: Writes the run state `credfed status` reads (stopped=True at the end).
    publish: Callable[[bool], Awaitable[None]] | None = None
    #: Keeps the health statuses (see credfed.rpc.healthmon).
    monitor: HealthMonitor | None = None
    #: The Prometheus endpoint (``[metrics] listen``), if any, and its port.
    metrics: Endpoint | None = None
    metrics_port: int = 0

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        if self.monitor is not None:
            await self.monitor.stop()  # it would set nothing now anyway
        for task in self.tasks:
            task.cancel()
        if self.publish is not None:
            await self.publish(True)
        await self.replicator.stop()
        await self.log_server.close()  # subscriptions end now, not after the grace
        for server in self.servers:
            await server.stop(grace)
        if self.audit is not None:
            await self.audit.stop()  # the calls answered during the grace included
        if self.metrics is not None:
            await self.metrics.stop()


async def _heartbeats(node: Node) -> None:
    """Re-sign the unchanged log every checkpoint_interval (see Node.heartbeat)."""
    interval = node.config.federation.checkpoint_interval
    while True:
        try:
            await node.heartbeat()
        except CredfedError as exc:  # a store hiccup must not end the heartbeat
            log.warning("heartbeat.failed", error=type(exc).__name__)
        await asyncio.sleep(max(0.05, interval / 4))


def _publisher(
    node: Node,
    replicator: Replicator,
    ports: dict[str, int],
    health_report: Callable[[], runstate.HealthReport],
) -> Callable[[bool], Awaitable[None]]:
    """Writes what only the serving process knows for `credfed status`."""

    async def publish(stopped: bool = False) -> None:
        try:
            # The newest checkpoint, heartbeats included (they are not stored).
            own: SignedCheckpoint | None = await node.verifier.checkpoint()
        except CredfedError:
            own = None  # an empty log not signed yet, or a store hiccup
        state = runstate.snapshot(
            node.now(), ports, replicator.states(), health_report(), stopped=stopped, own=own
        )
        try:
            runstate.write(node.config.data_dir, state)
        except OSError as exc:  # status shows the node as down; serving goes on
            log.warning("runstate.write_failed", error=type(exc).__name__)

    return publish


async def _publishing(publish: Callable[[bool], Awaitable[None]]) -> None:
    while True:
        await publish(False)
        await asyncio.sleep(runstate.INTERVAL)


def connect(node: Node) -> Replicator:
    """Open links to the partners the node is linked to (not yet calling them)."""
    fed = node.config.federation
    links = partner_links(node.config, node.peers)
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


async def _health_monitor(
    node: Node, servicer: health.aio.HealthServicer, replicator: Replicator
) -> HealthMonitor:
    """The owner of the health statuses (conditions and reasons: healthmon),
    told of forks as the replicator finds them; started (statuses set)."""
    monitor = HealthMonitor(
        servicer,
        node.store,
        node.replicas.trust,
        own_country=node.config.country,
        federation=node.config.federation,
        clock=node.now,
    )
    replicator.alarms.append(monitor.alarm)
    await started_in_task("health", monitor.start)
    return monitor


def _bind(
    server: grpc.aio.Server, address: str, creds: grpc.ServerCredentials | None, setting: str
) -> int:
    try:
        if creds is None:
            return int(server.add_insecure_port(address))
        return int(server.add_secure_port(address, creds))
    except RuntimeError as exc:  # grpc's only signal that the bind failed
        raise ConfigError(f"{setting}: cannot listen on {address} (in use?)") from exc


def _partner_roots(node: Node, files: TlsFiles) -> bytes:
    """The CA certificates of the pinned partners, from their descriptors
    (only they may call the federation port). With none pinned yet, the
    node's own CA: nobody else can connect."""
    cas = [p.descriptor.tls_ca_cert for p in node.peers.list() if p.descriptor.tls_ca_cert]
    return "".join(cas).encode() if cas else files.read(files.ca_cert)


def _tls_credentials(files: TlsFiles, client_roots: bytes | None) -> grpc.ServerCredentials:
    """Server credentials that pick up a renewed certificate without a
    restart: checked on each handshake, reloaded when the file changes.
    ``client_roots``: require a client certificate issued by one of them."""
    seen = {"mtime": files.server_cert.stat().st_mtime_ns}

    def configuration() -> Any:
        return grpc.ssl_server_certificate_configuration(
            [(files.read(files.server_key), files.read(files.server_cert))],
            root_certificates=client_roots,
        )

    def fetch() -> Any:
        try:
            mtime = files.server_cert.stat().st_mtime_ns
        except OSError:
            return None  # keep serving with what we have
        if mtime == seen["mtime"]:
            return None
        seen["mtime"] = mtime
        log.info("tls.certificate_reloaded")
        return configuration()

    return grpc.dynamic_ssl_server_credentials(
        configuration(), fetch, require_client_authentication=client_roots is not None
    )


def new_server(
    node: Node,
    *,
    by_certificate: bool = False,
    metrics: Metrics | None = None,
    partners: PartnerCAs | None = None,
) -> grpc.aio.Server:
    """A server with the interceptors and limits every listener of a node has
    (``partners``: the mutual-TLS federation port's, see rpc.auth)."""
    return grpc.aio.server(
        interceptors=[
            # First: the request id is bound before the others log (see observe).
            ObserveInterceptor(metrics),
            # Before auth: calls auth refuses are audited too.
            AuditInterceptor(
                node.audit, node.store, node.config.country, node.replicas.trust.origins
            ),
            AuthInterceptor(
                Authenticator(node.store, now=node.now),
                by_certificate=by_certificate,
                partners=partners,
            ),
            # After auth: auth's handler wrapper sets the caller this one counts by.
            RateLimitInterceptor(
                node.config.limits, on_limited=metrics.rate_limited if metrics else None
            ),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_concurrent_streams", 256),
            ("grpc.so_reuseport", 0),
            *server_options(node.config.limits),
        ],
    )


async def start(node: Node, listen: str | None = None) -> RunningServer:
    """Start serving ``node``. ``listen`` overrides the configured address
    (tests pass 127.0.0.1:0); the bound port is returned."""
    address = listen or node.config.listen
    check_listen(address, node.config.plaintext)
    metrics = Metrics()  # one registry per node: tests run several in one process
    server = new_server(node, metrics=metrics)
    origin = node.config.country
    outcomes = metrics.verification(origin)
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(node.registry, origin, node.recognition, node.crossborder), server
    )
    verification_pb2_grpc.add_VerificationServiceServicer_to_server(
        VerificationServicer(
            node.verifier, node.crossborder, node.recognition, origin, node.now, outcomes=outcomes
        ),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    servers = [server]
    if node.config.plaintext:
        # Development: one plaintext port (loopback only, checked above) for all.
        federation_pb2_grpc.add_FederationServiceServicer_to_server(
            FederationServicer(node), server
        )
        port = _bind(server, address, None, "server.listen")
        federation_port = port
    else:
        # The main port: TLS, clients authenticate by token. Partners call the
        # FederationService on its own port, with mutual TLS: a client
        # certificate issued by the CA of a partner this node pinned.
        files = TlsFiles(node.config.tls_dir)
        port = _bind(server, address, _tls_credentials(files, None), "server.listen")
        # A peer token works there only with its partner's certificate.
        fed_server = new_server(node, metrics=metrics, partners=of_trust(node.replicas.trust))
        federation_pb2_grpc.add_FederationServiceServicer_to_server(
            FederationServicer(node), fed_server
        )
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, fed_server)
        roots = _partner_roots(node, files)
        federation_port = _bind(
            fed_server,
            node.config.federation_listen,
            _tls_credentials(files, roots),
            "server.federation_listen",
        )
        servers.append(fed_server)
        if node.config.client_cert_listen:
            # Clients that authenticate with a certificate of this node's CA
            # (no token): the same services as the main port, same roles.
            cert_server = new_server(node, by_certificate=True, metrics=metrics)
            registry_pb2_grpc.add_RegistryServiceServicer_to_server(
                RegistryServicer(node.registry, origin, node.recognition, node.crossborder),
                cert_server,
            )
            verification_pb2_grpc.add_VerificationServiceServicer_to_server(
                VerificationServicer(
                    node.verifier,
                    node.crossborder,
                    node.recognition,
                    origin,
                    node.now,
                    outcomes=outcomes,
                ),
                cert_server,
            )
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, cert_server)
            _bind(
                cert_server,
                node.config.client_cert_listen,
                _tls_credentials(files, files.read(files.ca_cert)),
                "server.client_cert_listen",
            )
            servers.append(cert_server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    # Before serving: a metrics port that cannot be bound leaves nothing running.
    try:
        endpoint = metrics.serve(node.config.metrics_listen) if node.config.metrics_listen else None
    except ConfigError:
        for s in servers:
            await s.stop(None)  # bound, never started: release the ports
        raise
    for s in servers:
        await s.start()
    replicator = connect(node)
    monitor = await _health_monitor(node, health_servicer, replicator)
    replicator.alarms.append(metrics.fork_alarm)
    metrics.watch(node, monitor.report)
    # Background tasks log with task=... where calls log their request_id.
    in_task("audit", node.audit.start)
    await node.heartbeat()
    in_task("replicator", replicator.start)
    ports = {"listen": port, "federation": federation_port}
    publish = _publisher(node, replicator, ports, monitor.report)
    tasks = [
        in_task("heartbeat", asyncio.ensure_future, _heartbeats(node)),
        in_task("runstate", asyncio.ensure_future, _publishing(publish)),
    ]
    log.info(
        "server.started",
        country=origin,
        port=port,
        federation_port=federation_port,
        tls=not node.config.plaintext,
        services=len(SERVICE_NAMES),
        partners=len(node.replicas.trust.origins()),
        links=len(replicator.links()),
        metrics_port=endpoint.port if endpoint else None,
    )
    return RunningServer(
        servers,
        port,
        federation_port,
        health_servicer,
        replicator,
        tasks,
        node.log_server,
        audit=node.audit,
        publish=publish,
        monitor=monitor,
        metrics=endpoint,
        metrics_port=endpoint.port if endpoint else 0,
    )
