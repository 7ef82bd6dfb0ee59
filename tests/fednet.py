"""A real federation for integration tests: one ``credfed serve`` process per
country on loopback, each with its own data directory, pinned and linked to
its partners exactly as ``credfed peer add --token-file`` does it."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from conftest import Stubs, draft
from nodeproc import NodeProcess

from credfed import config as cfg
from credfed.bootstrap import add_client, init_node
from credfed.clock import utc_now
from credfed.config import FederationSettings
from credfed.crypto.keys import SigningKey
from credfed.federation.descriptor import fingerprint
from credfed.federation.local import own_descriptor
from credfed.federation.peers import PeerDirectory
from credfed.v1 import common_pb2 as c
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v

#: Short periods so that tests observe heartbeats, anti-entropy and staleness.
FAST = FederationSettings(
    sync_interval=0.5, checkpoint_interval=1.0, max_staleness=30.0, call_timeout=3.0
)
ISSUERS = {"DE": "de-hwk-muenchen", "FR": "fr-cma-lyon", "PL": "pl-zrp-krakow", "AT": "at-wk-wien"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class FedNode(Stubs):
    country: str
    data_dir: Path
    port: int
    admin: str
    proc: NodeProcess
    tokens: dict[str, str] = field(default_factory=dict)
    _channel: grpc.aio.Channel | None = None
    #: TLS nodes: the node's CA certificate, and the mutual-TLS federation port.
    ca: bytes | None = None
    federation_port: int = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def federation_target(self) -> str:
        return f"127.0.0.1:{self.federation_port or self.port}"

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            if self.ca is None:
                self._channel = grpc.aio.insecure_channel(self.target)
            else:
                creds = grpc.ssl_channel_credentials(root_certificates=self.ca)
                self._channel = grpc.aio.secure_channel(self.target, creds)
        return self._channel

    def md(self, role: str = "admin") -> tuple[tuple[str, str], ...]:
        token = self.admin if role == "admin" else self.tokens[role]
        return (("authorization", f"Bearer {token}"),)

    def start(self) -> None:
        self.proc.start()

    async def stop(self) -> None:
        await self.close_channel()
        self.proc.stop()

    async def close_channel(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def issue(self, **overrides: Any) -> str:
        got = await self.registry.IssueCredential(
            r.IssueCredentialRequest(draft=draft(issuer_id=ISSUERS[self.country], **overrides)),
            metadata=self.md(),
            timeout=10,
        )
        return str(got.receipt.credential.credential_id)

    async def revoke(self, cid: str, reason: str = "fraud") -> int:
        got = await self.registry.RevokeCredential(
            r.RevokeCredentialRequest(credential_id=cid, reason=reason),
            metadata=self.md(),
            timeout=10,
        )
        return int(got.receipt.checkpoint.tree_size)

    async def verify(self, cid: str, birth_date: str = "1994-03-17") -> v.VerificationResult:
        got = await self.verification.Verify(
            v.VerifyRequest(credential_id=cid, birth_date=birth_date),
            metadata=self.md("verifier"),
            timeout=10,
        )
        result: v.VerificationResult = got.result
        return result

    async def log_size(self) -> int:
        got = await self.verification.GetCheckpoint(
            v.GetCheckpointRequest(), metadata=self.md("verifier"), timeout=10
        )
        return int(got.checkpoint.tree_size)


async def build(
    root: Path,
    countries: Iterable[str],
    links: Iterable[tuple[str, str]],
    *,
    pins: Iterable[tuple[str, str]] | None = None,
    settings: FederationSettings = FAST,
    twins: dict[str, str] | None = None,
    tls: bool = False,
) -> dict[str, FedNode]:
    """Initialise nodes (not started). ``links`` are (caller, callee) pairs;
    every node pins every other unless ``pins`` says who pins whom.
    ``twins`` maps a name to a country it clones (same key and descriptor,
    its own database): an origin that equivocates."""
    nodes: dict[str, FedNode] = {}
    names = list(countries)
    for name in names:
        country = name[:2]
        port = free_port()
        fed_port = free_port() if tls else 0
        init = await init_node(
            root / name,
            country,
            f"127.0.0.1:{port}",
            plaintext=not tls,
            federation_listen=f"127.0.0.1:{fed_port}" if tls else "",
        )
        config = dataclasses.replace(init.config, federation=settings)
        (config.data_dir / cfg.CONFIG_FILE).write_text(config.to_toml())
        own_descriptor(config, SigningKey.load(config.key_path), utc_now())
        proc = NodeProcess(config.data_dir, root / f"{name}.log", listen=config.listen)
        nodes[name] = FedNode(country, config.data_dir, port, init.admin_token, proc)
        if tls:
            nodes[name].ca = (config.tls_dir / "ca.pem").read_bytes()
            nodes[name].federation_port = fed_port
        for role in ("verifier",):
            nodes[name].tokens[role] = await add_client(config, role, f"test {role}")
    for twin, original in (twins or {}).items():
        _clone_identity(nodes[original].data_dir, nodes[twin].data_dir)
    pairs = list(pins) if pins is not None else [(a, b) for a in names for b in names if a != b]
    for a, b in pairs:
        if nodes[a].country == nodes[b].country:
            continue
        envelope = own_descriptor(cfg.load(nodes[b].data_dir), _key(nodes[b]), utc_now())
        PeerDirectory(nodes[a].data_dir, nodes[a].country).add(envelope, fingerprint(envelope))
    for a, b in links:
        token = await add_client(
            cfg.load(nodes[b].data_dir), "peer", f"node {a}", partner=nodes[a].country
        )
        nodes[a].tokens[f"peer:{b}"] = token
        PeerDirectory(nodes[a].data_dir, nodes[a].country).set_link(
            nodes[b].country, token, nodes[b].federation_target
        )
    return nodes


def _key(node: FedNode) -> SigningKey:
    return SigningKey.load(cfg.load(node.data_dir).key_path)


def _clone_identity(src: Path, dst: Path) -> None:
    """Give ``dst`` the signing key and descriptor of ``src``."""
    from credfed.federation.local import DESCRIPTOR_FILE

    src_config, dst_config = cfg.load(src), cfg.load(dst)
    SigningKey.load(src_config.key_path).save(dst / src_config.signing_key)
    (dst / DESCRIPTOR_FILE).write_bytes((src / DESCRIPTOR_FILE).read_bytes())
    twin = dataclasses.replace(dst_config, signing_key=src_config.signing_key)
    (dst / cfg.CONFIG_FILE).write_text(twin.to_toml())


async def register_issuer(node: FedNode) -> None:
    issuer_id = ISSUERS[node.country]
    await node.registry.RegisterIssuer(
        r.RegisterIssuerRequest(issuer_id=issuer_id, name=issuer_id, sectors=["energy"]),
        metadata=node.md(),
        timeout=10,
    )


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 20.0, interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns a truthy value (returned) or raise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last:
                return last
        except grpc.aio.AioRpcError as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")


STATUS = c.CredentialStatus


# -- helpers for the relay and origin attacks (tests/attacks/test_attack_relay_and_origin.py) --


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def peer_token(node: FedNode, name: str = "test probe", partner: str | None = None) -> str:
    """A ``peer`` token issued by ``node`` (to call its FederationService),
    to ``partner`` (default: XX of a name "node XX", else ZZ, nobody's)."""
    if partner is None:
        words = name.split()
        partner = words[1] if len(words) == 2 and words[0] == "node" else "ZZ"
    return await add_client(cfg.load(node.data_dir), "peer", name, partner=partner)


async def start_all(*nodes: FedNode) -> None:
    """Start nodes without blocking the event loop (an in-process server of
    the test may have to answer them while they start)."""
    for node in nodes:
        await asyncio.to_thread(node.start)


async def stop_all(*nodes: FedNode) -> None:
    """Stop nodes without blocking the event loop; never raises for a node
    that is not running."""
    for node in nodes:
        await node.close_channel()
        await asyncio.to_thread(node.proc.stop)


async def log_checkpoint(node: FedNode, origin: str, token: str) -> c.SignedCheckpoint:
    """``node``'s checkpoint of ``origin``'s log (its own or its replica), as
    a partner holding ``token`` (a peer token ``node`` issued) sees it."""
    from credfed.v1 import federation_pb2

    got = await node.federation.GetLogCheckpoint(
        federation_pb2.GetLogCheckpointRequest(origin=origin), metadata=bearer(token), timeout=5
    )
    checkpoint: c.SignedCheckpoint = got.checkpoint
    return checkpoint


async def log_entries(node: FedNode, origin: str, token: str, start: int, end: int) -> list[bytes]:
    from credfed.v1 import federation_pb2

    got = await node.federation.GetLogEntries(
        federation_pb2.GetLogEntriesRequest(origin=origin, start=start, end=end),
        metadata=bearer(token),
        timeout=10,
    )
    return [bytes(e.leaf) for e in got.entries]


async def health(node: FedNode, service: str) -> int:
    """The grpc health status of ``service`` ("" for the whole server)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    got = await health_pb2_grpc.HealthStub(node.channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    return int(got.status)


async def cli_status(node: FedNode) -> dict[str, Any]:
    """``credfed status --json`` of ``node``, run as its operator would."""
    import json
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "credfed.cli",
        "status",
        "--data-dir",
        str(node.data_dir),
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    report: dict[str, Any] = json.loads(out)
    return report


def log_events(node: FedNode, event: str, offset: int = 0) -> list[dict[str, Any]]:
    """Records named ``event`` in the node's log file (JSON lines), from byte
    ``offset`` on; other lines are ignored."""
    import json

    path = node.proc.log_path
    if not path.exists():
        return []
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    records = []
    for line in data.splitlines():
        if not line.startswith(b"{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written
        if isinstance(record, dict) and record.get("event") == event:
            records.append(record)
    return records


def log_offset(node: FedNode) -> int:
    path = node.proc.log_path
    return path.stat().st_size if path.exists() else 0


# -- helpers for the attack suite (tests/attacks) ------------------------------------


def set_limits(node: FedNode, **limits: Any) -> None:
    """Give a node (not yet started) these ``[limits]`` settings, written to
    its configuration file as ``credfed serve`` reads it."""
    config = cfg.load(node.data_dir)
    config = dataclasses.replace(config, limits=cfg.LimitSettings(**limits))
    (node.data_dir / cfg.CONFIG_FILE).write_text(config.to_toml())
    assert cfg.load(node.data_dir).limits == config.limits


def signing_key(node: FedNode) -> SigningKey:
    """The node's current signing key, read from its data directory (what an
    origin with a wrong clock would sign with)."""
    return _key(node)
