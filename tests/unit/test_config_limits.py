"""The [limits] settings: defaults, round trip, per-role overrides, and one
clear error per bad setting, naming it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from credfed import config as cfg
from credfed.errors import ConfigError
from credfed.rpc.ratelimit import MIN_PING_INTERVAL_MS, server_options

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


def _load(tmp_path: Path, limits: str = "") -> cfg.Config:
    (tmp_path / cfg.CONFIG_FILE).write_text(BASE + limits)
    return cfg.load(tmp_path)


def test_defaults_apply_without_a_limits_table(tmp_path: Path) -> None:
    limits = _load(tmp_path).limits
    assert limits == cfg.LimitSettings()
    # Generous enough for bench/verify_bench.py (~2,200 Verify/s, one token).
    assert limits.rate_for("verifier") >= 5_000
    assert limits.burst_for("peer") == limits.burst
    assert limits.max_subscriptions_per_client >= 27  # more than a federation's countries


def test_settings_round_trip_and_per_role_overrides(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        """
[limits]
rate = 50
burst = 100
max_subscriptions_per_client = 4
idle_timeout = 120
keepalive_time = 30.5
keepalive_timeout = 5

[limits.rate_by_role]
verifier = 20
anonymous = 0.5

[limits.burst_by_role]
verifier = 40
""",
    )
    lim = config.limits
    assert (lim.rate, lim.burst, lim.max_subscriptions_per_client) == (50.0, 100, 4)
    assert (lim.idle_timeout, lim.keepalive_time, lim.keepalive_timeout) == (120.0, 30.5, 5.0)
    assert (lim.rate_for("verifier"), lim.burst_for("verifier")) == (20.0, 40)
    assert (lim.rate_for("anonymous"), lim.burst_for("anonymous")) == (0.5, 100)
    assert (lim.rate_for("admin"), lim.burst_for("admin")) == (50.0, 100)
    assert isinstance(lim.rate_by_role["verifier"], float)
    # What init writes is what load reads.
    (tmp_path / cfg.CONFIG_FILE).write_text(config.to_toml())
    assert cfg.load(tmp_path).limits == lim
    # The connection settings reach grpc in milliseconds.
    assert dict(server_options(lim)) == {
        "grpc.max_connection_idle_ms": 120_000,
        "grpc.keepalive_time_ms": 30_500,
        "grpc.keepalive_timeout_ms": 5_000,
        "grpc.http2.min_ping_interval_without_data_ms": MIN_PING_INTERVAL_MS,
    }


def test_min_ping_interval_stays_below_partner_keepalive() -> None:
    # Partner links ping every 30 s (peerlink); a server insisting on more
    # would answer them with GOAWAY (too_many_pings).
    assert MIN_PING_INTERVAL_MS < 30_000


@pytest.mark.parametrize(
    ("limits", "setting"),
    [
        ("rate = 0", "limits.rate"),
        ('rate = "fast"', "limits.rate"),
        ("rate = true", "limits.rate"),
        ("burst = 0", "limits.burst"),
        ("burst = 2.5", "limits.burst"),
        ("max_subscriptions_per_client = 0", "limits.max_subscriptions_per_client"),
        ("max_subscriptions_per_client = false", "limits.max_subscriptions_per_client"),
        ("idle_timeout = 0", "limits.idle_timeout"),
        ("keepalive_time = -1", "limits.keepalive_time"),
        ('keepalive_timeout = "20s"', "limits.keepalive_timeout"),
        ("rates = 5", "limits.rates"),
        ("rate_by_role = 5", "limits.rate_by_role"),
        ("[limits.rate_by_role]\nemployer = 5", "limits.rate_by_role.employer"),
        ("[limits.rate_by_role]\nverifier = 0", "limits.rate_by_role.verifier"),
        ("[limits.burst_by_role]\npeer = 1.5", "limits.burst_by_role.peer"),
        ("[limits.burst_by_role]\n'issuer:de-x' = 5", "limits.burst_by_role.issuer:de-x"),
    ],
)
def test_a_bad_setting_is_refused_by_name(tmp_path: Path, limits: str, setting: str) -> None:
    body = limits if limits.startswith("[") else "[limits]\n" + limits
    with pytest.raises(ConfigError, match=f"^{re.escape(setting)}: "):
        _load(tmp_path, "\n" + body + "\n")


def test_limits_must_be_a_table(tmp_path: Path) -> None:
    (tmp_path / cfg.CONFIG_FILE).write_text("limits = 5\n" + BASE)
    with pytest.raises(ConfigError, match=r"^limits: must be a table"):
        cfg.load(tmp_path)
