"""Attacks on the transport of real TLS nodes (``credfed serve`` processes).

Expected defences (DESIGN.md, security model): clients reach a node only
over TLS with the node's CA; plaintext listening is for loopback
development only; partners call the federation port with mutual TLS,
presenting a client certificate of a CA pinned in a descriptor, and a
token of role ``peer`` on top - each layer refuses on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from fednet import FedNode, build, register_issuer, start_all, stop_all
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from credfed import config as cfg
from credfed.bootstrap import init_node
from credfed.clock import utc_now
from credfed.crypto.tls import TlsFiles, create_node_tls
from credfed.errors import ConfigError
from credfed.node import Node
from credfed.rpc import server
from credfed.rpc_tokens import new_token
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc, verification_pb2_grpc
from credfed.v1 import verification_pb2 as v

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, FedNode]]:
    root = tmp_path_factory.mktemp("tls")
    nodes = await build(root, ["DE", "FR"], [("FR", "DE"), ("DE", "FR")], tls=True)
    try:
        await start_all(*nodes.values())
        await register_issuer(nodes["DE"])
        yield nodes
    finally:
        await stop_all(*nodes.values())


def _md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _checkpoint(channel: grpc.aio.Channel, token: str) -> grpc.StatusCode:
    """A verifier's GetCheckpoint over ``channel`` (closed afterwards)."""
    try:
        await verification_pb2_grpc.VerificationServiceStub(channel).GetCheckpoint(
            v.GetCheckpointRequest(), metadata=_md(token), timeout=5
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
    return OK


async def _descriptor(channel: grpc.aio.Channel, token: str) -> grpc.StatusCode:
    """A partner's GetNodeDescriptor over ``channel`` (closed afterwards)."""
    try:
        await federation_pb2_grpc.FederationServiceStub(channel).GetNodeDescriptor(
            f.GetNodeDescriptorRequest(), metadata=_md(token), timeout=5
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
    return OK


def _fresh(options: list[tuple[str, int]] | None = None) -> list[tuple[str, int]]:
    """Own subchannels: no connection is shared with another attempt."""
    return [("grpc.use_local_subchannel_pool", 1), *(options or [])]


def _stranger(tmp_path: Path, node_id: str, country: str) -> TlsFiles:
    """A CA and certificates of someone else, with the given names."""
    files = TlsFiles(tmp_path / f"stranger-{node_id}")
    create_node_tls(files, node_id, country, ["127.0.0.1", "localhost"], utc_now())
    return files


async def test_plaintext_to_a_tls_node_gets_no_connection(pair: dict[str, FedNode]) -> None:
    """Attack: a client (or a downgrade) speaking plaintext HTTP/2 to a TLS
    node, on the client port and on the federation port, with valid tokens.
    Defence: no connection at all (UNAVAILABLE), so no token is ever sent
    in the clear to be read."""
    de = pair["DE"]
    assert (
        await _checkpoint(
            grpc.aio.insecure_channel(de.target, options=_fresh()), de.tokens["verifier"]
        )
        == UNAVAILABLE
    )
    peer = pair["FR"].tokens["peer:DE"]
    assert (
        await _descriptor(grpc.aio.insecure_channel(de.federation_target, options=_fresh()), peer)
        == UNAVAILABLE
    )
    # The same token over TLS with the node's CA works: only the transport was refused.
    assert de.ca is not None
    creds = grpc.ssl_channel_credentials(root_certificates=de.ca)
    assert (
        await _checkpoint(
            grpc.aio.secure_channel(de.target, creds, options=_fresh()), de.tokens["verifier"]
        )
        == OK
    )


async def test_an_impostor_with_a_lookalike_certificate_is_not_trusted(
    pair: dict[str, FedNode], tmp_path: Path
) -> None:
    """Attack: a man in the middle poses as DE with a look-alike certificate
    (DE's node id, country and host names, from its own CA). Defence: a
    client that trusts DE's CA refuses the impostor (UNAVAILABLE), while the
    impostor's own CA would accept it: names are not trust, the CA's key is.
    And the real node refuses to be reached by a client of the impostor's CA."""
    de = pair["DE"]
    assert de.ca is not None
    node_id = cfg.load(de.data_dir).node_id
    lookalike = _stranger(tmp_path, node_id, "DE")
    impostor = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), impostor)
    port = impostor.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials(
            [(lookalike.read(lookalike.server_key), lookalike.read(lookalike.server_cert))]
        ),
    )
    await impostor.start()
    try:

        async def check(ca: bytes) -> grpc.StatusCode:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca)
            channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=_fresh())
            try:
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            finally:
                await channel.close()
            return OK

        assert await check(de.ca) == UNAVAILABLE
        assert await check(lookalike.read(lookalike.ca_cert)) == OK
    finally:
        await impostor.stop(0)
    wrong = grpc.ssl_channel_credentials(root_certificates=lookalike.read(lookalike.ca_cert))
    assert (
        await _checkpoint(
            grpc.aio.secure_channel(de.target, wrong, options=_fresh()), de.tokens["verifier"]
        )
        == UNAVAILABLE
    )


