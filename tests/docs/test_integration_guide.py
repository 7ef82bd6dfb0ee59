"""docs/integration-guide.md, run as written against a real TLS node.

Every fenced block after ``<!-- tested: NAME -->`` is run with bash, its
placeholders ($NODE, $CA, $TOKEN, $CREDENTIAL_ID, ...) set as environment
variables, in a directory laid out like the repository (proto/, docs/) plus
what an employer holds (bauer/, the stubs it generates). ``python`` there is
an integrator's Python: grpcio and protobuf, but not the credfed package, so
the example client is shown to work with nothing but the generated stubs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import guidekit
import pytest
from fednet import free_port
from nodeproc import NodeProcess

from credfed import ids
from credfed.rpc.errors import STATUS_FOR

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "integration-guide.md"
CLIENT = REPO / "docs" / "examples" / "verify_client.py"
BIRTH_DATE = "1994-03-17"
EMPLOYER = "Elektro Bauer GmbH"
NOT_FOUND = "no credential matches this id and holder attribute"


def guide_blocks() -> dict[str, str]:
    return guidekit.tested_blocks(GUIDE)


def documented_output(name: str) -> str:
    return guidekit.documented_output(GUIDE, name)


def _cli(*args: str, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "credfed.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert res.returncode == 0, f"credfed {args[0]}: {res.stderr}"
    return res.stdout.strip()


def _issue(data_dir: Path) -> str:
    return _cli(
        "issue", "--data-dir", str(data_dir), "--issuer", "de-hwk-muenchen",
        "--given-names", "Jana", "--family-name", "Novák", "--birth-date", BIRTH_DATE,
        "--national-code", "DE-HWK-EGT-2019",
        "--title", "Elektroniker/in für Energie- und Gebäudetechnik",
        "--eqf-level", "4", "--isco", "7411", "--sector", "energy",
        "--issued-on", "2019-07-01", "--valid-until", "2039-06-30",
    )  # fmt: skip


def _integrator_python(bin_dir: Path) -> None:
    """``bin_dir/python``: this venv's interpreter without site processing,
    so the editable credfed install (a .pth file) is invisible, with
    site-packages (grpcio, protobuf, grpcio-tools) appended to PYTHONPATH."""
    site = sysconfig.get_paths()["purelib"]
    bin_dir.mkdir(parents=True)
    script = bin_dir / "python"
    script.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{site}" exec "{sys.executable}" -S "$@"\n'
    )
    script.chmod(0o755)


@dataclass
class DocNode:
    data_dir: Path
    work: Path
    env: dict[str, str]
    credential_id: str
    revoked_id: str

    def run(self, name: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        return guidekit.run_block(guide_blocks()[name], self.work, {**self.env, **overrides})


def _start_node(root: Path) -> tuple[DocNode, NodeProcess]:
    """``credfed init`` (TLS, with a client-certificate port) and ``serve``,
    an issuer, two credentials (one revoked), a verifier token and a
    verifier client certificate, all made with the CLI as an operator does."""
    data_dir = root / "de"
    port, fed_port, cert_port = free_port(), free_port(), free_port()
    _cli(
        "init", "--country", "DE", "--data-dir", str(data_dir),
        "--listen", f"127.0.0.1:{port}", "--federation-listen", f"127.0.0.1:{fed_port}",
        "--client-cert-listen", f"127.0.0.1:{cert_port}",
    )  # fmt: skip
    proc = NodeProcess(data_dir, root / "de.log", listen=f"127.0.0.1:{port}")
    proc.start()
    try:
        _cli(
            "issuer", "add", "de-hwk-muenchen", "--name", "Handwerkskammer München",
            "--sector", "energy", "--data-dir", str(data_dir),
        )  # fmt: skip
        token = _cli(
            "token", "create", "--role", "verifier", "--name", EMPLOYER, "--data-dir", str(data_dir)
        )
        work = root / "work"
        work.mkdir()
        for shared in ("proto", "docs"):
            (work / shared).symlink_to(REPO / shared)
        _cli(
            "client-cert", "create", "--role", "verifier", "--name", f"{EMPLOYER} (certificate)",
            "--out-dir", str(work / "bauer"), "--data-dir", str(data_dir),
        )  # fmt: skip
        credential_id = _issue(data_dir)
        revoked_id = _issue(data_dir)
        _cli("revoke", revoked_id, "--reason", "fraud", "--data-dir", str(data_dir))
        _integrator_python(root / "bin")
        env = {
            "PATH": os.pathsep.join(
                [str(root / "bin"), str(Path(sys.executable).parent), os.environ["PATH"]]
            ),
            "HOME": str(root),
            "NODE": f"127.0.0.1:{port}",
            "CERT_NODE": f"127.0.0.1:{cert_port}",
            "CA": str(data_dir / "tls" / "ca.pem"),
            "TOKEN": token,
            "CREDENTIAL_ID": credential_id,
            "BIRTH_DATE": BIRTH_DATE,
        }
    except BaseException:
        proc.stop()
        raise
    return DocNode(data_dir, work, env, credential_id, revoked_id), proc


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocNode]:
    doc_node, proc = _start_node(tmp_path_factory.mktemp("guide"))
    try:
        yield doc_node
    finally:
        proc.stop()


def test_grpcurl_lists_the_services_and_reports_health(node: DocNode) -> None:
    listed = node.run("list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == documented_output("list").split()
    health = node.run("health")
    assert health.returncode == 0, health.stderr
    answers = [json.loads(part) for part in health.stdout.replace("}\n{", "}\0{").split("\0")]
    assert answers == [{"status": "SERVING"}, {"status": "SERVING"}]


def test_grpcurl_verify_answers_active_then_revoked(node: DocNode) -> None:
    res = node.run("verify")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)["result"]
    assert result["credential_id"] == node.credential_id
    assert result["status"] == "CREDENTIAL_STATUS_ACTIVE"
    # -emit-defaults: the provenance fields the guide explains are all there.
    assert result["provenance"] == {
        "origin": "DE",
        "signature_checked": False,
        "status_as_of": result["checkpoint"]["timestamp"],
        "source": "STATUS_SOURCE_ORIGIN",
        "data_age_seconds": result["provenance"]["data_age_seconds"],
        "origin_unreachable": False,
        "record_cached": False,
    }
    assert int(result["provenance"]["data_age_seconds"]) < 120
    assert result["recognition"]["outcome"] == "RECOGNITION_OUTCOME_DOMESTIC"
    revoked = node.run("verify", CREDENTIAL_ID=node.revoked_id)
    assert revoked.returncode == 0, revoked.stderr
    answer = json.loads(revoked.stdout)["result"]
    assert answer["status"] == "CREDENTIAL_STATUS_REVOKED"
    assert answer["status_detail"]["reason"] == "fraud"


def test_wrong_attribute_and_unknown_id_get_the_same_documented_answer(node: DocNode) -> None:
    block = guide_blocks()["not-found"]
    unknown = re.findall(r"[A-Z]{2}(?:-[0-9A-Z]{4}){3}-[0-9A-Z]", block)
    assert unknown, "the not-found block names an unknown id"
    for cid in unknown:  # well-formed (right check symbol), so the lookup happens
        assert ids.parse_credential_id(cid) == cid
    res = node.run("not-found")
    assert res.returncode == 64 + grpc.StatusCode.NOT_FOUND.value[0]  # grpcurl's exit status
    expected = documented_output("not-found")
    assert res.stderr.count(expected) == 2, res.stderr
    assert f"Message: {NOT_FOUND}" in expected


def test_a_bad_request_is_invalid_argument_naming_the_field(node: DocNode) -> None:
    res = node.run("invalid")
    assert res.returncode == 64 + grpc.StatusCode.INVALID_ARGUMENT.value[0]
    expected = documented_output("invalid")
    assert expected in res.stderr
    assert "Message: birth_date: " in expected


def test_verify_batch_answers_each_item(node: DocNode) -> None:
    res = node.run("batch")
    assert res.returncode == 0, res.stderr
    items = json.loads(res.stdout)["items"]
    assert items[0]["result"]["status"] == "CREDENTIAL_STATUS_ACTIVE"
    assert items[1]["error"] == {"code": "NOT_FOUND", "message": NOT_FOUND}
    assert items[2]["error"]["code"] == "INVALID_ARGUMENT"
    assert items[2]["error"]["field"] == "requests[2].credential_id"
    assert len(items) == 3


def test_where_recognised_puts_this_country_first(node: DocNode) -> None:
    res = node.run("where")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["credential_id"] == node.credential_id
    assert got["decisions"][0]["country"] == "DE"
    assert got["decisions"][0]["outcome"] == "RECOGNITION_OUTCOME_DOMESTIC"


def test_a_client_certificate_replaces_the_token(node: DocNode) -> None:
    res = node.run("client-cert", TOKEN="")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["result"]["status"] == "CREDENTIAL_STATUS_ACTIVE"
    # The same call on the token port without a token is refused.
    res = node.run("client-cert", CERT_NODE=node.env["NODE"])
    assert "Code: Unauthenticated" in res.stderr


def test_the_python_example_runs_on_generated_stubs_alone(node: DocNode) -> None:
    stubs = node.run("stubs")
    assert stubs.returncode == 0, stubs.stderr
    assert (node.work / "stubs" / "credfed" / "v1" / "verification_pb2_grpc.py").exists()
    # The integrator's Python sees the generated stubs, and no credfed package.
    probe = subprocess.run(
        ["python", "-c", "import credfed.v1.verification_pb2 as m; print(m.__file__)"],
        cwd=node.work,
        env={**node.env, "PYTHONPATH": "stubs"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert probe.stdout.strip() == str(node.work / "stubs/credfed/v1/verification_pb2.py")
    res = node.run("client")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"{node.credential_id}: ACTIVE"
    assert "source ORIGIN" in lines[2]
    assert "signature checked by this node: no" in lines[2]
    assert lines[3] == "  recognition in DE: DOMESTIC"
    # Nothing about the holder beyond what was passed.
    for personal in ("Jana", "Novák"):
        assert personal not in res.stdout + res.stderr
    revoked = node.run("client", CREDENTIAL_ID=node.revoked_id)
    assert revoked.returncode == 1, revoked.stderr
    assert revoked.stdout.splitlines()[0] == f"{node.revoked_id}: REVOKED"
    wrong = node.run("client", BIRTH_DATE="1990-01-01")
    assert wrong.returncode == 1
    assert wrong.stdout.startswith(f"{node.credential_id}: NOT_FOUND")
    bad = node.run("client", BIRTH_DATE="17.03.1994")
    assert bad.returncode == 2
    assert "INVALID_ARGUMENT: birth_date: must be a date YYYY-MM-DD" in bad.stderr


def test_the_access_log_names_the_employer(node: DocNode) -> None:
    assert node.run("verify").returncode == 0
    deadline = time.monotonic() + 10  # audit records are group-committed
    while True:
        shown = json.loads(
            _cli("access-log", node.credential_id, "--data-dir", str(node.data_dir), "--json")
        )
        rows = shown["records"]
        if any(r["organisation"] == EMPLOYER and r["action"] == "Verify" for r in rows):
            break
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)


def test_the_python_example_retries_after_the_retry_after_trailer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two verifications a second, no burst: the node's own settings, by environment.
    monkeypatch.setenv("CREDFED_LIMITS_RATE_BY_ROLE_VERIFIER", "2")
    monkeypatch.setenv("CREDFED_LIMITS_BURST_BY_ROLE_VERIFIER", "1")
    limited, proc = _start_node(tmp_path)
    try:
        cid = limited.credential_id
        env = limited.env
        start = time.monotonic()
        res = subprocess.run(
            [sys.executable, str(CLIENT), "--birth-date", BIRTH_DATE, cid, cid, cid],
            env={
                **env,
                "CREDFED_NODE": env["NODE"],
                "CREDFED_CA_FILE": env["CA"],
                "CREDFED_TOKEN": env["TOKEN"],
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        elapsed = time.monotonic() - start
    finally:
        proc.stop()
    assert res.returncode == 0, res.stderr
    assert [line for line in res.stdout.splitlines() if not line.startswith(" ")] == [
        f"{cid}: ACTIVE"
    ] * 3
    waits = [int(ms) for ms in re.findall(r"RESOURCE_EXHAUSTED; retrying in (\d+) ms", res.stderr)]
    assert waits, res.stderr
    assert all(0 < ms <= 500 for ms in waits)  # 2 per second: at most 500 ms to wait
    assert elapsed >= sum(waits) / 1000


def test_the_error_table_covers_every_status_the_code_returns() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)`", section, re.M))
    documented |= set(re.findall(r"^\| `[A-Z_]+`, `([A-Z_]+)`", section, re.M))
    for name in documented:
        assert name in grpc.StatusCode.__members__, f"not a gRPC status: {name}"
    mapped = {code.name for _, code in STATUS_FOR}
    rpc = REPO / "src" / "credfed" / "rpc"
    raised = {
        name
        for path in rpc.glob("*.py")
        for name in re.findall(r"grpc\.StatusCode\.([A-Z_]+)", path.read_text(encoding="utf-8"))
    }
    assert mapped <= raised  # the parse sees the table too
    missing = raised - documented
    assert not missing, f"status codes the node returns but the guide does not explain: {missing}"
