"""The credfed command against a real node process: results, --json, and
one-line errors with non-zero exit codes."""

from __future__ import annotations

import asyncio
import csv
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clikit import credfed, one_line_error
from nodeproc import NodeProcess

from credfed.bootstrap import init_node

pytestmark = pytest.mark.slow
DRAFT = [
    "--issuer",
    "de-hwk-muenchen",
    "--given-names",
    "Jana",
    "--family-name",
    "Novák",
    "--birth-date",
    "1994-03-17",
    "--national-code",
    "DE-HWK-EGT-2019",
    "--title",
    "Elektroniker/in",
    "--eqf-level",
    "4",
    "--isco",
    "7411",
    "--sector",
    "energy",
    "--issued-on",
    "2019-07-01",
    "--valid-until",
    "2039-06-30",
]
COLUMNS = [
    "issuer_id",
    "given_names",
    "family_name",
    "birth_date",
    "national_code",
    "title",
    "eqf_level",
    "isco_code",
    "sector",
    "issued_on",
    "valid_until",
]


@dataclass
class Served:
    data_dir: Path
    node: NodeProcess

    @property
    def admin(self) -> list[str]:
        return ["--data-dir", str(self.data_dir), "--server", self.node.target]

    def token(self, role: str) -> str:
        res = credfed(
            "token",
            "create",
            "--data-dir",
            str(self.data_dir),
            "--role",
            role,
            "--name",
            f"test {role}",
        )
        assert res.code == 0, res.err
        return res.out.strip()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("cli")
    asyncio.run(init_node(root / "de", "DE", "127.0.0.1:0"))
    node = NodeProcess(root / "de", root / "node.log")
    node.start()
    s = Served(root / "de", node)
    res = credfed(
        "issuer",
        "add",
        "de-hwk-muenchen",
        "--name",
        "HWK München",
        "--sector",
        "energy",
        "--sector",
        "construction",
        *s.admin,
    )
    assert res.code == 0, res.err
    try:
        yield s
    finally:
        assert node.stop() == 0  # graceful shutdown on SIGTERM


def test_init_creates_private_key_and_token(tmp_path: Path) -> None:
    res = credfed("init", "--country", "pl", "--data-dir", str(tmp_path / "pl"), "--json")
    assert res.code == 0, res.err
    info = res.json()
    assert isinstance(info, dict) and info["country"] == "PL"
    keys = list((tmp_path / "pl" / "keys").glob("*.pem"))
    assert len(keys) == 1
    assert stat.S_IMODE(keys[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "pl" / "admin.token").stat().st_mode) == 0o600
    # TLS by default: the node's CA and certificates, private keys 0600.
    assert info["tls"] is True and info["federation_listen"] == "127.0.0.1:7401"
    for name in ("ca.key", "server.key", "client.key"):
        assert stat.S_IMODE((tmp_path / "pl" / "tls" / name).stat().st_mode) == 0o600
    again = credfed("init", "--country", "PL", "--data-dir", str(tmp_path / "pl"))
    assert "already holds a node" in one_line_error(again)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--country", "Germany"], "country"),
        (["--country", "DE", "--plaintext-dev", "--listen", "0.0.0.0:7400"], "loopback"),
        (["--country", "DE", "--listen", "nonsense"], "HOST:PORT"),
    ],
)
def test_init_rejects_bad_input(tmp_path: Path, args: list[str], needle: str) -> None:
    res = credfed("init", "--data-dir", str(tmp_path / "x"), *args)
    assert res.code == 2
    assert needle in res.err
    assert not (tmp_path / "x" / "credfed.toml").exists()


def test_serve_refuses_plaintext_on_a_public_address(served: Served) -> None:
    res = credfed("serve", "--data-dir", str(served.data_dir), "--listen", "192.0.2.1:7400")
    assert "loopback" in one_line_error(res)