async def test_a_partner_certificate_from_an_unpinned_ca_cannot_reach_the_federation_port(
    pair: dict[str, FedNode], tmp_path: Path
) -> None:
    """Attack: reach DE's federation port with a valid peer token (stolen
    from FR) but without FR's client certificate: none at all, one of a
    stranger's CA, and one of a CA copying the subject names of FR's CA.
    Defence: the mutual-TLS handshake fails (UNAVAILABLE) before any token
    is looked at; with FR's genuine certificate the same token works."""
    de, fr = pair["DE"], pair["FR"]
    assert de.ca is not None
    token = fr.tokens["peer:DE"]  # DE issued it to FR
    fr_tls = TlsFiles(fr.data_dir / "tls")
    fr_node_id = cfg.load(fr.data_dir).node_id

    def creds(key: bytes | None, chain: bytes | None) -> grpc.aio.Channel:
        credentials = grpc.ssl_channel_credentials(de.ca, key, chain)
        return grpc.aio.secure_channel(de.federation_target, credentials, options=_fresh())

    assert await _descriptor(creds(None, None), token) == UNAVAILABLE
    for stranger in (
        _stranger(tmp_path, "xx-1", "AT"),
        _stranger(tmp_path, fr_node_id, "FR"),  # FR's names, not FR's keys
    ):
        client = creds(stranger.read(stranger.client_key), stranger.read(stranger.client_cert))
        assert await _descriptor(client, token) == UNAVAILABLE
    genuine = creds(fr_tls.read(fr_tls.client_key), fr_tls.read(fr_tls.client_cert))
    assert await _descriptor(genuine, token) == OK


async def test_a_pinned_partners_certificate_does_not_replace_the_token(
    pair: dict[str, FedNode],
) -> None:
    """Attack: someone holding FR's client certificate (a stolen key, or FR
    itself overreaching) calls DE's federation port with a forged token, and
    with a token of another role. Defence: the token layer refuses on its
    own: UNAUTHENTICATED, and PERMISSION_DENIED for a verifier's token."""
    de, fr = pair["DE"], pair["FR"]
    assert de.ca is not None
    fr_tls = TlsFiles(fr.data_dir / "tls")

    def channel() -> grpc.aio.Channel:
        credentials = grpc.ssl_channel_credentials(
            de.ca, fr_tls.read(fr_tls.client_key), fr_tls.read(fr_tls.client_cert)
        )
        return grpc.aio.secure_channel(de.federation_target, credentials, options=_fresh())

    assert await _descriptor(channel(), new_token()) == grpc.StatusCode.UNAUTHENTICATED
    assert await _descriptor(channel(), de.tokens["verifier"]) == (
        grpc.StatusCode.PERMISSION_DENIED
    )


async def test_plaintext_on_a_public_address_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: a plaintext (development) node is made to listen on a public
    address - by a command-line override or the ``CREDFED_SERVER_LISTEN``
    environment variable. Defence: refused before anything listens
    (ConfigError naming the setting): plaintext is loopback only."""
    init = await init_node(tmp_path / "dev", "DE", "127.0.0.1:0")
    node = await Node.open(init.config)
    try:
        with pytest.raises(ConfigError, match=r"server\.listen: plaintext"):
            await server.start(node, "0.0.0.0:0")
    finally:
        await node.close()
    monkeypatch.setenv("CREDFED_SERVER_LISTEN", "0.0.0.0:7443")
    with pytest.raises(
        ConfigError, match=r"server\.listen \(set by CREDFED_SERVER_LISTEN\): plaintext"
    ):
        cfg.load(init.config.data_dir)
