"""Node configuration: one TOML file in the data directory, written by
``credfed init``; a few settings may be overridden by environment variables
(``CREDFED_LISTEN``). Validated on load, errors name the setting."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from credfed import ids
from credfed.errors import ConfigError

CONFIG_FILE = "credfed.toml"
DB_FILE = "credfed.db"
KEY_DIR = "keys"
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True, slots=True)
class FederationSettings:
    """``[federation]``: how this node keeps up with its partners. Times in seconds."""

    #: Anti-entropy: every link is asked for every origin's checkpoint this often.
    sync_interval: float = 30.0
    #: An unchanged log is re-signed this often, so partners can tell a quiet
    #: origin from a frozen one; also the subscription keepalive.
    checkpoint_interval: float = 60.0
    #: Past this age of its status data, a foreign credential's status is unknown.
    max_staleness: float = 900.0
    #: Per-origin overrides of max_staleness (``[federation.max_staleness_by_origin]``).
    max_staleness_by_origin: dict[str, float] = field(default_factory=dict)
    #: Other countries' signed records are kept in memory at most this long...
    record_cache_ttl: float = 3600.0
    #: ...and at most this many.
    record_cache_max: int = 10_000
    #: Deadline of every unary call to a partner.
    call_timeout: float = 5.0

    def staleness_for(self, origin: str) -> float:
        return self.max_staleness_by_origin.get(origin, self.max_staleness)

    def to_dict(self) -> dict[str, object]:
        return {
            "sync_interval": self.sync_interval,
            "checkpoint_interval": self.checkpoint_interval,
            "max_staleness": self.max_staleness,
            "record_cache_ttl": self.record_cache_ttl,
            "record_cache_max": self.record_cache_max,
            "call_timeout": self.call_timeout,
            "max_staleness_by_origin": dict(self.max_staleness_by_origin),
        }


_SECONDS = (
    "sync_interval",
    "checkpoint_interval",
    "max_staleness",
    "record_cache_ttl",
    "call_timeout",
)


def _federation(raw: object) -> FederationSettings:
    if raw is None:
        return FederationSettings()
    if not isinstance(raw, dict):
        raise ConfigError("federation: must be a table")
    known = {*_SECONDS, "record_cache_max", "max_staleness_by_origin"}
    for name in raw:
        if name not in known:
            raise ConfigError(f"federation.{name}: unknown setting")
    values: dict[str, object] = {}
    for name in _SECONDS:
        if name in raw:
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"federation.{name}: must be a positive number of seconds")
            values[name] = float(value)
    if "record_cache_max" in raw:
        value = raw["record_cache_max"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError("federation.record_cache_max: must be a whole number >= 0")
        values["record_cache_max"] = value
    by_origin = raw.get("max_staleness_by_origin", {})
    if not isinstance(by_origin, dict):
        raise ConfigError("federation.max_staleness_by_origin: must be a table")
    checked: dict[str, float] = {}
    for origin, value in by_origin.items():
        setting = f"federation.max_staleness_by_origin.{origin}"
        if not ids.is_country_code(origin):
            raise ConfigError(f"{setting}: not a two-letter country code")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{setting}: must be a positive number of seconds")
        checked[origin] = float(value)
    # values holds only the fields checked above, each of its field's type.
    return FederationSettings(**values, max_staleness_by_origin=checked)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path
    country: str
    node_id: str
    listen: str
    plaintext: bool
    signing_key: str
    federation: FederationSettings = field(default_factory=FederationSettings)

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
                "federation": self.federation.to_dict(),
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
            federation=_federation(raw.get("federation")),
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: missing setting {exc}") from None
    if not ids.is_country_code(config.country):
        raise ConfigError(f"node.country: {config.country!r} is not a two-letter country code")
    check_listen(config.listen, config.plaintext)
    return config
