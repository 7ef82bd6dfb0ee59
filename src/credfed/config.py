"""Node configuration: one TOML file in the data directory, written by
``credfed init``; a few settings may be overridden by environment variables
(``CREDFED_LISTEN``). Validated on load, errors name the setting."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from credfed import ids
from credfed.errors import ConfigError

CONFIG_FILE = "credfed.toml"
DB_FILE = "credfed.db"
KEY_DIR = "keys"
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path
    country: str
    node_id: str
    listen: str
    plaintext: bool
    signing_key: str

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE

    @property
    def key_path(self) -> Path:
        return self.data_dir / self.signing_key

    def to_toml(self) -> str:
        return tomli_w.dumps(
            {
                "node": {"country": self.country, "node_id": self.node_id},
                "server": {"listen": self.listen, "plaintext": self.plaintext},
                "keys": {"signing_key": self.signing_key},
            }
        )


def split_host_port(listen: str, setting: str = "server.listen") -> tuple[str, int]:
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{setting}: {listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(listen: str, plaintext: bool) -> None:
    host, _ = split_host_port(listen)
    if plaintext and not is_loopback(host):
        raise ConfigError(
            f"server.listen: plaintext listening on {host} refused: plaintext is for "
            "loopback development only (127.0.0.0/8, ::1)"
        )
    if not plaintext:
        raise ConfigError(
            "server.plaintext: TLS listening is not available in this release; "
            "set plaintext = true and listen on a loopback address"
        )


def load(data_dir: Path) -> Config:
    path = data_dir / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run 'credfed init' first") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        node, server, keys = raw["node"], raw["server"], raw["keys"]
        config = Config(
            data_dir=data_dir,
            country=str(node["country"]),
            node_id=str(node["node_id"]),
            listen=os.environ.get("CREDFED_LISTEN", str(server["listen"])),
            plaintext=bool(server.get("plaintext", False)),
            signing_key=str(keys["signing_key"]),
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: missing setting {exc}") from None
    if not ids.is_country_code(config.country):
        raise ConfigError(f"node.country: {config.country!r} is not a two-letter country code")
    check_listen(config.listen, config.plaintext)
    return config
