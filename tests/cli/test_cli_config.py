"""`credfed config check` and `credfed serve` read the same configuration:
file plus CREDFED_* variables, and refuse a bad one with one line naming
the setting and a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clikit import run as _credfed  # no CREDFED_LOG_LEVEL: tests read the overrides

from credfed import config as cfg


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("cfg") / "de"
    done = _credfed(
        "init", "--country", "DE", "--data-dir", str(data), "--listen", "127.0.0.1:0",
        "--metrics-listen", "127.0.0.1:0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return data


def test_check_passes_on_a_fresh_node_and_reports_overrides(node_dir: Path) -> None:
    done = _credfed("config", "check", "--data-dir", str(node_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: {node_dir / cfg.CONFIG_FILE} (DE, ")
    assert "no environment overrides" in done.stdout
    done = _credfed(
        "config", "check", "--data-dir", str(node_dir), "--json",
        env={"CREDFED_LIMITS_RATE_BY_ROLE_VERIFIER": "20", "CREDFED_LOG_FORMAT": "json"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["settings"]["limits"]["rate_by_role"] == {"verifier": 20.0}
    assert report["settings"]["metrics"] == {"listen": "127.0.0.1:0"}
    assert report["environment"] == {
        "limits.rate_by_role.verifier": "CREDFED_LIMITS_RATE_BY_ROLE_VERIFIER",
        "log.format": "CREDFED_LOG_FORMAT",
    }


@pytest.mark.parametrize("command", [("config", "check"), ("serve",)])
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CREDFED_LIMITS_RATE": "fast"}, "error: limits.rate (set by CREDFED_LIMITS_RATE): "),
        ({"CREDFED_LIMITS_RAET": "5"}, "error: CREDFED_LIMITS_RAET: no such setting"),
        ({"CREDFED_METRICS_LISTEN": "x"}, "error: metrics.listen (set by CREDFED_METRICS_LISTEN)"),
    ],
)
def test_a_bad_setting_stops_check_and_serve_in_one_line(
    node_dir: Path, command: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    done = _credfed(*command, "--data-dir", str(node_dir), env=env)
    assert done.returncode == 1
    assert done.stderr.startswith(message), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback


def test_check_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    data = tmp_path / "fr"
    assert _credfed("init", "--country", "FR", "--data-dir", str(data)).returncode == 0
    key = cfg.load(data, {}).key_path
    key.chmod(0o644)
    done = _credfed("config", "check", "--data-dir", str(data))
    assert done.returncode == 1
    assert done.stderr.startswith("error: keys.signing_key: ")
    assert "readable by others (mode 0644): chmod 600" in done.stderr
    key.chmod(0o600)
    (data / cfg.DB_FILE).unlink()
    done = _credfed("config", "check", "--data-dir", str(data))
    assert done.returncode == 1
    assert done.stderr.startswith("error: database: ") and "is missing" in done.stderr


def test_check_names_a_missing_configuration(tmp_path: Path) -> None:
    done = _credfed("config", "check", "--data-dir", str(tmp_path / "none"))
    assert done.returncode == 1
    assert "credfed.toml not found: run 'credfed init' first" in done.stderr
