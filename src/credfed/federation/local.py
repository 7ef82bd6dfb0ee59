"""This node's own descriptor: created on first start, kept in the data
directory, served to partners (``GetNodeDescriptor``) and exported for
pairing (``credfed peer export``)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from credfed.config import Config
from credfed.crypto.envelope import envelope_from_json, envelope_to_json
from credfed.crypto.keys import SigningKey
from credfed.federation.descriptor import (
    Descriptor,
    KeyEntry,
    decode_descriptor,
    sign_descriptor,
)
from credfed.models import Envelope

DESCRIPTOR_FILE = "descriptor.json"


def own_descriptor(config: Config, key: SigningKey, now: datetime) -> Envelope:
    """Load the node's signed descriptor, creating version 1 if there is none."""
    path = config.data_dir / DESCRIPTOR_FILE
    if path.exists():
        envelope = envelope_from_json(path.read_bytes())
        decode_descriptor(envelope.payload)  # refuse a corrupt file at start
        return envelope
    descriptor = Descriptor(
        country=config.country,
        node_id=config.node_id,
        # A node told to listen on port 0 (tests) has no fixed endpoint to publish.
        endpoints=() if config.listen.endswith(":0") else (config.listen,),
        keys=(KeyEntry(key.key_id, key.verifying_key(), now, None),),
        tls_ca_cert="",  # mutual TLS arrives with the security issue
        version=1,
        issued_at=now,
    )
    envelope = sign_descriptor(key, descriptor)
    _write_atomically(path, envelope_to_json(envelope))
    return envelope


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
