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
from credfed.models import RoleKind

CONFIG_FILE = "credfed.toml"
DB_FILE = "credfed.db"
KEY_DIR = "keys"
TLS_DIR = "tls"
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


#: Keys of ``[limits.rate_by_role]`` and ``[limits.burst_by_role]``: the role
#: kinds, and ``anonymous`` for the public calls (reflection) limited per address.
LIMIT_ROLES = (*(kind.value for kind in RoleKind), "anonymous")


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """``[limits]``: what one client may ask of this node. Times in seconds.

    Every authenticated client (one API token) has a token bucket of ``burst``
    requests, refilled at ``rate`` per second; a call finding it empty is
    refused with RESOURCE_EXHAUSTED and the time to wait. A call counts once,
    however many messages it streams (BulkIssueCredentials, SubscribeLog);
    a VerifyBatch counts its items, so its size must not exceed the burst.
    Health checks are not limited; reflection is, per client address.

    The defaults are a guard against runaway clients, not against a patient
    scraper: ``make bench`` drives ~2,200 Verify/s from one verifier token
    (and faster machines more), and must keep measuring the node, not the
    limit. A node serving the public should set ``[limits.rate_by_role]
    verifier`` (and ``[limits.burst_by_role] verifier``) to what its
    employers need, e.g. 20/s with a burst of 100.
    """

    #: Requests per second, sustained, per client.
    rate: float = 10_000.0
    #: Bucket size: requests a client may send at once after a quiet spell.
    burst: int = 10_000
    #: Per-role overrides of rate (keys: :data:`LIMIT_ROLES`).
    rate_by_role: dict[str, float] = field(default_factory=dict)
    #: Per-role overrides of burst.
    burst_by_role: dict[str, int] = field(default_factory=dict)
    #: Concurrent SubscribeLog calls per client. A partner follows every origin
    #: of the federation over its link (one subscription each), so this must
    #: exceed the number of countries in the federation.
    max_subscriptions_per_client: int = 64
    #: A connection without calls is closed after this long (grpc.max_connection_idle_ms).
    idle_timeout: float = 300.0
    #: The server pings a client with calls in flight after this long without
    #: traffic, and drops the connection if no answer comes within keepalive_timeout.
    keepalive_time: float = 60.0
    keepalive_timeout: float = 20.0

    def rate_for(self, role: str) -> float:
        return self.rate_by_role.get(role, self.rate)

    def burst_for(self, role: str) -> int:
        return self.burst_by_role.get(role, self.burst)

    def to_dict(self) -> dict[str, object]:
        return {
            "rate": self.rate,
            "burst": self.burst,
            "max_subscriptions_per_client": self.max_subscriptions_per_client,
            "idle_timeout": self.idle_timeout,
            "keepalive_time": self.keepalive_time,
            "keepalive_timeout": self.keepalive_timeout,
            "rate_by_role": dict(self.rate_by_role),
            "burst_by_role": dict(self.burst_by_role),
        }


_LIMIT_SECONDS = ("idle_timeout", "keepalive_time", "keepalive_timeout")


