"""Creating a node's data directory and its API clients (no grpc)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from credfed import config as cfg
from credfed import ids
from credfed.crypto import tls
from credfed.crypto.keys import SigningKey
from credfed.crypto.tls import TlsFiles, create_node_tls
from credfed.errors import AlreadyExistsError, ValidationError
from credfed.models import Client, RoleKind, parse_role
from credfed.rpc_tokens import hash_token, new_token
from credfed.storage.sqlite import SqliteStore


@dataclass(frozen=True, slots=True)
class Initialised:
    config: cfg.Config
    key_id: str
    admin_token: str
    admin_token_file: Path


async def init_node(
    data_dir: Path,
    country: str,
    listen: str,
    *,
    plaintext: bool = True,
    federation_listen: str = "",
    hostnames: tuple[str, ...] = (),
    client_cert_listen: str = "",
    metrics_listen: str = "",
) -> Initialised:
    """Create key (0600), configuration, database and an admin token (0600);
    with ``plaintext=False`` also the node's CA and TLS certificates.

    The Python default is plaintext (loopback development and tests); the
    ``credfed init`` command defaults to TLS."""
    config, key_id = _create_files(
        data_dir,
        country,
        listen,
        plaintext,
        federation_listen,
        hostnames,
        client_cert_listen,
        metrics_listen,
    )
    token = await add_client(config, "admin", "node administrator")
    token_path = data_dir / cfg.ADMIN_TOKEN_FILE
    _write_private(token_path, token + "\n")
    return Initialised(config, key_id, token, token_path)


def _create_files(  # noqa: PLR0917 - init_node's options, passed through
    data_dir: Path,
    country: str,
    listen: str,
    plaintext: bool,
    federation_listen: str,
    hostnames: tuple[str, ...],
    client_cert_listen: str = "",
    metrics_listen: str = "",
) -> tuple[cfg.Config, str]:
    country = country.strip().upper()
    if not ids.is_country_code(country):
        raise ValidationError("country", f"{country!r} is not a two-letter country code")
    cfg.check_listen(listen, plaintext=plaintext)
    if not plaintext:
        if not federation_listen:
            host, port = cfg.split_host_port(listen)
            federation_listen = f"{host}:{port + 1 if port else 0}"
        cfg.check_listen(federation_listen, False, "server.federation_listen")
        if client_cert_listen:
            cfg.check_listen(client_cert_listen, False, "server.client_cert_listen")
        hostnames = hostnames or _default_hostnames(listen)
    elif client_cert_listen:
        raise ValidationError("client_cert_listen", "needs TLS (not with --plaintext-dev)")
    if metrics_listen:
        cfg.split_host_port(metrics_listen, "metrics.listen")
    if (data_dir / cfg.CONFIG_FILE).exists():
        raise AlreadyExistsError(f"{data_dir} already holds a node ({cfg.CONFIG_FILE} exists)")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (data_dir / cfg.KEY_DIR).mkdir(exist_ok=True, mode=0o700)
    key = SigningKey.generate()
    key_rel = f"{cfg.KEY_DIR}/signing-{key.key_id}.pem"
    key.save(data_dir / key_rel)
    (data_dir / cfg.KEY_DIR / f"signing-{key.key_id}.pub").write_text(key.public_raw.hex() + "\n")
    config = cfg.Config(
        data_dir=data_dir,
        country=country,
        node_id=f"{country.lower()}-{secrets.token_hex(4)}",
        listen=listen,
        plaintext=plaintext,
        signing_key=key_rel,
        federation_listen="" if plaintext else federation_listen,
        tls_hostnames=() if plaintext else hostnames,
        client_cert_listen=client_cert_listen,
        metrics_listen=metrics_listen,
    )
    if not plaintext:
        create_node_tls(
            TlsFiles(config.tls_dir), config.node_id, country, list(hostnames), datetime.now(UTC)
        )
    # Written last: its presence marks a complete node directory.
    (data_dir / cfg.CONFIG_FILE).write_text(config.to_toml())
    return config, key.key_id


def _default_hostnames(listen: str) -> tuple[str, ...]:
    host, _ = cfg.split_host_port(listen)
    names = [host] if host not in ("0.0.0.0", "::") else []  # noqa: S104 - compared, not bound
    return tuple(dict.fromkeys([*names, "localhost", "127.0.0.1"]))


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


async def add_client(
    config: cfg.Config,
    role_text: str,
    name: str,
    expires_in: timedelta | None = None,
    *,
    partner: str | None = None,
) -> str:
    """Register an API client; returns its token (stored only as a hash).
    See :func:`create_client`, which also returns the client."""
    _, token = await create_client(config, role_text, name, expires_in, partner=partner)
    return token


async def create_client(
    config: cfg.Config,
    role_text: str,
    name: str,
    expires_in: timedelta | None = None,
    *,
    partner: str | None = None,
) -> tuple[Client, str]:
    """Register an API client; returns it and its token. The token is stored
    only as a hash: this is the one time it can be shown.

    ``expires_in``: the token stops working that long after its creation
    (None: it never expires, until revoked). ``partner``: required for the
    ``peer`` role, refused for the others -- the country of the partner the
    token is for; on the federation port it works only with a certificate
    of that partner's CA (see credfed.rpc.peerid)."""
    try:
        role = parse_role(role_text)
    except ValueError as exc:
        raise ValidationError("role", str(exc)) from None
    _check_partner(config, role.kind, partner)
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValidationError("expires_in", "must be a positive duration")
    created_at = datetime.now(UTC)
    try:
        expires_at = None if expires_in is None else created_at + expires_in
    except OverflowError:
        raise ValidationError("expires_in", "is too far in the future") from None
    store = await SqliteStore.open(config.db_path)
    try:
        if role.issuer_id is not None and await store.get_issuer(role.issuer_id) is None:
            raise ValidationError("role", f"issuer {role.issuer_id} is not registered at this node")
        token = new_token()
        client = Client(
            client_id=secrets.token_hex(8),
            name=name,
            role=role,
            token_hash=hash_token(token),
            created_at=created_at,
            expires_at=expires_at,
            partner=partner,
        )
        await store.add_client(client)
        return client, token
    finally:
        await store.close()


