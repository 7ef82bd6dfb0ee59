"""The partners this node has pinned, kept as their signed descriptors in
``<data dir>/peers/<COUNTRY>.json`` (like SSH's known_hosts: public data an
operator can read, back up and diff).

Rules: a descriptor is pinned only with the fingerprint the two operators
compared out of band (:func:`credfed.federation.descriptor.pin_descriptor`);
one partner per country; a node never pins itself; replacing a partner is
an explicit remove and add; a descriptor is replaced in band only by one the
trust state accepted as a rotation.

Pinning is trust; a *link* is transport: the endpoint and the ``peer`` token
the partner's operator issued to this node, in ``peers/<COUNTRY>.link.json``
(mode 0600). A partner pinned without a link is still trusted; its log and
lookups reach this node through the partners it is linked to (relay).
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from pathlib import Path

from credfed.config import split_host_port
from credfed.crypto.envelope import envelope_from_json, envelope_to_json
from credfed.errors import AlreadyExistsError, ConfigError, NotFoundError, ValidationError
from credfed.federation.descriptor import Descriptor, decode_descriptor, fingerprint, pin_descriptor
from credfed.files import write_atomically, write_private
from credfed.ids import is_country_code
from credfed.models import Envelope
from credfed.rpc_tokens import TOKEN_PREFIX

PEERS_DIR = "peers"
_LINK_SUFFIX = ".link.json"


@dataclass(frozen=True, slots=True)
class Link:
    """How to call a partner: its endpoint and the token it issued to us."""

    country: str
    endpoint: str
    token: str = ""

    def __repr__(self) -> str:  # never print the token
        return f"Link({self.country}, {self.endpoint})"


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

    def add(
        self,
        envelope: Envelope,
        expected_fingerprint: str,
        *,
        token: str | None = None,
        endpoint: str | None = None,
    ) -> Peer:
        """Pin a partner; with ``token``, link it too. Everything is checked
        before anything is written."""
        descriptor = pin_descriptor(envelope, expected_fingerprint)
        link = None if token is None else _link(descriptor, token, endpoint)
        if descriptor.country == self._own:
            raise ValidationError("descriptor", f"it is this node's own country ({self._own})")
        path = self._path(descriptor.country)
        if path.exists():
            raise AlreadyExistsError(
                f"a {descriptor.country} partner is already pinned: 'peer remove "
                f"{descriptor.country}' first to replace it"
            )
        self._dir.mkdir(mode=0o700, exist_ok=True)
        write_atomically(path, envelope_to_json(envelope))  # pinned completely or not at all
        if link is not None:
            self._write_link(link)
        return Peer(descriptor, envelope)

    def list(self) -> list[Peer]:
        if not self._dir.exists():
            return []
        peers = []
        for path in sorted(self._dir.glob("??.json")):
            envelope = envelope_from_json(path.read_bytes())
            # Re-checked on every load: a file edited by hand is refused.
            peers.append(Peer(pin_descriptor(envelope, fingerprint(envelope)), envelope))
        return peers

    def remove(self, country: str) -> None:
        path = self._path(country)
        if not path.exists():
            raise NotFoundError(f"no partner of country {country} is pinned")
        path.unlink()
        self._link_path(country).unlink(missing_ok=True)

    def replace(self, envelope: Envelope) -> None:
        """Store a descriptor the trust state accepted in band (a rotation)."""
        country = decode_descriptor(envelope.payload).country
        if not self._path(country).exists():
            raise NotFoundError(f"no partner of country {country} is pinned")
        write_private(self._path(country), envelope_to_json(envelope))

    def set_link(self, country: str, token: str, endpoint: str | None = None) -> Link:
        """Link a pinned partner: ``token`` is the ``peer`` token its operator
        issued; ``endpoint`` defaults to the first one in its descriptor."""
        peer = {p.descriptor.country: p for p in self.list()}.get(country)
        if peer is None:
            raise NotFoundError(f"no partner of country {country} is pinned: 'peer add' first")
        link = _link(peer.descriptor, token, endpoint)
        self._write_link(link)
        return link

    def _write_link(self, link: Link) -> None:
        data = {"endpoint": link.endpoint, "token": link.token}
        write_private(self._link_path(link.country), json.dumps(data).encode())

    def links(self) -> builtins.list[Link]:
        out = []
        for peer in self.list():
            path = self._link_path(peer.descriptor.country)
            if path.exists():
                data = json.loads(path.read_text())
                out.append(Link(peer.descriptor.country, str(data["endpoint"]), str(data["token"])))
        return out

    def _link_path(self, country: str) -> Path:
        return self._path(country).with_name(f"{country}{_LINK_SUFFIX}")

    def _path(self, country: str) -> Path:
        if not is_country_code(country):
            raise ValidationError("country", f"{country!r} is not a two-letter country code")
        return self._dir / f"{country}.json"


def _link(descriptor: Descriptor, token: str, endpoint: str | None) -> Link:
    token = token.strip()
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200 or not token.isascii():
        raise ValidationError("token", "is not a credfed token (it starts with cf_)")
    if endpoint is None:
        if not descriptor.endpoints:
            raise ValidationError(
                "endpoint", f"the {descriptor.country} descriptor lists none: give --endpoint"
            )
        endpoint = descriptor.endpoints[0]
    try:
        split_host_port(endpoint, "endpoint")
    except ConfigError as exc:
        raise ValidationError("endpoint", str(exc)) from None
    return Link(descriptor.country, endpoint, token)
