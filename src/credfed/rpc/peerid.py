"""Which pinned partner a federation-port client certificate belongs to.

The TLS layer of the federation port accepts a certificate that chains to
the CA of any pinned partner (descriptor ``tls_ca_cert``); it does not say
which one. A ``peer`` token records the partner it was issued to
(``Client.partner``): binding the two needs the country whose CA directly
issued the certificate -- a node's CA signs its client certificate itself
(credfed.crypto.tls), there are no intermediates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from credfed.federation.descriptor import Descriptor
from credfed.federation.trust import TrustState

#: Cached certificates at most; past it the cache starts again (a partner
#: has one or two client certificates at a time, this only caps abuse).
MAX_CACHED = 1024


class PartnerCAs:
    """The countries whose pinned CA directly issued a certificate.

    ``descriptors`` returns the partners' descriptors in force (the trust
    state's, so an accepted rotation is seen); the answer is cached per
    certificate fingerprint and the cache dropped when their CAs change.
    """

    def __init__(self, descriptors: Callable[[], Iterable[Descriptor]]) -> None:
        self._descriptors = descriptors
        self._seen: tuple[tuple[str, str], ...] = ()
        self._cas: list[tuple[str, x509.Certificate]] = []
        self._cache: dict[bytes, frozenset[str]] = {}

    def countries_of(self, certificate_pem: bytes) -> frozenset[str]:
        """The countries (normally one) whose CA directly issued
        ``certificate_pem``; empty if none did."""
        self._refresh()
        key = hashlib.sha256(certificate_pem).digest()
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = frozenset(self._issuers(certificate_pem))
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _refresh(self) -> None:
        current = tuple(sorted((d.country, d.tls_ca_cert) for d in self._descriptors()))
        if current == self._seen:
            return
        cas: list[tuple[str, x509.Certificate]] = []
        for country, bundle in current:
            if not bundle:
                continue  # a plaintext partner has no CA
            try:
                cas.extend((country, ca) for ca in x509.load_pem_x509_certificates(bundle.encode()))
            except ValueError:
                continue  # checked when pinned; unusable here, so it matches nothing
        self._seen, self._cas = current, cas
        self._cache.clear()

    def _issuers(self, certificate_pem: bytes) -> Iterable[str]:
        try:
            cert = x509.load_pem_x509_certificate(certificate_pem)
        except ValueError:
            return
        for country, ca in self._cas:
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            yield country


def of_trust(trust: TrustState) -> PartnerCAs:
    """The partners pinned in ``trust`` (a node's ``replicas.trust``)."""

    def descriptors() -> Iterable[Descriptor]:
        return [d for o in trust.origins() if (d := trust.descriptor(o)) is not None]

    return PartnerCAs(descriptors)
