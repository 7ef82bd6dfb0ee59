"""This node's own descriptor: created on first start, kept in the data
directory, served to partners (``GetNodeDescriptor``) and exported for
pairing (``credfed peer export``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from credfed.config import CONFIG_FILE, KEY_DIR, Config
from credfed.crypto.envelope import envelope_from_json, envelope_to_json
from credfed.crypto.keys import SigningKey
from credfed.crypto.tls import TlsFiles
from credfed.federation.descriptor import (
    Descriptor,
    KeyEntry,
    decode_descriptor,
    rotate,
    sign_descriptor,
)
from credfed.files import write_atomically
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
        endpoints=_endpoints(config),
        keys=(KeyEntry(key.key_id, key.verifying_key(), now, None),),
        # Partners verify this node's certificates (both ways) against it.
        tls_ca_cert="" if config.plaintext else TlsFiles(config.tls_dir).ca_cert.read_text(),
        version=1,
        issued_at=now,
    )
    envelope = sign_descriptor(key, descriptor)
    write_atomically(path, envelope_to_json(envelope))
    return envelope


def _endpoints(config: Config) -> tuple[str, ...]:
    """Where partners call: the mutual-TLS federation port, or in plaintext
    development the one port. A port-0 node (tests) has none to publish."""
    endpoint = config.listen if config.plaintext else config.federation_listen
    return () if endpoint.endswith(":0") else (endpoint,)


def rotate_key(config: Config, now: datetime) -> tuple[Config, Envelope]:
    """Make a new signing key and the next descriptor version, signed by the
    old key (the one partners already trust), which stays listed up to
    ``now`` so that what it signed keeps verifying. Returns the new
    configuration (now naming the new key) and the new descriptor.

    The running node keeps its key until it is restarted.
    """
    old = SigningKey.load(config.key_path)
    current = decode_descriptor(own_descriptor(config, old, now).payload)
    new = SigningKey.generate()
    key_rel = f"{KEY_DIR}/signing-{new.key_id}.pem"
    new.save(config.data_dir / key_rel)
    (config.data_dir / KEY_DIR / f"signing-{new.key_id}.pub").write_text(
        new.public_raw.hex() + "\n"
    )
    _, envelope = rotate(current, old, new, now)
    rotated = replace(config, signing_key=key_rel)
    # Two renames, not one atomic step: a crash between them leaves the
    # configuration naming the old key, which the new descriptor retires at
    # ``now``; pointing keys.signing_key at the newest key file finishes it.
    write_atomically(config.data_dir / DESCRIPTOR_FILE, envelope_to_json(envelope))
    write_atomically(config.data_dir / CONFIG_FILE, rotated.to_toml().encode())
    return rotated, envelope