def _positive(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value > 0


def _whole(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


def _by_role(raw: dict[str, object], name: str) -> dict[str, int | float]:
    """A per-role table, each value checked as the setting it overrides."""
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"limits.{name}: must be a table")
    checked: dict[str, int | float] = {}
    for role, value in table.items():
        setting = f"limits.{name}.{role}"
        if role not in LIMIT_ROLES:
            raise ConfigError(f"{setting}: unknown role (one of {', '.join(LIMIT_ROLES)})")
        if name == "rate_by_role" and not _positive(value):
            raise ConfigError(f"{setting}: must be a positive number of requests per second")
        if name == "burst_by_role" and not _whole(value):
            raise ConfigError(f"{setting}: must be a whole number >= 1")
        assert isinstance(value, int | float)  # checked above
        checked[role] = value
    return checked


def _limits(raw: object) -> LimitSettings:
    if raw is None:
        return LimitSettings()
    if not isinstance(raw, dict):
        raise ConfigError("limits: must be a table")
    known = {
        *_LIMIT_SECONDS,
        "rate",
        "burst",
        "max_subscriptions_per_client",
        "rate_by_role",
        "burst_by_role",
    }
    for name in raw:
        if name not in known:
            raise ConfigError(f"limits.{name}: unknown setting")
    values: dict[str, object] = {}
    for name in _LIMIT_SECONDS:
        if name in raw:
            if not _positive(raw[name]):
                raise ConfigError(f"limits.{name}: must be a positive number of seconds")
            values[name] = float(raw[name])
    if "rate" in raw:
        if not _positive(raw["rate"]):
            raise ConfigError("limits.rate: must be a positive number of requests per second")
        values["rate"] = float(raw["rate"])
    for name in ("burst", "max_subscriptions_per_client"):
        if name in raw:
            if not _whole(raw[name]):
                raise ConfigError(f"limits.{name}: must be a whole number >= 1")
            values[name] = raw[name]
    rates = {role: float(v) for role, v in _by_role(raw, "rate_by_role").items()}
    bursts = {role: int(v) for role, v in _by_role(raw, "burst_by_role").items()}
    # values holds only the fields checked above, each of its field's type.
    return LimitSettings(**values, rate_by_role=rates, burst_by_role=bursts)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path
    country: str
    node_id: str
    listen: str
    plaintext: bool
    signing_key: str
    federation: FederationSettings = field(default_factory=FederationSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    #: TLS mode: partners call the FederationService here, with mutual TLS.
    federation_listen: str = ""
    #: TLS mode: names and addresses in the server certificate.
    tls_hostnames: tuple[str, ...] = ()
    #: TLS mode, optional: clients authenticate with a certificate of this
    #: node's CA here instead of a token (``credfed client-cert create``).
    client_cert_listen: str = ""

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE

    @property
    def key_path(self) -> Path:
        return self.data_dir / self.signing_key

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / TLS_DIR

    def to_toml(self) -> str:
        return tomli_w.dumps(
            {
                "node": {"country": self.country, "node_id": self.node_id},
                "server": {
                    "listen": self.listen,
                    "plaintext": self.plaintext,
                    **({"federation_listen": self.federation_listen} if not self.plaintext else {}),
                    **(
                        {"client_cert_listen": self.client_cert_listen}
                        if self.client_cert_listen
                        else {}
                    ),
                },
                **({"tls": {"hostnames": list(self.tls_hostnames)}} if not self.plaintext else {}),
                "keys": {"signing_key": self.signing_key},
                "federation": self.federation.to_dict(),
                "limits": self.limits.to_dict(),
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


def check_listen(listen: str, plaintext: bool, setting: str = "server.listen") -> None:
    """Plaintext only on loopback: a non-loopback plaintext listen is refused."""
    host, _ = split_host_port(listen, setting)
    if plaintext and not is_loopback(host):
        raise ConfigError(
            f"{setting}: plaintext listening on {host} refused: plaintext is for "
            "loopback development only (127.0.0.0/8, ::1)"
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
            limits=_limits(raw.get("limits")),
            federation_listen=os.environ.get(
                "CREDFED_FEDERATION_LISTEN", str(server.get("federation_listen", ""))
            ),
            tls_hostnames=tuple(str(h) for h in raw.get("tls", {}).get("hostnames", [])),
            client_cert_listen=str(server.get("client_cert_listen", "")),
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: missing setting {exc}") from None
    if not ids.is_country_code(config.country):
        raise ConfigError(f"node.country: {config.country!r} is not a two-letter country code")
    check_listen(config.listen, config.plaintext)
    if not config.plaintext:
        if not config.federation_listen:
            raise ConfigError("server.federation_listen: required with TLS (HOST:PORT)")
        split_host_port(config.federation_listen, "server.federation_listen")
    if config.client_cert_listen:
        if config.plaintext:
            raise ConfigError("server.client_cert_listen: needs TLS (plaintext = false)")
        split_host_port(config.client_cert_listen, "server.client_cert_listen")
    return config
