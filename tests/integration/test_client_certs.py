"""Employers authenticating with a client certificate instead of a token, on
a node's client-certificate port: the certificate is the identity (its role
applies), revocation works like a token's, and only certificates of the
node's own CA get in."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from conftest import draft
from fednet import free_port
from nodeproc import NodeProcess

from credfed.bootstrap import init_node
from credfed.clock import utc_now
from credfed.crypto.tls import TlsFiles, create_node_tls
from credfed.v1 import registry_pb2 as r
from credfed.v1 import registry_pb2_grpc, verification_pb2_grpc
from credfed.v1 import verification_pb2 as v

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "credfed.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_an_employer_verifies_with_a_client_certificate_instead_of_a_token(
    tmp_path: Path,
) -> None:
    port, cert_port = free_port(), free_port()
    init = await init_node(
        tmp_path / "de",
        "DE",
        f"127.0.0.1:{port}",
        plaintext=False,
        federation_listen=f"127.0.0.1:{free_port()}",
        client_cert_listen=f"127.0.0.1:{cert_port}",
    )
    data = init.config.data_dir
    node = NodeProcess(data, tmp_path / "node.log", listen=f"127.0.0.1:{port}")
    node.start()
    try:
        ca = (data / "tls" / "ca.pem").read_bytes()
        admin = grpc.aio.secure_channel(
            f"127.0.0.1:{port}", grpc.ssl_channel_credentials(root_certificates=ca)
        )
        md = (("authorization", f"Bearer {init.admin_token}"),)
        reg = registry_pb2_grpc.RegistryServiceStub(admin)
        await reg.RegisterIssuer(
            r.RegisterIssuerRequest(issuer_id="de-hwk-muenchen", name="HWK", sectors=["energy"]),
            metadata=md,
            timeout=10,
        )
        issued = await reg.IssueCredential(
            r.IssueCredentialRequest(draft=draft()), metadata=md, timeout=10
        )
        cid = issued.receipt.credential.credential_id
        await admin.close()

        made = cli(
            "client-cert", "create", "--data-dir", str(data), "--role", "verifier",
            "--name", "Elektro Bauer GmbH", "--out-dir", str(tmp_path / "bauer"), "--json",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert (tmp_path / "bauer" / "client.key").stat().st_mode & 0o777 == 0o600
        client_id = made.stdout.split('"client_id": "')[1].split('"')[0]
        key = (tmp_path / "bauer" / "client.key").read_bytes()
        cert = (tmp_path / "bauer" / "client.pem").read_bytes()

        def channel(key: bytes | None, cert: bytes | None) -> grpc.aio.Channel:
            creds = grpc.ssl_channel_credentials(ca, key, cert)
            return grpc.aio.secure_channel(f"127.0.0.1:{cert_port}", creds)

        async def verify(ch: grpc.aio.Channel) -> grpc.StatusCode:
            try:
                await verification_pb2_grpc.VerificationServiceStub(ch).Verify(
                    v.VerifyRequest(credential_id=cid, birth_date="1994-03-17"), timeout=5
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        good = channel(key, cert)
        assert await verify(good) == grpc.StatusCode.OK  # no token at all
        # The certificate's role applies: a verifier cannot issue.
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await registry_pb2_grpc.RegistryServiceStub(good).IssueCredential(
                r.IssueCredentialRequest(draft=draft()), timeout=5
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # The CLI verifies with the certificate too.
        res = cli(
            "verify", cid, "--birth-date", "1994-03-17", "--server", f"127.0.0.1:{cert_port}",
            "--ca-file", str(tmp_path / "bauer" / "ca.pem"),
            "--client-cert", str(tmp_path / "bauer" / "client.pem"),
            "--client-key", str(tmp_path / "bauer" / "client.key"),
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert "ACTIVE" in res.stdout

        # No certificate, or one of another CA: no connection.
        assert await verify(channel(None, None)) == grpc.StatusCode.UNAVAILABLE
        stranger = TlsFiles(tmp_path / "stranger")
        create_node_tls(stranger, "xx-1", "AT", ["127.0.0.1"], utc_now())
        foreign = channel(stranger.read(stranger.client_key), stranger.read(stranger.client_cert))
        assert await verify(foreign) == grpc.StatusCode.UNAVAILABLE

        # Revoked like a token: refused within the authentication cache window.
        assert cli("token", "revoke", client_id, "--data-dir", str(data)).returncode == 0
        deadline = time.monotonic() + 10
        code = grpc.StatusCode.OK
        while time.monotonic() < deadline:
            code = await verify(good)
            if code != grpc.StatusCode.OK:
                break
            time.sleep(0.2)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        await good.close()
    finally:
        node.stop()