def test_issue_verify_and_lifecycle(served: Served) -> None:
    issuer = served.token("issuer:de-hwk-muenchen")
    verifier = served.token("verifier")
    srv = ["--server", served.node.target]
    res = credfed("issue", *DRAFT, *srv, "--token", issuer)
    assert res.code == 0, res.err
    cid = res.out.strip()

    pub = next((served.data_dir / "keys").glob("*.pub"))
    res = credfed(
        "verify",
        cid,
        "--birth-date",
        "1994-03-17",
        "--public-key",
        str(pub),
        "--json",
        *srv,
        "--token",
        verifier,
    )
    assert res.code == 0, res.err
    answer = res.json()
    assert isinstance(answer, dict)
    assert answer["status"] == "CREDENTIAL_STATUS_ACTIVE"
    assert answer["independent_check"] == {"inclusion_proof": "verified", "signatures": "checked"}

    human = credfed("verify", cid, "--family-name", "novák", *srv, "--token", verifier)
    assert human.code == 0 and "ACTIVE" in human.out and "inclusion verified" in human.out

    wrong = credfed("verify", cid, "--family-name", "Schmidt", *srv, "--token", verifier)
    assert one_line_error(wrong).startswith("error: NOT_FOUND:")

    steps = [
        ("suspend", ["--reason", "under_investigation", "--until", "2099-12-31"], "SUSPENDED"),
        ("reinstate", ["--reason", "appeal_upheld"], "REINSTATED"),
        ("revoke", ["--reason", "fraud"], "REVOKED"),
    ]
    for command, extra, status in steps:
        res = credfed(command, cid, *extra, "--json", *srv, "--token", issuer)
        assert res.code == 0, res.err
        receipt = res.json()
        assert isinstance(receipt, dict)
        assert receipt["credential"]["status"]["status"] == f"CREDENTIAL_STATUS_{status}"
    again = credfed("revoke", cid, "--reason", "fraud", *srv, "--token", issuer)
    assert one_line_error(again).startswith("error: FAILED_PRECONDITION:")
    bad_reason = credfed("suspend", cid, "--reason", "holiday", *srv, "--token", issuer)
    assert one_line_error(bad_reason).startswith("error: INVALID_ARGUMENT: reason:")


def test_supersede(served: Served) -> None:
    res = credfed("issue", *DRAFT, *served.admin)
    old = res.out.strip()
    res = credfed("supersede", old, "--reason", "upgrade", *DRAFT, "--json", *served.admin)
    assert res.code == 0, res.err
    out = res.json()
    assert isinstance(out, dict)
    assert out["replacement"]["supersedes"] == old


def test_permission_and_authentication_errors(served: Served) -> None:
    verifier = served.token("verifier")
    res = credfed("issue", *DRAFT, "--server", served.node.target, "--token", verifier)
    assert one_line_error(res).startswith("error: PERMISSION_DENIED:")
    res = credfed("issuer", "list", "--server", served.node.target, "--token", "cf_forged")
    assert one_line_error(res).startswith("error: UNAUTHENTICATED:")
    res = credfed("issuer", "list", "--server", served.node.target)
    assert "no API token" in one_line_error(res)


def test_token_for_unknown_issuer_is_refused(served: Served) -> None:
    res = credfed(
        "token",
        "create",
        "--data-dir",
        str(served.data_dir),
        "--role",
        "issuer:nobody",
        "--name",
        "x",
    )
    assert res.code == 2 and "not registered" in res.err


def _checkpoint_size(served: Served) -> int:
    res = credfed("log", "checkpoint", "--json", *served.admin)
    assert res.code == 0, res.err
    data = res.json()
    assert isinstance(data, dict)
    return int(data.get("tree_size", 0))


def _write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(rows)


def _row(n: int, **over: str) -> list[str]:
    row = dict(
        zip(
            COLUMNS,
            [
                "de-hwk-muenchen",
                f"G{n}",
                f"F{n}",
                "1990-01-01",
                "DE-X-1",
                "Maurer/in",
                "4",
                "7112",
                "construction",
                "2024-07-01",
                "",
            ],
            strict=True,
        )
    )
    row.update(over)
    return [row[c] for c in COLUMNS]


def test_import_reports_rejected_rows_and_imports_nothing(served: Served, tmp_path: Path) -> None:
    credfed("issue", *DRAFT, *served.admin)
    before = _checkpoint_size(served)
    rows = [_row(n) for n in range(20)]
    rows[4] = _row(4, birth_date="1990-13-01")
    rows[11] = _row(11, eqf_level="nine")
    path = tmp_path / "bad.csv"
    _write(path, rows)
    res = credfed("import", str(path), *served.admin)
    assert res.code == 1
    assert f"{path}:6: birth_date:" in res.err  # header is line 1
    assert f"{path}:13: eqf_level:" in res.err
    assert "2 of 20 rows rejected; nothing imported" in res.err
    assert _checkpoint_size(served) == before


def test_import_issues_every_row(served: Served, tmp_path: Path) -> None:
    before = _checkpoint_size(served)
    path = tmp_path / "good.csv"
    _write(path, [_row(n) for n in range(2500)])
    res = credfed("import", str(path), "--json", *served.admin)
    assert res.code == 0, res.err
    out = res.json()
    assert isinstance(out, dict) and out["imported"] == 2500
    assert len(set(out["credential_ids"])) == 2500
    assert "importing" in res.err  # the progress bar
    assert _checkpoint_size(served) == before + 2500


