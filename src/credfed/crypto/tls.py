"""A node's TLS material: its own CA and the certificates it issues itself.

ECDSA P-256 throughout (grpcio does not accept Ed25519 TLS certificates).
``credfed init`` creates, in ``<data dir>/tls/``:

* ``ca.pem`` / ``ca.key`` -- the node's CA. Its certificate travels in the
  node descriptor, so partners pin it with everything else.
* ``server.pem`` / ``server.key`` -- the serving certificate (SANs: the
  node's host names and addresses).
* ``client.pem`` / ``client.key`` -- the certificate the node presents when
  it calls partners (mutual TLS on their federation port).

Private keys are written 0600. ``rotate_leaves`` re-issues the two leaf
certificates from the same CA; a serving node picks them up without a
restart (the server reloads its certificate when the files change).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from credfed.errors import ConfigError
from credfed.files import write_atomically, write_private

TLS_DIR = "tls"
CA_YEARS = 10
LEAF_DAYS = 397  # the CA/Browser Forum's ceiling, a habit worth keeping


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where a node's TLS material lives."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    def read(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"tls: cannot read {path}: {exc.strerror}") from None


def create_node_tls(
    files: TlsFiles, node_id: str, country: str, hostnames: list[str], now: datetime
) -> None:
    """A new CA and both leaf certificates (``credfed init``)."""
    files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"{node_id} CA", country)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(files.ca_key, _key_pem(ca_key))
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    rotate_leaves(files, node_id, country, hostnames, now)


def rotate_leaves(
    files: TlsFiles, node_id: str, country: str, hostnames: list[str], now: datetime
) -> None:
    """New server and client certificates from the node's CA."""
    ca_key = serialization.load_pem_private_key(files.read(files.ca_key), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"tls: {files.ca_key} is not an ECDSA key")
    ca = x509.load_pem_x509_certificate(files.read(files.ca_cert))
    for cert_path, key_path, usage, sans in (
        (files.server_cert, files.server_key, ExtendedKeyUsageOID.SERVER_AUTH, hostnames),
        (files.client_cert, files.client_key, ExtendedKeyUsageOID.CLIENT_AUTH, []),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(node_id, country))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_san(h) for h in sans]), critical=False
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        # Key first: a reader that sees the new certificate finds its key.
        write_private(key_path, _key_pem(key))
        write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def issue_client_certificate(
    files: TlsFiles, name: str, country: str, now: datetime, days: int = LEAF_DAYS
) -> tuple[bytes, bytes]:
    """A client certificate from the node's CA, for an employer's system that
    authenticates by certificate instead of a token: (key PEM, cert PEM)."""
    ca_key = serialization.load_pem_private_key(files.read(files.ca_key), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"tls: {files.ca_key} is not an ECDSA key")
    ca = x509.load_pem_x509_certificate(files.read(files.ca_cert))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name, country))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def certificate_digest(pem_or_der: bytes) -> bytes:
    """What the node stores for a certificate client (in place of a token
    hash): SHA-256 over a label and the certificate's DER bytes."""
    if pem_or_der.lstrip().startswith(b"-----BEGIN"):
        der = x509.load_pem_x509_certificate(pem_or_der).public_bytes(serialization.Encoding.DER)
    else:
        der = pem_or_der
    return hashlib.sha256(b"credfed-client-certificate\x00" + der).digest()


def check_ca_pem(pem: str) -> None:
    """A CA certificate as a partner's descriptor carries it."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise ConfigError(f"tls: not a CA certificate: {exc}") from None
    if not constraints.ca:
        raise ConfigError("tls: the certificate is not a CA certificate")


def serial_of(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


def _name(common_name: str, country: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "credfed"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
