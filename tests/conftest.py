"""Shared fixtures: a real node (SQLite file, Ed25519 key) served by a real
grpc.aio server on a loopback port chosen by the OS."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
import pytest

from credfed.bootstrap import Initialised, add_client, init_node
from credfed.config import Config
from credfed.node import Node
from credfed.rpc import server
from credfed.v1 import common_pb2 as c
from credfed.v1 import federation_pb2_grpc, registry_pb2_grpc, verification_pb2_grpc
from credfed.v1 import registry_pb2 as r

ISSUER = "de-hwk-muenchen"
OTHER_ISSUER = "de-ihk-berlin"


def draft(**overrides: Any) -> c.CredentialDraft:
    """A valid electrician's certificate draft; override any field."""
    fields: dict[str, Any] = {
        "issuer_id": ISSUER,
        "given_names": "Jana",
        "family_name": "Novák",
        "birth_date": "1994-03-17",
        "national_code": "DE-HWK-EGT-2019",
        "title": "Elektroniker/in für Energie- und Gebäudetechnik",
        "eqf_level": 4,
        "isco_code": "7411",
        "sector": "energy",
        "issued_on": "2019-07-01",
        "valid_until": "2039-06-30",
    }
    fields.update(overrides)
    return c.CredentialDraft(
        issuer_id=fields["issuer_id"],
        holder=c.Holder(
            given_names=fields["given_names"],
            family_name=fields["family_name"],
            birth_date=fields["birth_date"],
        ),
        qualification=c.Qualification(
            national_code=fields["national_code"],
            title=fields["title"],
            eqf_level=fields["eqf_level"],
            isco_code=fields["isco_code"],
            sector=fields["sector"],
        ),
        issued_on=fields["issued_on"],
        valid_until=fields["valid_until"],
    )


class _HasChannel(Protocol):
    @property
    def channel(self) -> grpc.aio.Channel: ...


class Stubs:
    """The node's three services over ``self.channel``."""

    @property
    def registry(self: _HasChannel) -> registry_pb2_grpc.RegistryServiceStub:
        return registry_pb2_grpc.RegistryServiceStub(self.channel)

    @property
    def verification(self: _HasChannel) -> verification_pb2_grpc.VerificationServiceStub:
        return verification_pb2_grpc.VerificationServiceStub(self.channel)

    @property
    def federation(self: _HasChannel) -> federation_pb2_grpc.FederationServiceStub:
        return federation_pb2_grpc.FederationServiceStub(self.channel)


@dataclass
class InProcess:
    node: Node
    server: server.RunningServer
    channel: grpc.aio.Channel


@contextlib.asynccontextmanager
async def in_process(config: Config) -> AsyncIterator[InProcess]:
    """The node of ``config`` served in this process on a port chosen by the
    OS, with a plaintext channel to it; all closed on exit."""
    node = await Node.open(config)
    try:
        srv = await server.start(node, "127.0.0.1:0")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
                yield InProcess(node, srv, channel)
        finally:
            await srv.stop(0)
    finally:
        await node.close()


@dataclass
class RunningNode(Stubs):
    init: Initialised
    node: Node
    port: int
    tokens: dict[str, str]
    channel: grpc.aio.Channel

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def md(self, role: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[role]}"),)

    async def issue(self, **overrides: Any) -> r.ChangeReceipt:
        resp = await self.registry.IssueCredential(
            r.IssueCredentialRequest(draft=draft(**overrides)),
            metadata=self.md("admin"),
            timeout=10,
        )
        receipt: r.ChangeReceipt = resp.receipt
        return receipt


@pytest.fixture
async def node_dir(tmp_path: Path) -> Initialised:
    return await init_node(tmp_path / "de", "DE", "127.0.0.1:0")


@pytest.fixture
async def running(node_dir: Initialised) -> AsyncIterator[RunningNode]:
    """A served DE node with two issuers and a token per role."""
    async with in_process(node_dir.config) as served:
        tokens = {"admin": node_dir.admin_token}
        rn = RunningNode(node_dir, served.node, served.server.port, tokens, served.channel)
        for issuer_id, sectors in (
            (ISSUER, ["energy", "construction"]),
            (OTHER_ISSUER, ["energy"]),
        ):
            await rn.registry.RegisterIssuer(
                r.RegisterIssuerRequest(issuer_id=issuer_id, name=issuer_id, sectors=sectors),
                metadata=rn.md("admin"),
                timeout=10,
            )
        for role in ("verifier", "peer", f"issuer:{ISSUER}", f"issuer:{OTHER_ISSUER}"):
            tokens[role] = await add_client(
                node_dir.config, role, f"test {role}", partner="FR" if role == "peer" else None
            )
        yield rn
