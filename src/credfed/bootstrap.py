"""Creating a node's data directory and its API clients (no grpc)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from credfed import config as cfg
from credfed import ids
from credfed.crypto.keys import SigningKey
from credfed.errors import AlreadyExistsError, ValidationError
from credfed.models import Client, parse_role
from credfed.rpc_tokens import hash_token, new_token
from credfed.storage.sqlite import SqliteStore


@dataclass(frozen=True, slots=True)
class Initialised:
    config: cfg.Config
    key_id: str
    admin_token: str
    admin_token_file: Path


async def init_node(data_dir: Path, country: str, listen: str) -> Initialised:
    """Create key (0600), configuration, database and an admin token (0600)."""
    config, key_id = _create_files(data_dir, country, listen)
    token = await add_client(config, "admin", "node administrator")
    token_path = data_dir / cfg.ADMIN_TOKEN_FILE
    _write_private(token_path, token + "\n")
    return Initialised(config, key_id, token, token_path)


def _create_files(data_dir: Path, country: str, listen: str) -> tuple[cfg.Config, str]:
    country = country.strip().upper()
    if not ids.is_country_code(country):
        raise ValidationError("country", f"{country!r} is not a two-letter country code")
    cfg.check_listen(listen, plaintext=True)
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
        plaintext=True,
        signing_key=key_rel,
    )
    # Written last: its presence marks a complete node directory.
    (data_dir / cfg.CONFIG_FILE).write_text(config.to_toml())
    return config, key.key_id


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


async def add_client(config: cfg.Config, role_text: str, name: str) -> str:
    """Register an API client; returns its token (stored only as a hash)."""
    try:
        role = parse_role(role_text)
    except ValueError as exc:
        raise ValidationError("role", str(exc)) from None
    store = await SqliteStore.open(config.db_path)
    try:
        if role.issuer_id is not None and await store.get_issuer(role.issuer_id) is None:
            raise ValidationError("role", f"issuer {role.issuer_id} is not registered at this node")
        token = new_token()
        await store.add_client(
            Client(
                client_id=secrets.token_hex(8),
                name=name,
                role=role,
                token_hash=hash_token(token),
                created_at=datetime.now(UTC),
            )
        )
        return token
    finally:
        await store.close()
