"""Every setting of credfed.toml can be overridden by its environment
variable, and a bad value is reported naming the setting and the variable.
Table-driven over config.SETTINGS, so a new setting without an override
fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from credfed import config as cfg
from credfed.errors import ConfigError

BASE = """
[node]
country = "DE"
node_id = "de-1"

[server]
listen = "127.0.0.1:7400"
plaintext = false
federation_listen = "127.0.0.1:7401"

[tls]
hostnames = ["localhost"]

[keys]
signing_key = "keys/k.pem"
"""

#: setting -> (variable text, the value loading must give). One row per
#: entry of config.SETTINGS (checked below); tables by one of their entries.
OVERRIDES: dict[str, tuple[str, object]] = {
    "node.country": ("FR", "FR"),
    "node.node_id": ("fr-9", "fr-9"),
    "server.listen": ("127.0.0.2:9000", "127.0.0.2:9000"),
    "server.plaintext": ("true", True),
    "server.federation_listen": ("127.0.0.1:9001", "127.0.0.1:9001"),
    "server.client_cert_listen": ("127.0.0.1:9002", "127.0.0.1:9002"),
    "tls.hostnames": ("a.example, b.example", ["a.example", "b.example"]),
    "keys.signing_key": ("keys/other.pem", "keys/other.pem"),
    "federation.sync_interval": ("7", 7.0),
    "federation.checkpoint_interval": ("8.5", 8.5),
    "federation.max_staleness": ("90", 90.0),
    "federation.record_cache_ttl": ("60", 60.0),
    "federation.call_timeout": ("2", 2.0),
    "federation.record_cache_max": ("5", 5),
    "federation.max_staleness_by_origin.FR": ("30", 30.0),
    "limits.rate": ("20", 20.0),
    "limits.burst": ("100", 100),
    "limits.max_subscriptions_per_client": ("9", 9),
    "limits.idle_timeout": ("30", 30.0),
    "limits.keepalive_time": ("40", 40.0),
    "limits.keepalive_timeout": ("4", 4.0),
    "limits.rate_by_role.verifier": ("3", 3.0),
    "limits.burst_by_role.peer": ("11", 11),
    "metrics.listen": ("127.0.0.1:9464", "127.0.0.1:9464"),
    "log.level": ("DEBUG", "debug"),
    "log.format": ("json", "json"),
}


def _write(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / cfg.CONFIG_FILE).write_text(BASE + extra)
    return tmp_path


def _setting(config: cfg.Config, setting: str) -> object:
    value: object = config.to_dict()
    for part in setting.split("."):
        assert isinstance(value, dict), setting
        value = value[part]
    return value


def _var(setting: str) -> str:
    return cfg.env_name(*setting.split("."))


def test_every_setting_has_an_override_row() -> None:
    covered = {tuple(setting.split(".")[:2]) for setting in OVERRIDES}
    assert covered == set(cfg.SETTINGS)


@pytest.mark.parametrize("setting", sorted(OVERRIDES))
def test_each_setting_is_overridden_by_its_variable(tmp_path: Path, setting: str) -> None:
    text, expected = OVERRIDES[setting]
    var = _var(setting)
    environ = {var: text}
    config = cfg.load(_write(tmp_path), environ)
    if setting == "server.plaintext":
        # Plaintext drops the TLS-only settings from the file form; the flag is what counts.
        assert config.plaintext is True
    else:
        assert _setting(config, setting) == expected
    assert config.sources == {setting: var}
    # Without the variable, the file's or the default value stands.
    assert cfg.load(tmp_path, {}).sources == {}


def test_variable_names_follow_section_and_setting() -> None:
    assert _var("limits.rate") == "CREDFED_LIMITS_RATE"
    assert _var("server.federation_listen") == "CREDFED_SERVER_FEDERATION_LISTEN"
    assert _var("limits.rate_by_role.verifier") == "CREDFED_LIMITS_RATE_BY_ROLE_VERIFIER"


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "\n[limits]\nrate = 50.0\n")
    assert cfg.load(tmp_path, {}).limits.rate == 50.0
    assert cfg.load(tmp_path, {"CREDFED_LIMITS_RATE": "7"}).limits.rate == 7.0


def test_table_entries_merge_with_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "\n[limits.rate_by_role]\nadmin = 5.0\n")
    config = cfg.load(tmp_path, {"CREDFED_LIMITS_RATE_BY_ROLE_VERIFIER": "3"})
    assert config.limits.rate_by_role == {"admin": 5.0, "verifier": 3.0}


# (variables, the one-line error expected: setting, the variable, the problem)
BAD = [
    ({"CREDFED_LIMITS_RATE": "abc"}, "limits.rate (set by CREDFED_LIMITS_RATE): must be"),
    ({"CREDFED_LIMITS_BURST": "0"}, "limits.burst (set by CREDFED_LIMITS_BURST): must be"),
    ({"CREDFED_LIMITS_BURST": "2.5"}, "limits.burst (set by CREDFED_LIMITS_BURST): must be"),
    (
        {"CREDFED_FEDERATION_SYNC_INTERVAL": "-1"},
        "federation.sync_interval (set by CREDFED_FEDERATION_SYNC_INTERVAL): must be",
    ),
    (
        {"CREDFED_SERVER_PLAINTEXT": "maybe"},
        "server.plaintext (set by CREDFED_SERVER_PLAINTEXT): 'maybe' is not true or false",
    ),
    (
        {"CREDFED_SERVER_LISTEN": "nowhere"},
        "server.listen (set by CREDFED_SERVER_LISTEN): 'nowhere' is not HOST:PORT",
    ),
    (
        {"CREDFED_METRICS_LISTEN": "9464"},
        "metrics.listen (set by CREDFED_METRICS_LISTEN): '9464' is not HOST:PORT",
    ),
    ({"CREDFED_LOG_LEVEL": "loud"}, "log.level (set by CREDFED_LOG_LEVEL): 'loud' is not one of"),
    ({"CREDFED_LOG_FORMAT": "xml"}, "log.format (set by CREDFED_LOG_FORMAT): 'xml' is not one of"),
    (
        {"CREDFED_LIMITS_RATE_BY_ROLE_ROOT": "5"},
        "limits.rate_by_role.root (set by CREDFED_LIMITS_RATE_BY_ROLE_ROOT): unknown role",
    ),
    (
        {"CREDFED_FEDERATION_MAX_STALENESS_BY_ORIGIN_XYZ": "5"},
        "federation.max_staleness_by_origin.XYZ (set by "
        "CREDFED_FEDERATION_MAX_STALENESS_BY_ORIGIN_XYZ): not a two-letter country code",
    ),
    ({"CREDFED_LIMITS_RAET": "5"}, "CREDFED_LIMITS_RAET: no such setting"),
    ({"CREDFED_NODE_COUNTRY": "Germany"}, "node.country (set by CREDFED_NODE_COUNTRY): 'Germany'"),
    (
        {"CREDFED_KEYS_SIGNING_KEY": "/etc/passwd"},
        "keys.signing_key (set by CREDFED_KEYS_SIGNING_KEY): must be a path inside",
    ),
    (
        {"CREDFED_SERVER_PLAINTEXT": "true", "CREDFED_SERVER_LISTEN": "0.0.0.0:7400"},
        "server.listen (set by CREDFED_SERVER_LISTEN): plaintext listening on 0.0.0.0 refused",
    ),
]


@pytest.mark.parametrize(("environ", "message"), BAD)
def test_a_bad_variable_is_named(tmp_path: Path, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cfg.load(_write(tmp_path), environ)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("var", ["CREDFED_LIMIT_RATE", "CREDFED_METRIC_LISTEN", "CREDFED_X"])
def test_a_misspelt_section_is_refused(tmp_path: Path, var: str) -> None:
    with pytest.raises(ConfigError, match=f"^{var}: no such setting or option"):
        cfg.load(_write(tmp_path), {var: "1"})


def test_every_variable_of_the_command_line_is_known() -> None:
    """The CLI's own CREDFED_* options are allowed next to the settings."""
    import click

    from credfed.cli import main

    found: set[str] = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                found.add(envvar)
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                walk(sub)

    walk(main)
    settings = {cfg.env_name(section, name) for section, name in cfg.SETTINGS}
    assert found - settings == cfg.COMMAND_VARIABLES
    assert "CREDFED_LOG_LEVEL" in found & settings  # one variable, both meanings agree


