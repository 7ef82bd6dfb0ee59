"""Key rotation end to end: `credfed key rotate` on a node a partner has
pinned; the partner accepts the new descriptor in band, old checkpoints keep
verifying by their time, new ones are signed by the new key, and a descriptor
signed by an untrusted key is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ISSUER, draft

from credfed.bootstrap import init_node
from credfed.clock import utc_now
from credfed.config import load
from credfed.crypto.keys import SigningKey
from credfed.errors import UntrustedSignerError
from credfed.federation.descriptor import (
    accept_update,
    decode_descriptor,
    fingerprint,
    keys_at,
    pin_descriptor,
    sign_descriptor,
)
from credfed.federation.local import own_descriptor
from credfed.models import Envelope, Issuer, IssuerStatus, Role, RoleKind, SignedCheckpoint
from credfed.node import Node
from credfed.rpc import convert
from credfed.statuslog.checkpoint import verify_checkpoint

pytestmark = pytest.mark.slow


async def _issue_one(data_dir: Path) -> tuple[SignedCheckpoint, Envelope]:
    node = await Node.open(load(data_dir))
    try:
        if await node.store.get_issuer(ISSUER) is None:
            await node.store.add_issuer(Issuer(ISSUER, "HWK", ("energy",), IssuerStatus.ACTIVE))
        receipt = await node.registry.issue(Role(RoleKind.ADMIN), convert.draft(draft(), "d"))
        return receipt.checkpoint, node.descriptor
    finally:
        await node.close()


async def test_rotation_is_accepted_in_band_and_old_checkpoints_still_verify(
    tmp_path: Path,
) -> None:
    init = await init_node(tmp_path / "de", "DE", "127.0.0.1:7400")
    old_checkpoint, v1_envelope = await _issue_one(init.config.data_dir)
    pinned = pin_descriptor(v1_envelope, fingerprint(v1_envelope))  # the partner pins v1

    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "credfed.cli",
            "key",
            "rotate",
            "--data-dir",
            str(init.config.data_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr

    new_checkpoint, v2_envelope = await _issue_one(init.config.data_dir)
    v2 = accept_update(pinned, v2_envelope, utc_now())  # in band, signed by the old key
    assert v2.version == 2 and len(v2.keys) == 2
    old_key_id, new_key_id = v2.keys[0].key_id, v2.keys[1].key_id
    assert new_checkpoint.envelope.key_id == new_key_id
    assert old_checkpoint.envelope.key_id == old_key_id

    for cp in (old_checkpoint, new_checkpoint):
        when = cp.checkpoint.timestamp
        verify_checkpoint(cp.envelope, keys_at(v2, when), "DE")  # by the key valid then
    # The old key no longer speaks for the node after its retirement.
    assert old_key_id not in keys_at(v2, utc_now())

    # A "rotation" signed by a key the partner never trusted is refused.
    intruder = SigningKey.generate()
    forged = sign_descriptor(intruder, decode_descriptor(v2_envelope.payload))
    with pytest.raises(UntrustedSignerError):
        accept_update(pinned, forged, utc_now())
    # And the node keeps serving its v2 descriptor across restarts.
    again = own_descriptor(
        load(init.config.data_dir), SigningKey.load(load(init.config.data_dir).key_path), utc_now()
    )
    assert again == v2_envelope