def test_import_of_a_sector_the_issuer_lacks_imports_nothing(
    served: Served, tmp_path: Path
) -> None:
    before = _checkpoint_size(served)
    rows = [_row(n) for n in range(1500)]
    rows[1400] = _row(1400, sector="healthcare")
    path = tmp_path / "sector.csv"
    _write(path, rows)
    res = credfed("import", str(path), *served.admin)
    assert res.code == 1
    # stderr: the progress bar's label, then the one-line error naming the CSV line.
    last = res.err.strip().splitlines()[-1]
    assert last.startswith(f"error: FAILED_PRECONDITION: {path}:1402: issuer de-hwk-muenchen")
    assert last.endswith("nothing imported")
    assert _checkpoint_size(served) == before


def test_log_checkpoint_and_proof(served: Served) -> None:
    credfed("issue", *DRAFT, *served.admin)
    credfed("issue", *DRAFT, *served.admin)
    res = credfed("log", "proof", "--old-size", "1", "--json", *served.admin)
    assert res.code == 0, res.err
    out = res.json()
    assert isinstance(out, dict) and out["verified"] is True and out["signatures_checked"] is True
    human = credfed("log", "checkpoint", *served.admin)
    assert "credfed-checkpoint/v1" in human.out
    res = credfed("log", "proof", "--old-size", "99999999", *served.admin)
    assert one_line_error(res).startswith("error: INVALID_ARGUMENT: old_size")


def test_serve_on_a_port_in_use_is_one_clear_line(served: Served) -> None:
    res = credfed("serve", "--data-dir", str(served.data_dir), "--listen", served.node.target)
    assert "cannot listen on" in one_line_error(res)


def test_peer_export_writes_a_descriptor_a_partner_can_pin(served: Served, tmp_path: Path) -> None:
    from credfed.crypto.envelope import envelope_from_json
    from credfed.federation.descriptor import pin_descriptor

    out = tmp_path / "de.json"
    res = credfed("peer", "export", "--data-dir", str(served.data_dir), "--out", str(out), "--json")
    assert res.code == 0, res.err
    info = res.json()
    assert isinstance(info, dict) and info["country"] == "DE"
    descriptor = pin_descriptor(envelope_from_json(out.read_bytes()), info["fingerprint"])
    assert descriptor.node_id == info["node_id"]


def test_peer_pairing_add_list_remove(served: Served, tmp_path: Path) -> None:
    # A second country's node, as its operator would export it.
    fr = tmp_path / "fr"
    assert (
        credfed(
            "init",
            "--country",
            "FR",
            "--data-dir",
            str(fr),
            "--listen",
            "127.0.0.1:7402",
            "--plaintext-dev",
        ).code
        == 0
    )
    exported = tmp_path / "fr.json"
    res = credfed("peer", "export", "--data-dir", str(fr), "--out", str(exported), "--json")
    info = res.json()
    assert isinstance(info, dict)
    good = str(info["fingerprint"])
    wrong = ("0" if good[0] != "0" else "1") + good[1:]
    de = ["--data-dir", str(served.data_dir)]

    refused = credfed("peer", "add", str(exported), "--fingerprint", wrong, *de)
    assert "fingerprint" in one_line_error(refused)
    assert credfed("peer", "list", "--json", *de).json() == []

    # Operators read fingerprints aloud in groups: spaces and case are ignored.
    spoken = " ".join(good[i : i + 4].upper() for i in range(0, len(good), 4))
    res = credfed("peer", "add", str(exported), "--fingerprint", spoken, "--json", *de)
    assert res.code == 0, res.err
    listed = credfed("peer", "list", "--json", *de).json()
    assert isinstance(listed, list) and len(listed) == 1
    assert listed[0]["country"] == "FR" and listed[0]["fingerprint"] == good
    assert listed[0]["endpoints"] == ["127.0.0.1:7402"]

    again = credfed("peer", "add", str(exported), "--fingerprint", good, *de)
    assert "already pinned" in one_line_error(again)
    # A node never pins itself.
    own = tmp_path / "de.json"
    own_info = credfed("peer", "export", *de, "--out", str(own), "--json").json()
    assert isinstance(own_info, dict)
    res = credfed("peer", "add", str(own), "--fingerprint", str(own_info["fingerprint"]), *de)
    assert "own country" in one_line_error(res)

    # A descriptor whose signed bytes were altered no longer matches anything.
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(exported.read_bytes().replace(b'"key_id":"', b'"key_id":"0', 1))
    res = credfed("peer", "add", str(tampered), "--fingerprint", good, *de)
    assert res.code == 1

    assert credfed("peer", "remove", "fr", *de).code == 0
    assert credfed("peer", "list", "--json", *de).json() == []
    assert "no partner" in one_line_error(credfed("peer", "remove", "FR", *de))
