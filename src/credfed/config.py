"""Node configuration: one TOML file in the data directory, written by
``credfed init``. Every setting may be overridden by an environment variable
named after it: ``limits.rate`` by ``CREDFED_LIMITS_RATE``, an entry of a
table such as ``limits.rate_by_role.verifier`` by
``CREDFED_LIMITS_RATE_BY_ROLE_VERIFIER`` (see :data:`SETTINGS`).

Precedence: environment, then file, then default. Everything is validated
on load and an error names the setting (and the variable, if one set it).
An unknown setting, in the file or in a ``CREDFED_<SECTION>_…`` variable,
is an error too: a typo must not silently leave the default in force."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
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


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")


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
    #: Prometheus metrics over plain HTTP on this HOST:PORT; empty: none.
    #: Unauthenticated (metrics hold no personal data): bind it where only
    #: the monitoring system reaches it.
    metrics_listen: str = ""
    #: Log level (``debug`` logs every successful call) and format
    #: (``auto``: JSON lines unless stderr is a terminal).
    log_level: str = "info"
    log_format: str = "auto"
    #: Where each overridden setting came from (``CREDFED_…``); not compared.
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE

    @property
    def key_path(self) -> Path:
        return self.data_dir / self.signing_key

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / TLS_DIR

    def to_dict(self) -> dict[str, dict[str, object]]:
        """The settings as the file holds them (sections of :data:`SETTINGS`)."""
        server: dict[str, object] = {"listen": self.listen, "plaintext": self.plaintext}
        if not self.plaintext:
            server["federation_listen"] = self.federation_listen
        if self.client_cert_listen:
            server["client_cert_listen"] = self.client_cert_listen
        return {
            "node": {"country": self.country, "node_id": self.node_id},
            "server": server,
            **({"tls": {"hostnames": list(self.tls_hostnames)}} if not self.plaintext else {}),
            "keys": {"signing_key": self.signing_key},
            "federation": self.federation.to_dict(),
            "limits": self.limits.to_dict(),
            "metrics": {"listen": self.metrics_listen},
            "log": {"level": self.log_level, "format": self.log_format},
        }

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


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


#: Every setting: (section, name) -> its kind. The kind says how an
#: environment variable's text is read; ranges are checked by the section's
#: validator, the same way for the file and the environment.
#: ``table:<kind>``: a table of per-origin / per-role values of that kind.
SETTINGS: dict[tuple[str, str], str] = {
    ("node", "country"): "str",
    ("node", "node_id"): "str",
    ("server", "listen"): "str",
    ("server", "plaintext"): "bool",
    ("server", "federation_listen"): "str",
    ("server", "client_cert_listen"): "str",
    ("tls", "hostnames"): "list",
    ("keys", "signing_key"): "str",
    **{("federation", name): "number" for name in _SECONDS},
    ("federation", "record_cache_max"): "int",
    ("federation", "max_staleness_by_origin"): "table:number",
    **{("limits", name): "number" for name in (*_LIMIT_SECONDS, "rate")},
    ("limits", "burst"): "int",
    ("limits", "max_subscriptions_per_client"): "int",
    ("limits", "rate_by_role"): "table:number",
    ("limits", "burst_by_role"): "table:int",
    ("metrics", "listen"): "str",
    ("log", "level"): "str",
    ("log", "format"): "str",
}
SECTIONS = tuple(dict.fromkeys(section for section, _ in SETTINGS))
_REQUIRED = (
    ("node", "country"),
    ("node", "node_id"),
    ("server", "listen"),
    ("keys", "signing_key"),
)
_ENV_PREFIX = "CREDFED_"
#: CREDFED_* variables that are options of the command line, not settings.
COMMAND_VARIABLES = frozenset(
    {
        "CREDFED_DATA_DIR",
        "CREDFED_SERVER",
        "CREDFED_TOKEN",
        "CREDFED_CA_FILE",
        "CREDFED_CLIENT_CERT",
        "CREDFED_CLIENT_KEY",
    }
)
#: ...and of the demo and the benchmarks.
_TOOL_PREFIXES = ("CREDFED_DEMO_", "CREDFED_PROFILE_")


def env_name(section: str, name: str = "", key: str = "") -> str:
    """The variable overriding a setting (``key``: an entry of a table)."""
    return "_".join(filter(None, (_ENV_PREFIX + section, name, key))).upper()


def _env_value(text: str, kind: str, setting: str, var: str) -> object:
    """An environment variable's text as the setting's kind. A value that is
    not of the kind is kept as text, so the validator reports it by name."""
    text = text.strip()
    if kind == "str":
        return text
    if kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{setting} (set by {var}): {text!r} is not true or false")
    try:
        return int(text)
    except ValueError:
        pass
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            pass
    return text


def _apply_environment(raw: dict[str, object], environ: Mapping[str, str]) -> dict[str, str]:
    """Overlay ``CREDFED_<SECTION>_…`` variables on the file's settings;
    returns setting -> variable for each one applied."""
    sources: dict[str, str] = {}
    tables = {
        env_name(section, name) + "_": (section, name, kind.removeprefix("table:"))
        for (section, name), kind in SETTINGS.items()
        if kind.startswith("table:")
    }
    for var in sorted(environ):
        section = next((s for s in SECTIONS if var.startswith(env_name(s) + "_")), None)
        if section is None:
            if not var.startswith(_ENV_PREFIX) or var in COMMAND_VARIABLES:
                continue
            if var.startswith(_TOOL_PREFIXES):
                continue
            # A misspelt section (CREDFED_LIMIT_RATE) must not leave the default in force.
            raise ConfigError(
                f"{var}: no such setting or option (settings are CREDFED_<SECTION>_<NAME>,"
                f" sections: {', '.join(SECTIONS)})"
            )
        text = environ[var]
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: must be a table")
        simple = next(
            (
                (name, kind)
                for (s, name), kind in SETTINGS.items()
                if s == section and env_name(s, name) == var and not kind.startswith("table:")
            ),
            None,
        )
        if simple is not None:
            name, kind = simple
            setting = f"{section}.{name}"
            table[name] = _env_value(text, kind, setting, var)
            sources[setting] = var
            continue
        prefix = next((p for p in tables if var.startswith(p) and len(var) > len(p)), None)
        if prefix is None:
            raise ConfigError(f"{var}: no such setting (see 'credfed config check --help')")
        _, name, kind = tables[prefix]
        entry = var.removeprefix(prefix)
        # Origins are country codes (upper case); roles are lower case.
        key = entry.upper() if name == "max_staleness_by_origin" else entry.lower()
        setting = f"{section}.{name}.{key}"
        entries = table.setdefault(name, {})
        if not isinstance(entries, dict):
            raise ConfigError(f"{section}.{name}: must be a table")
        entries[key] = _env_value(text, kind, setting, var)
        sources[setting] = var
    return sources


def _check_known(raw: dict[str, object]) -> None:
    for section, table in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{section}: unknown section (one of {', '.join(SECTIONS)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: must be a table")
        for name in table:
            if (section, name) not in SETTINGS:
                raise ConfigError(f"{section}.{name}: unknown setting")


def _text(raw: dict[str, dict[str, object]], section: str, name: str, default: str = "") -> str:
    value = raw.get(section, {}).get(name, default)
    if not isinstance(value, str):
        raise ConfigError(f"{section}.{name}: must be text")
    return value


def load(data_dir: Path, environ: Mapping[str, str] | None = None) -> Config:
    """The node's configuration: the file, overridden by ``environ``
    (default: the process environment), validated."""
    path = data_dir / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run 'credfed init' first") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    sources = _apply_environment(raw, os.environ if environ is None else environ)
    try:
        return _validated(data_dir, raw, sources)
    except ConfigError as exc:
        # Name the variable when the bad value came from one.
        setting, sep, problem = str(exc).partition(": ")
        var = sources.get(setting)
        if sep and var:
            raise ConfigError(f"{setting} (set by {var}): {problem}") from None
        raise


def _validated(data_dir: Path, raw: dict[str, object], sources: dict[str, str]) -> Config:
    _check_known(raw)
    tables: dict[str, dict[str, object]] = {s: t for s, t in raw.items() if isinstance(t, dict)}
    for section, name in _REQUIRED:
        if name not in tables.get(section, {}):
            raise ConfigError(f"{section}.{name}: missing setting")
    plaintext = tables.get("server", {}).get("plaintext", False)
    if not isinstance(plaintext, bool):
        raise ConfigError("server.plaintext: must be true or false")
    hostnames = tables.get("tls", {}).get("hostnames", [])
    if not isinstance(hostnames, list) or not all(isinstance(h, str) and h for h in hostnames):
        raise ConfigError("tls.hostnames: must be a list of names or addresses")
    config = Config(
        data_dir=data_dir,
        country=_text(tables, "node", "country"),
        node_id=_text(tables, "node", "node_id"),
        listen=_text(tables, "server", "listen"),
        plaintext=plaintext,
        signing_key=_text(tables, "keys", "signing_key"),
        federation=_federation(tables.get("federation")),
        limits=_limits(tables.get("limits")),
        federation_listen=_text(tables, "server", "federation_listen"),
        tls_hostnames=tuple(hostnames),
        client_cert_listen=_text(tables, "server", "client_cert_listen"),
        metrics_listen=_text(tables, "metrics", "listen"),
        log_level=_text(tables, "log", "level", "info").lower(),
        log_format=_text(tables, "log", "format", "auto").lower(),
        sources=sources,
    )
    if not ids.is_country_code(config.country):
        raise ConfigError(f"node.country: {config.country!r} is not a two-letter country code")
    if not config.node_id or len(config.node_id) > 64:
        raise ConfigError("node.node_id: must be 1 to 64 characters")
    if (
        not config.signing_key
        or Path(config.signing_key).is_absolute()
        or (".." in Path(config.signing_key).parts)
    ):
        raise ConfigError("keys.signing_key: must be a path inside the data directory")
    check_listen(config.listen, config.plaintext)
    if not config.plaintext:
        if not config.federation_listen:
            raise ConfigError("server.federation_listen: required with TLS (HOST:PORT)")
        split_host_port(config.federation_listen, "server.federation_listen")
        if not config.tls_hostnames:
            raise ConfigError("tls.hostnames: required with TLS (the names clients connect to)")
    if config.client_cert_listen:
        if config.plaintext:
            raise ConfigError("server.client_cert_listen: needs TLS (plaintext = false)")
        split_host_port(config.client_cert_listen, "server.client_cert_listen")
    if config.metrics_listen:
        split_host_port(config.metrics_listen, "metrics.listen")
    if config.log_level not in LOG_LEVELS:
        raise ConfigError(f"log.level: {config.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if config.log_format not in LOG_FORMATS:
        raise ConfigError(
            f"log.format: {config.log_format!r} is not one of {', '.join(LOG_FORMATS)}"
        )
    return config
