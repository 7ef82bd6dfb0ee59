"""The partners this node has pinned, kept as their signed descriptors in
``<data dir>/peers/<COUNTRY>.json`` (like SSH's known_hosts: public data an
operator can read, back up and diff).

Rules: a descriptor is pinned only with the fingerprint the two operators
compared out of band (:func:`credfed.federation.descriptor.pin_descriptor`);
one partner per country; a node never pins itself; replacing a partner is
an explicit remove and add.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from credfed.crypto.envelope import envelope_from_json, envelope_to_json
from credfed.errors import AlreadyExistsError, NotFoundError, ValidationError
from credfed.federation.descriptor import Descriptor, fingerprint, pin_descriptor
from credfed.ids import is_country_code
from credfed.models import Envelope

PEERS_DIR = "peers"


@dataclass(frozen=True, slots=True)
class Peer:
    descriptor: Descriptor
    envelope: Envelope

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.envelope)


class PeerDirectory:
    def __init__(self, data_dir: Path, own_country: str) -> None:
        self._dir = data_dir / PEERS_DIR
        self._own = own_country

    def add(self, envelope: Envelope, expected_fingerprint: str) -> Peer:
        descriptor = pin_descriptor(envelope, expected_fingerprint)
        if descriptor.country == self._own:
            raise ValidationError("descriptor", f"it is this node's own country ({self._own})")
        path = self._path(descriptor.country)
        if path.exists():
            raise AlreadyExistsError(
                f"a {descriptor.country} partner is already pinned: 'peer remove "
                f"{descriptor.country}' first to replace it"
            )
        self._dir.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(envelope_to_json(envelope))
        os.replace(tmp, path)  # a partner is pinned completely or not at all
        return Peer(descriptor, envelope)

    def list(self) -> list[Peer]:
        if not self._dir.exists():
            return []
        peers = []
        for path in sorted(self._dir.glob("*.json")):
            envelope = envelope_from_json(path.read_bytes())
            # Re-checked on every load: a file edited by hand is refused.
            peers.append(Peer(pin_descriptor(envelope, fingerprint(envelope)), envelope))
        return peers

    def remove(self, country: str) -> None:
        path = self._path(country)
        if not path.exists():
            raise NotFoundError(f"no partner of country {country} is pinned")
        path.unlink()

    def _path(self, country: str) -> Path:
        if not is_country_code(country):
            raise ValidationError("country", f"{country!r} is not a two-letter country code")
        return self._dir / f"{country}.json"
