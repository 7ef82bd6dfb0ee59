"""TLS on real node processes: clients reach a node only over TLS with its
CA; partners call each other's federation port with mutual TLS, presenting
a certificate of a CA pinned in a descriptor; certificates rotate without a
restart."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from fednet import STATUS, FedNode, build, eventually, register_issuer

from credfed.clock import utc_now
from credfed.crypto.tls import TlsFiles, create_node_tls
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc, verification_pb2_grpc
from credfed.v1 import verification_pb2 as v

pytestmark = pytest.mark.slow


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[dict[str, FedNode]]:
    nodes = await build(tmp_path, ["DE", "FR"], [("FR", "DE"), ("DE", "FR")], tls=True)
    try:
        for node in nodes.values():
            node.start()
        await register_issuer(nodes["DE"])
        yield nodes
    finally:
        for node in nodes.values():
            await node.stop()


async def _check(channel: grpc.aio.Channel, token: str) -> grpc.StatusCode:
    stub = verification_pb2_grpc.VerificationServiceStub(channel)
    try:
        await stub.GetCheckpoint(
            v.GetCheckpointRequest(),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=5,
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


async def test_clients_need_tls_with_the_nodes_ca(pair: dict[str, FedNode], tmp_path: Path) -> None:
    de = pair["DE"]
    cid = await de.issue()
    token = de.tokens["verifier"]
    assert await _check(de.channel, token) == grpc.StatusCode.OK
    de._channel = None  # closed by _check
    # Plaintext to a TLS port: no connection.
    assert await _check(grpc.aio.insecure_channel(de.target), token) == grpc.StatusCode.UNAVAILABLE
    # TLS with another CA: the server is not trusted.
    stranger = TlsFiles(tmp_path / "stranger")
    create_node_tls(stranger, "xx-1", "AT", ["127.0.0.1"], utc_now())
    wrong = grpc.ssl_channel_credentials(root_certificates=stranger.read(stranger.ca_cert))
    assert (
        await _check(grpc.aio.secure_channel(de.target, wrong), token)
        == grpc.StatusCode.UNAVAILABLE
    )
    # The CLI finds the CA in the data directory.
    res = subprocess.run(
        [sys.executable, "-m", "credfed.cli", "verify", cid, "--birth-date", "1994-03-17",
         "--data-dir", str(de.data_dir), "--token", token],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "ACTIVE" in res.stdout


async def test_partners_federate_over_mutual_tls(pair: dict[str, FedNode], tmp_path: Path) -> None:
    de, fr = pair["DE"], pair["FR"]
    cid = await de.issue()
    result = await eventually(lambda: fr.verify(cid))
    assert result.status == STATUS.CREDENTIAL_STATUS_ACTIVE
    assert result.provenance.signature_checked
    # The federation service is not on the main (employer-facing) port.
    stub = federation_pb2_grpc.FederationServiceStub(de.channel)
    with pytest.raises(grpc.aio.AioRpcError) as absent:
        await stub.GetNodeDescriptor(
            f.GetNodeDescriptorRequest(), metadata=de.md("verifier"), timeout=5
        )
    assert absent.value.code() == grpc.StatusCode.UNIMPLEMENTED

    de_ca = de.ca
    assert de_ca is not None
    fr_tls = TlsFiles(fr.data_dir / "tls")
    peer_md = (("authorization", f"Bearer {fr.tokens['peer:DE']}"),)

    async def federation_call(key: bytes | None, chain: bytes | None) -> grpc.StatusCode:
        creds = grpc.ssl_channel_credentials(de_ca, key, chain)
        channel = grpc.aio.secure_channel(de.federation_target, creds)
        try:
            await federation_pb2_grpc.FederationServiceStub(channel).GetNodeDescriptor(
                f.GetNodeDescriptorRequest(), metadata=peer_md, timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            await channel.close()
        return grpc.StatusCode.OK

    # FR's own client certificate (FR's CA is in the descriptor DE pinned).
    ok = await federation_call(fr_tls.read(fr_tls.client_key), fr_tls.read(fr_tls.client_cert))
    assert ok == grpc.StatusCode.OK
    # No client certificate, or one from a CA nobody pinned: no connection.
    assert await federation_call(None, None) == grpc.StatusCode.UNAVAILABLE
    stranger = TlsFiles(tmp_path / "stranger")
    create_node_tls(stranger, "xx-1", "AT", ["127.0.0.1"], utc_now())
    refused = await federation_call(
        stranger.read(stranger.client_key), stranger.read(stranger.client_cert)
    )
    assert refused == grpc.StatusCode.UNAVAILABLE


def _served_serial(target: str, ca: bytes) -> int:
    """The serial of the certificate a new TLS connection is served."""
    host, port = target.rsplit(":", 1)
    context = ssl.create_default_context(cadata=ca.decode())
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_certificates_rotate_without_a_restart(pair: dict[str, FedNode]) -> None:
    de = pair["DE"]
    assert de.ca is not None
    before = _served_serial(de.target, de.ca)
    res = subprocess.run(
        [sys.executable, "-m", "credfed.cli", "tls", "rotate", "--data-dir", str(de.data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    after = _served_serial(de.target, de.ca)
    assert after != before
    assert f"{after:x}" in res.stdout
    # Same process, still serving: a new client connection works.
    de._channel = None
    assert await de.log_size() >= 0