def _check_partner(config: cfg.Config, kind: RoleKind, partner: str | None) -> None:
    if kind is not RoleKind.PEER:
        if partner is not None:
            raise ValidationError("partner", f"only for the peer role, not {kind.value}")
        return
    if partner is None:
        # Without it the token could not be bound to the partner's certificate.
        raise ValidationError("partner", "required with --role peer: the partner's country (FR)")
    if not ids.is_country_code(partner):
        raise ValidationError("partner", f"{partner[:8]!r} is not a two-letter country code (FR)")
    if partner == config.country:
        raise ValidationError("partner", f"{partner} is this node's own country")


async def create_certificate_client(
    config: cfg.Config, role_text: str, name: str, expires_in: timedelta | None = None
) -> tuple[Client, bytes, bytes]:
    """Register a client that authenticates with a certificate of this
    node's CA instead of a token; returns it, its private key and its
    certificate (PEM). Only a digest of the certificate is stored; the key
    exists only in what is returned. Revoked like a token
    (``credfed token revoke``)."""
    if config.plaintext:
        raise ValidationError("data_dir", "this node has no TLS CA (plaintext development mode)")
    try:
        role = parse_role(role_text)
    except ValueError as exc:
        raise ValidationError("role", str(exc)) from None
    created_at = datetime.now(UTC)
    days = tls.LEAF_DAYS if expires_in is None else max(1, expires_in.days or 1)
    key_pem, cert_pem = tls.issue_client_certificate(
        tls.TlsFiles(config.tls_dir), name, config.country, created_at, days
    )
    store = await SqliteStore.open(config.db_path)
    try:
        if role.issuer_id is not None and await store.get_issuer(role.issuer_id) is None:
            raise ValidationError("role", f"issuer {role.issuer_id} is not registered at this node")
        client = Client(
            client_id=secrets.token_hex(8),
            name=name,
            role=role,
            token_hash=tls.certificate_digest(cert_pem),
            created_at=created_at,
            expires_at=None if expires_in is None else created_at + expires_in,
        )
        await store.add_client(client)
        return client, key_pem, cert_pem
    finally:
        await store.close()


async def list_clients(config: cfg.Config) -> list[Client]:
    """Every API client of the node, revoked and expired ones included."""
    store = await SqliteStore.open(config.db_path)
    try:
        return await store.list_clients()
    finally:
        await store.close()


async def revoke_client(config: cfg.Config, client_id: str) -> Client:
    """Revoke an API client now (idempotent: a revoked client keeps its first
    revocation time). A running node refuses its token within
    :data:`credfed.rpc.auth.CACHE_SECONDS`. NotFoundError for an unknown id."""
    store = await SqliteStore.open(config.db_path)
    try:
        return await store.revoke_client(client_id, datetime.now(UTC))
    finally:
        await store.close()
