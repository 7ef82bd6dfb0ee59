"""Attack: a partner uses another partner's peer token on the federation port.

Three TLS nodes (``credfed serve`` processes) DE, FR and PL, each pinning
the others. DE issued a peer token to FR and one to PL. FR presents its own
genuine client certificate (FR's CA is pinned at DE, so the handshake
succeeds) with the token DE issued to PL -- stolen, or lent by PL.

Expected defence (docs/security.md): a peer token records the partner it
was issued to, and on the mutual-TLS federation port it works only with a
certificate issued by that partner's pinned CA: PERMISSION_DENIED, audited
under PL's token (the country it was issued to). A peer token created
before partners were recorded is refused there, naming ``--partner``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest
import pytest_asyncio
from fednet import FedNode, build, eventually, register_issuer, start_all, stop_all

from credfed import config as cfg
from credfed.crypto.tls import TlsFiles
from credfed.models import Client, Role, RoleKind
from credfed.rpc_tokens import hash_token, new_token
from credfed.storage.sqlite import SqliteStore
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def trio(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, FedNode]]:
    root = tmp_path_factory.mktemp("binding")
    nodes = await build(root, ["DE", "FR", "PL"], [("FR", "DE"), ("PL", "DE")], tls=True)
    try:
        await start_all(*nodes.values())
        await register_issuer(nodes["DE"])
        yield nodes
    finally:
        await stop_all(*nodes.values())


def _channel(de: FedNode, partner: FedNode) -> grpc.aio.Channel:
    """A channel to DE's federation port with ``partner``'s real client
    certificate (its data dir's tls/client.*)."""
    assert de.ca is not None
    tls = TlsFiles(partner.data_dir / "tls")
    credentials = grpc.ssl_channel_credentials(
        de.ca, tls.read(tls.client_key), tls.read(tls.client_cert)
    )
    # A fresh connection per call: no subchannel shared with another test.
    return grpc.aio.secure_channel(
        de.federation_target, credentials, options=[("grpc.use_local_subchannel_pool", 1)]
    )


async def _checkpoint(de: FedNode, partner: FedNode, token: str) -> tuple[grpc.StatusCode, str]:
    """GetLogCheckpoint on DE's federation port: its status code and details."""
    channel = _channel(de, partner)
    try:
        await federation_pb2_grpc.FederationServiceStub(channel).GetLogCheckpoint(
            f.GetLogCheckpointRequest(origin="DE"),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    finally:
        await channel.close()
    return OK, ""


async def test_a_partners_certificate_does_not_work_with_another_partners_token(
    trio: dict[str, FedNode],
) -> None:
    de, fr, pl = trio["DE"], trio["FR"], trio["PL"]
    await de.issue()  # a checkpoint to read
    for_fr, for_pl = fr.tokens["peer:DE"], pl.tokens["peer:DE"]
    # Each partner with its own certificate and its own token: served.
    assert await _checkpoint(de, fr, for_fr) == (OK, "")
    assert await _checkpoint(de, pl, for_pl) == (OK, "")
    # Crossed: refused, either way round.
    assert await _checkpoint(de, fr, for_pl) == (
        DENIED,
        "peer token issued to PL used with a certificate of FR's CA",
    )
    assert await _checkpoint(de, pl, for_fr) == (
        DENIED,
        "peer token issued to FR used with a certificate of PL's CA",
    )
    # The refusal is not a denial of service: the rightful pairs still work.
    assert (await _checkpoint(de, fr, for_fr))[0] == OK


async def test_a_peer_token_without_a_partner_is_refused_naming_the_fix(
    trio: dict[str, FedNode],
) -> None:
    """A peer client from before partners were recorded (partner NULL, as
    migration 0007 leaves it), written to DE's database while DE runs."""
    de, fr = trio["DE"], trio["FR"]
    legacy = new_token()
    store = await SqliteStore.open(cfg.load(de.data_dir).db_path)
    try:
        await store.add_client(
            Client(
                client_id=secrets.token_hex(8),
                name="FR node (old)",
                role=Role(RoleKind.PEER),
                token_hash=hash_token(legacy),
                created_at=datetime.now(UTC),
            )
        )
    finally:
        await store.close()
    code, details = await _checkpoint(de, fr, legacy)
    assert code == DENIED
    assert "--partner" in details
    assert "recreate it" in details


async def test_the_refused_call_is_audited_under_the_tokens_partner(
    trio: dict[str, FedNode],
) -> None:
    """LookupCredential is audited: FR's certificate with PL's token leaves a
    PERMISSION_DENIED record naming the token's client and its country (PL)."""
    de, fr, pl = trio["DE"], trio["FR"], trio["PL"]
    cid = await de.issue()
    channel = _channel(de, fr)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await federation_pb2_grpc.FederationServiceStub(channel).LookupCredential(
                f.LookupCredentialRequest(credential_id=cid, family_name="Novák"),
                metadata=(("authorization", f"Bearer {pl.tokens['peer:DE']}"),),
                timeout=10,
            )
    finally:
        await channel.close()
    assert refused.value.code() == DENIED

    async def records() -> list[tuple[str, str, str | None, str]]:
        store = await SqliteStore.open(cfg.load(de.data_dir).db_path)
        try:
            found = await store.audit_records_about(cid)
        finally:
            await store.close()
        return [
            (r.action, r.client_name, r.country, r.outcome)
            for r in found
            if r.action == "LookupCredential"
        ]

    assert await eventually(records, timeout=10) == [
        ("LookupCredential", "node PL", "PL", "PERMISSION_DENIED")
    ]
