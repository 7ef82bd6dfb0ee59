"""A small synchronous client over the generated stubs, for the CLI and
scripts. Every call carries the bearer token and a deadline."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc

from credfed.v1 import registry_pb2_grpc, verification_pb2_grpc

DEFAULT_TIMEOUT = 10.0


class Client:
    def __init__(
        self,
        target: str,
        token: str | None,
        timeout: float = DEFAULT_TIMEOUT,
        root_certificates: bytes | None = None,
        *,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
        server_name: str | None = None,
    ) -> None:
        """TLS when ``root_certificates`` (the node's CA certificate) is
        given, else plaintext (a node in loopback development mode). With a
        client certificate and key, the client authenticates by them (on the
        node's client-certificate port) and sends no token. ``server_name``:
        the name to expect in the server certificate when ``target`` is an
        address the certificate does not list (a node bound to 0.0.0.0)."""
        options: list[tuple[str, object]] = [("grpc.max_receive_message_length", 4 * 1024 * 1024)]
        if server_name is not None:
            options.append(("grpc.ssl_target_name_override", server_name))
        if root_certificates is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            )
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        self.registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self.verification = verification_pb2_grpc.VerificationServiceStub(self._channel)
        self.health = health_pb2_grpc.HealthStub(self._channel)

    def call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        return method(request, metadata=self._metadata, timeout=timeout or self.timeout)

    def stream(self, method: Any, requests: Iterable[Any] | Iterator[Any], timeout: float) -> Any:
        return method(requests, metadata=self._metadata, timeout=timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