def test_unrelated_credfed_variables_are_not_settings(tmp_path: Path) -> None:
    # The command line's own variables share the prefix but are no settings.
    environ = {
        "CREDFED_TOKEN": "cf_x",
        "CREDFED_DATA_DIR": "/tmp",
        "CREDFED_SERVER": "127.0.0.1:1",
        "CREDFED_CA_FILE": "ca.pem",
        "CREDFED_DEMO_KEEP": "1",
        "OTHER_LIMITS_RATE": "x",
    }
    assert cfg.load(_write(tmp_path), environ).sources == {}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("\n[metrics]\nlisten = 9464\n", "metrics.listen: must be text"),
        ("\n[metrics]\nport = 1\n", "metrics.port: unknown setting"),
        ("\n[logging]\nlevel = 'info'\n", "logging: unknown section"),
        ("\n[log]\nlevel = 'verbose'\n", "log.level: 'verbose' is not one of"),
        ("\n[tls]\nhostnames = []\n", "tls.hostnames: required with TLS"),
    ],
)
def test_a_bad_file_setting_is_named(tmp_path: Path, extra: str, message: str) -> None:
    text = BASE + extra
    if "[tls]" in extra:
        text = text.replace('[tls]\nhostnames = ["localhost"]\n', "")
    (tmp_path / cfg.CONFIG_FILE).write_text(text)
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace(".", r"\.")):
        cfg.load(tmp_path, {})


def test_a_missing_setting_is_named(tmp_path: Path) -> None:
    (tmp_path / cfg.CONFIG_FILE).write_text(BASE.replace('node_id = "de-1"\n', ""))
    with pytest.raises(ConfigError, match=r"^node\.node_id: missing setting"):
        cfg.load(tmp_path, {})


def test_the_file_round_trips_with_every_section(tmp_path: Path) -> None:
    environ = {_var(s): text for s, (text, _) in OVERRIDES.items() if s != "server.plaintext"}
    config = cfg.load(_write(tmp_path), environ)
    (tmp_path / cfg.CONFIG_FILE).write_text(config.to_toml())
    again = cfg.load(tmp_path, {})
    assert again == config
    assert again.to_dict().keys() == set(cfg.SECTIONS)
