"""The [federation] settings: defaults, round trip, and one clear error per
bad setting, naming it."""

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
plaintext = true

[keys]
signing_key = "keys/k.pem"
"""


def _load(tmp_path: Path, federation: str = "") -> cfg.Config:
    (tmp_path / cfg.CONFIG_FILE).write_text(BASE + federation)
    return cfg.load(tmp_path)


def test_defaults_apply_without_a_federation_table(tmp_path: Path) -> None:
    settings = _load(tmp_path).federation
    assert settings == cfg.FederationSettings()
    assert settings.staleness_for("FR") == 900.0


def test_settings_round_trip_and_per_origin_staleness(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        """
[federation]
sync_interval = 5
checkpoint_interval = 10.5
max_staleness = 120
record_cache_ttl = 60
record_cache_max = 0
call_timeout = 2

[federation.max_staleness_by_origin]
FR = 30
""",
    )
    f = config.federation
    assert (f.sync_interval, f.checkpoint_interval, f.max_staleness) == (5.0, 10.5, 120.0)
    assert (f.record_cache_ttl, f.record_cache_max, f.call_timeout) == (60.0, 0, 2.0)
    assert f.staleness_for("FR") == 30.0 and f.staleness_for("PL") == 120.0
    # What init writes is what load reads.
    (tmp_path / cfg.CONFIG_FILE).write_text(config.to_toml())
    assert cfg.load(tmp_path).federation == f


@pytest.mark.parametrize(
    ("federation", "setting"),
    [
        ("sync_interval = 0", "federation.sync_interval"),
        ("checkpoint_interval = -1", "federation.checkpoint_interval"),
        ('max_staleness = "ten"', "federation.max_staleness"),
        ("record_cache_ttl = true", "federation.record_cache_ttl"),
        ("record_cache_max = 1.5", "federation.record_cache_max"),
        ("record_cache_max = -1", "federation.record_cache_max"),
        ("call_timeout = 0", "federation.call_timeout"),
        ("sync_intervall = 3", "federation.sync_intervall"),
        ("max_staleness_by_origin = 3", "federation.max_staleness_by_origin"),
        ("[federation.max_staleness_by_origin]\nGERMANY = 3", "max_staleness_by_origin.GERMANY"),
        ("[federation.max_staleness_by_origin]\nFR = 0", "max_staleness_by_origin.FR"),
    ],
)
def test_a_bad_setting_is_refused_by_name(tmp_path: Path, federation: str, setting: str) -> None:
    body = federation if federation.startswith("[") else "[federation]\n" + federation
    with pytest.raises(ConfigError, match=setting.replace(".", r"\.")):
        _load(tmp_path, "\n" + body + "\n")
