"""`credfed config check`: beyond the settings themselves (validated by
:func:`credfed.config.load`), what a node needs on disk before it can
serve: its signing key, TLS material and database, private where they
hold secrets."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from credfed.config import ADMIN_TOKEN_FILE, Config
from credfed.crypto.tls import TlsFiles
from credfed.errors import ConfigError

#: Group or world may read or write it: a secret must be the owner's alone.
_SHARED = stat.S_IRWXG | stat.S_IRWXO


def _private_file(path: Path, setting: str) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{setting}: {path} is missing") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{setting}: {path} is not a file")
    if mode & _SHARED:
        raise ConfigError(
            f"{setting}: {path} is readable by others (mode {stat.S_IMODE(mode):04o}):"
            f" chmod 600 {path}"
        )


def check_files(config: Config) -> list[str]:
    """Raise ConfigError naming the first problem; return what was checked."""
    checked = []
    _private_file(config.key_path, "keys.signing_key")
    checked.append(f"signing key {config.signing_key} (owner only)")
    if not config.plaintext:
        files = TlsFiles(config.tls_dir)
        for path in (files.server_key, files.client_key, files.ca_key):
            _private_file(path, "tls")
        for path in (files.server_cert, files.client_cert, files.ca_cert):
            if not path.is_file():
                raise ConfigError(f"tls: {path} is missing: run 'credfed tls rotate'")
        checked.append("TLS CA, server and client certificates and keys (keys owner only)")
    token = config.data_dir / ADMIN_TOKEN_FILE
    if token.exists():
        _private_file(token, "admin token")
    if not config.db_path.is_file():
        raise ConfigError(f"database: {config.db_path} is missing: run 'credfed init'")
    try:
        # Read-only, so a check never creates or changes anything.
        db = sqlite3.connect(f"file:{config.db_path}?mode=ro", uri=True, timeout=5.0)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"database: {config.db_path}: {exc}") from None
    checked.append(f"database {config.db_path.name} (schema version {version})")
    return checked
