"""``credfed token create|list|revoke`` on a node's data directory (local
commands: no server). Tokens are shown once, at creation, and never listed;
bad input is refused with exit 2, an unknown client id with one line and
exit 1."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from clikit import credfed, one_line_error

from credfed.bootstrap import init_node
from credfed.cli import parse_duration
from credfed.rpc_tokens import hash_token

pytestmark = pytest.mark.slow

CLIENT_KEYS = {
    "client_id", "name", "role", "status", "created_at", "expires_at", "revoked_at", "partner",
}  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tokens")
    asyncio.run(init_node(root / "de", "DE", "127.0.0.1:0"))
    return root / "de"


def _dd(data_dir: Path) -> list[str]:
    return ["--data-dir", str(data_dir)]


def _listed(data_dir: Path) -> dict[str, dict[str, Any]]:
    res = credfed("token", "list", "--json", *_dd(data_dir))
    assert res.code == 0, res.err
    clients = res.json()
    assert isinstance(clients, list)
    return {str(c["client_id"]): c for c in clients}


def test_create_with_expires_in(data_dir: Path) -> None:
    res = credfed(
        "token", "create", "--role", "verifier", "--name", "Acme HR",
        "--expires-in", "90d", "--json", *_dd(data_dir),
    )  # fmt: skip
    assert res.code == 0, res.err
    created = res.json()
    assert isinstance(created, dict)
    assert set(created) == CLIENT_KEYS | {"token"}
    assert str(created["token"]).startswith("cf_")
    assert (created["role"], created["name"], created["status"]) == (
        "verifier",
        "Acme HR",
        "active",
    )
    expires = datetime.fromisoformat(str(created["expires_at"]))
    assert expires - datetime.fromisoformat(str(created["created_at"])) == timedelta(days=90)
    assert created["revoked_at"] is None
    listed = _listed(data_dir)[str(created["client_id"])]
    assert listed == {k: v for k, v in created.items() if k != "token"}


@pytest.mark.parametrize(
    ("value", "delta"), [("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30))]
)
def test_create_prints_the_token_alone_on_stdout(
    data_dir: Path, value: str, delta: timedelta | None
) -> None:
    res = credfed(
        "token", "create", "--role", "verifier", "--name", f"for {value}",
        "--expires-in", value, *_dd(data_dir),
    )  # fmt: skip
    assert res.code == 0, res.err
    token = res.out.strip()
    assert res.out == token + "\n" and token.startswith("cf_")
    assert "expires" in res.err  # the expiry, on stderr
    assert token not in res.err
    if delta is not None:
        [client] = [c for c in _listed(data_dir).values() if c["name"] == f"for {value}"]
        expires = datetime.fromisoformat(str(client["expires_at"]))
        assert expires - datetime.fromisoformat(str(client["created_at"])) == delta


def test_create_without_expires_in_never_expires(data_dir: Path) -> None:
    res = credfed(
        "token", "create", "--role", "peer", "--partner", "FR", "--name", "FR node", "--json",
        *_dd(data_dir),
    )  # fmt: skip
    assert res.code == 0, res.err
    created = res.json()
    assert isinstance(created, dict)
    assert created["expires_at"] is None


def test_a_peer_token_records_its_partner(data_dir: Path) -> None:
    res = credfed(
        "token", "create", "--role", "peer", "--partner", "PL", "--name", "Polish registry",
        "--json", *_dd(data_dir),
    )  # fmt: skip
    assert res.code == 0, res.err
    created = res.json()
    assert isinstance(created, dict)
    assert (created["role"], created["partner"]) == ("peer", "PL")
    listed = _listed(data_dir)
    assert listed[str(created["client_id"])]["partner"] == "PL"
    # Other roles record none.
    assert {c["partner"] for c in listed.values() if c["role"] != "peer"} == {None}
    human = credfed("token", "list", *_dd(data_dir))
    [row] = [r for r in human.out.splitlines() if r.startswith(str(created["client_id"]))]
    assert row.endswith("Polish registry (partner PL)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "peer"], "required with --role peer"),
        (["--role", "peer", "--partner", "fr"], "'fr' is not a two-letter country code"),
        (["--role", "peer", "--partner", "FRA"], "'FRA' is not a two-letter country code"),
        (["--role", "peer", "--partner", "DE"], "DE is this node's own country"),
        (["--role", "verifier", "--partner", "FR"], "only for the peer role, not verifier"),
    ],
)
def test_the_partner_is_required_for_peer_tokens_only(
    data_dir: Path, args: list[str], message: str
) -> None:
    before = _listed(data_dir)
    res = credfed("token", "create", *args, "--name", "refused", *_dd(data_dir))
    assert res.code == 2, (res.code, res.out, res.err)
    errors = [line for line in res.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, res.err
    assert errors[0].startswith(f"Error: Invalid value for --partner: {message}"), res.err
    assert res.out == ""
    assert _listed(data_dir) == before  # nothing created


BAD_DURATIONS = ["90", "d", "0d", "-1d", "+1d", "1.5d", "90 d", " 90d", "90d\n", "90D", "1w",
                 "10s", "090d", "1d12h", "3651d", ""]  # fmt: skip


@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_parse_duration_is_strict(value: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration|longer than 3650d \(ten years\)"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
     ("1m", timedelta(minutes=1)), ("3650d", timedelta(days=3650))],
)  # fmt: skip
def test_parse_duration(value: str, expected: timedelta) -> None:
    assert parse_duration(value) == expected


def test_create_refuses_a_bad_duration(data_dir: Path) -> None:
    before = _listed(data_dir)
    for value, message in [
        ("1.5d", "'1.5d' is not a duration: a positive whole number of days, hours or minutes"),
        ("0d", "'0d' is not a duration"),
        ("3651d", "3651d is longer than 3650d (ten years)"),
    ]:
        res = credfed(
            "token", "create", "--role", "verifier", "--name", "x", "--expires-in", value,
            *_dd(data_dir),
        )  # fmt: skip
        assert res.code == 2, (value, res.code, res.out, res.err)
        assert f"Invalid value for '--expires-in': {message}" in res.err
        assert res.out == ""
    assert _listed(data_dir) == before  # nothing created


def test_list_shows_no_secrets(data_dir: Path) -> None:
    created = credfed(
        "token", "create", "--role", "verifier", "--name", "listed", "--json", *_dd(data_dir)
    )  # fmt: skip
    assert created.code == 0, created.err
    info = created.json()
    assert isinstance(info, dict)
    token = str(info["token"])
    admin_token = (data_dir / "admin.token").read_text().strip()
    human = credfed("token", "list", *_dd(data_dir))
    as_json = credfed("token", "list", "--json", *_dd(data_dir))
    for res in (human, as_json):
        assert res.code == 0, res.err
        for secret in (token, admin_token):
            assert secret not in res.out + res.err
            assert hash_token(secret).hex() not in res.out + res.err
        assert "cf_" not in res.out
    clients = as_json.json()
    assert isinstance(clients, list)
    assert all(set(c) == CLIENT_KEYS for c in clients)
    roles = {c["role"] for c in clients}
    assert {"admin", "verifier"} <= roles
    [line] = [ln for ln in human.out.splitlines() if ln.startswith(str(info["client_id"]))]
    assert line.split("\t")[:3] == [str(info["client_id"]), "active", "verifier"]
    assert "expires never" in line and "revoked -" in line and line.endswith("\tlisted")


def test_revoke(data_dir: Path) -> None:
    created = credfed(
        "token", "create", "--role", "verifier", "--name", "to revoke", "--json", *_dd(data_dir)
    )  # fmt: skip
    assert created.code == 0, created.err
    info = created.json()
    assert isinstance(info, dict)
    client_id = str(info["client_id"])

    res = credfed("token", "revoke", client_id, *_dd(data_dir))
    assert res.code == 0, res.err
    assert res.out.startswith(f"revoked client {client_id} (verifier, to revoke) at ")
    listed = _listed(data_dir)[client_id]
    assert listed["status"] == "revoked"
    assert listed["revoked_at"] is not None
    assert str(info["token"]) not in res.out + res.err

    # Again: harmless, and the first revocation time stays.
    again = credfed("token", "revoke", client_id, "--json", *_dd(data_dir))
    assert again.code == 0, again.err
    data = again.json()
    assert isinstance(data, dict)
    assert set(data) == CLIENT_KEYS
    assert data["revoked_at"] == listed["revoked_at"]
    human = credfed("token", "revoke", client_id, *_dd(data_dir))
    assert "was already revoked" in human.out
    # The other clients are untouched.
    others = [c for cid, c in _listed(data_dir).items() if cid != client_id]
    assert others and all(c["revoked_at"] is None for c in others)


def test_revoke_unknown_client(data_dir: Path) -> None:
    before = _listed(data_dir)
    res = credfed("token", "revoke", "0123456789abcdef", *_dd(data_dir))
    assert one_line_error(res) == "error: client 0123456789abcdef not found"
    assert res.out == ""
    assert _listed(data_dir) == before


def test_token_commands_need_a_node_directory(tmp_path: Path) -> None:
    for args in (["list"], ["revoke", "0123456789abcdef"]):
        res = credfed("token", *args, "--data-dir", str(tmp_path / "none"))
        assert one_line_error(res).startswith("error: ")
