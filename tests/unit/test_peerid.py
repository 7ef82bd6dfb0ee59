"""Which pinned partner's CA issued a federation client certificate
(credfed.rpc.peerid): real CAs and certificates from credfed.crypto.tls."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from credfed.clock import utc_now
from credfed.crypto.tls import TlsFiles, create_node_tls
from credfed.federation.descriptor import Descriptor
from credfed.rpc.peerid import PartnerCAs


def _node(tmp_path: Path, country: str) -> TlsFiles:
    files = TlsFiles(tmp_path / country)
    create_node_tls(files, f"{country.lower()}-1", country, ["127.0.0.1"], utc_now())
    return files


def _descriptor(country: str, ca_pem: str) -> Descriptor:
    return Descriptor(country, f"{country.lower()}-1", (), (), ca_pem, 1, utc_now())


def test_the_issuing_partner_is_found_and_the_answer_follows_the_pinned_cas(
    tmp_path: Path,
) -> None:
    fr, pl, at = (_node(tmp_path, c) for c in ("FR", "PL", "AT"))
    pinned = [
        _descriptor("FR", fr.ca_cert.read_text()),
        _descriptor("PL", pl.ca_cert.read_text()),
        _descriptor("CZ", ""),  # a plaintext partner: no CA, matches nothing
    ]
    cas = PartnerCAs(lambda: pinned)
    fr_client, pl_client = fr.client_cert.read_bytes(), pl.client_cert.read_bytes()
    assert cas.countries_of(fr_client) == {"FR"}
    assert cas.countries_of(pl_client) == {"PL"}
    assert cas.countries_of(fr_client) == {"FR"}  # cached, same answer
    # A CA nobody pinned, and garbage: nobody's.
    assert cas.countries_of(at.client_cert.read_bytes()) == frozenset()
    assert cas.countries_of(b"not a certificate") == frozenset()
    # A rotation: PL's descriptor now carries a bundle of its old CA and AT's.
    pinned[1] = replace(pinned[1], tls_ca_cert=pl.ca_cert.read_text() + at.ca_cert.read_text())
    assert cas.countries_of(at.client_cert.read_bytes()) == {"PL"}
    assert cas.countries_of(pl_client) == {"PL"}
    # FR removed: its certificate belongs to nobody any more (cache dropped).
    del pinned[0]
    assert cas.countries_of(fr_client) == frozenset()
