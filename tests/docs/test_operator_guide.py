"""docs/operator-guide.md, run as written by two operators, DE and FR.

Every ``<!-- tested: NAME -->`` block is run with bash, in the guide's
order, with the guide's shell variables set for the operator running it,
in that operator's own working directory (what they exchange out of band is
copied between the two). ``credfed`` is the venv's, first on PATH. Nodes
are the guide's own ``credfed serve`` line, run in the background with TLS
on free loopback ports; only the federation timings are shortened (by the
environment, as the guide shows), so that heartbeats come within seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import guidekit
import pytest
from fednet import free_port
from prometheus_client import generate_latest

from credfed import ids
from credfed.rpc.metrics import Metrics

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "operator-guide.md"
#: What the guide's example outputs show for the paths the test chooses.
EXAMPLE_PATHS = {"BACKUPS": "/var/backups/credfed", "DATA": "/var/lib/credfed"}
#: Heartbeat and anti-entropy every second instead of every minute.
FAST = {"CREDFED_FEDERATION_CHECKPOINT_INTERVAL": "1", "CREDFED_FEDERATION_SYNC_INTERVAL": "1"}
PERSONAL = ("Jana", "Novák", "Kowalski", "1994-03-17", "1990-05-02")
GRADUATES = (
    "issuer_id,given_names,family_name,birth_date,national_code,title,eqf_level,isco_code,"
    "sector,issued_on,valid_until\n"
    "de-hwk-muenchen,Jan,Kowalski,1990-05-02,DE-HWK-EGT-2019,Elektroniker,4,7411,energy,"
    "2024-07-01,\n"
    "de-hwk-muenchen,Jana,Novák,1994-03-17,DE-HWK-EGT-2019,Elektroniker,4,7411,energy,"
    "2024-07-01,2044-06-30\n"
)


def blocks() -> dict[str, str]:
    return guidekit.tested_blocks(GUIDE)


def shape(text: str, env: dict[str, str] | None = None) -> list[str]:
    """Lines with what differs between runs (ids, hashes, numbers, the
    test's paths) replaced, to compare a command's output with the guide's."""
    for var, example in EXAMPLE_PATHS.items():
        if env is not None:
            text = text.replace(env[var], example)
    text = re.sub(r"[0-9a-f]{8,}", "<hex>", text)
    text = re.sub(r"\d+(?:\.\d+)?", "<n>", text)
    return [line.rstrip() for line in text.strip().splitlines()]


def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@dataclass
class Operator:
    country: str
    partner: str
    work: Path
    env: dict[str, str]
    ran: set[str]
    logs: list[Path] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return Path(self.env["DATA"])

    def run(self, name: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        self.ran.add(name)
        return guidekit.run_block(blocks()[name], self.work, {**self.env, **overrides})

    def ok(self, name: str, **overrides: str) -> str:
        res = self.run(name, **overrides)
        assert res.returncode == 0, f"{self.country} {name}: {res.stderr}"
        return res.stdout

    def cli_json(self, *args: str) -> object:
        res = subprocess.run(
            ["credfed", *args, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert res.returncode == 0, f"credfed {args}: {res.stderr}"
        return json.loads(res.stdout)

    def status(self, data: Path | None = None) -> dict[str, object]:
        report = self.cli_json("status", "--data-dir", str(data or self.data))
        assert isinstance(report, dict)
        return report

    def serve(self, block: str = "serve", **overrides: str) -> Served:
        log = self.work.parent / f"{self.country.lower()}-{len(self.logs)}.log"
        self.logs.append(log)
        self.ran.add(block)
        env = {**self.env, **FAST, **overrides}
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["bash", "-c", blocks()[block]],
                cwd=self.work,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stopped as a whole
            )
        served = Served(proc)
        try:
            data = overrides.get("DATA", overrides.get("RESTORED", self.env["DATA"]))

            def up() -> bool:
                assert proc.poll() is None, f"{self.country} node exited: {log.read_text()}"
                return self.run("health", DATA=data).returncode == 0

            eventually(up, f"{self.country} to serve")
        except BaseException:
            served.stop()
            raise
        return served


@dataclass
class Served:
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=20)


def _operators(root: Path, ran: set[str]) -> tuple[Operator, Operator]:
    ports = {cc: (free_port(), free_port(), free_port()) for cc in ("DE", "FR")}
    base = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "HOME": str(root),
        "LANG": "C.UTF-8",
    }
    ops = []
    for cc, partner in (("DE", "FR"), ("FR", "DE")):
        client, fed, metrics = ports[cc]
        work = root / f"{cc.lower()}-operator"
        work.mkdir()
        (root / "backups").mkdir(exist_ok=True)
        env = {
            **base,
            "DATA": str(root / "nodes" / cc.lower()),
            "COUNTRY": cc,
            "HOST": "localhost",
            "BIND": "127.0.0.1",
            "CLIENT_PORT": str(client),
            "FED_PORT": str(fed),
            "METRICS": f"127.0.0.1:{metrics}",
            "CREDFED_SERVER": f"localhost:{client}",
            "BACKUPS": str(root / "backups"),
            "PARTNER": partner,
            "PARTNER_ENDPOINT": f"localhost:{ports[partner][1]}",
        }
        ops.append(Operator(cc, partner, work, env, ran))
    return ops[0], ops[1]


@pytest.fixture
def operators(tmp_path: Path) -> Iterator[tuple[Operator, Operator]]:
    de, fr = _operators(tmp_path, set())
    yield de, fr
    for op in (de, fr):  # what a node logged: never personal data, and in JSON lines
        for log in op.logs:
            text = log.read_text(encoding="utf-8")
            for personal in PERSONAL:
                assert personal not in text, f"{log.name} holds personal data"


def _check_data_dir_table(data: Path) -> None:
    """The guide's table of the data directory against a serving node's."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("### What is in the data directory", 1)[1].split("\n#", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")][:3]
        for line in section.splitlines()
        if line.startswith("| `")
    ]
    assert len(rows) >= 12, rows
    for paths, documented, secret in rows:
        for name in re.findall(r"`([^`]+)`", paths):
            pattern = name.replace("<key id>", "*").replace("<CC>", "??")
            found = [data] if name.startswith(".") else sorted(data.glob(pattern))
            assert found, f"{name}: not in the data directory"
            for path in found:
                if documented:
                    assert mode(path) == int(documented, 8), f"{name}: mode {mode(path):04o}"
                if "yes" in secret or "personal" in secret:
                    assert mode(path) == 0o600, f"{name} is a secret, mode {mode(path):04o}"


def _exchange(sender: Operator, receiver: Operator) -> None:
    """Out of band: the descriptor file and the peer token."""
    shutil.copy(sender.work / f"{sender.country}.json", receiver.work)
    token = sender.work / f"peer-token-for-{receiver.country}"
    shutil.copy(token, receiver.work / f"peer-token-from-{sender.country}")


def _metric_names(scrape: str) -> dict[str, set[str]]:
    """Metric and sample names -> the label names seen with them."""
    names: dict[str, set[str]] = {}
    for line in scrape.splitlines():
        if line.startswith("# HELP "):
            names.setdefault(line.split()[2], set())
        elif line and not line.startswith("#"):
            name, _, labels = line.partition("{")
            name = name.split()[0]
            seen = set(re.findall(r"(\w+)=\"", labels.rpartition("}")[0]))
            names.setdefault(name, set()).update(seen - {"le"})
    return names


def _check_promql(scrape: str) -> None:
    """Every metric the guide names is one the node exports; every label
    the rules use is one the node sets, where the metric has samples."""
    text = GUIDE.read_text(encoding="utf-8")
    exported = _metric_names(scrape)
    # Labels of counters the scraped node never incremented (no samples):
    # from the same declarations, each touched once.
    touched = Metrics()
    touched.rate_limited("verifier", "rate")
    touched.verified("ACTIVE", "local")
    for name, labels in _metric_names(generate_latest(touched.registry).decode()).items():
        if name in exported:
            exported[name] |= labels
    table = text.split("### Metrics", 1)[1].split("\n### ", 1)[0]
    for name in set(re.findall(r"\bcredfed_\w+", table)):
        assert name in exported, f"the guide names {name}, which the node does not export"
    rules = text.split("<!-- promql -->\n```yaml\n", 1)[1].split("```", 1)[0]
    for name, labels in re.findall(r"\b(credfed_\w+)(?:\{([^}]*)\})?", rules):
        assert name in exported, f"an alert uses {name}, which the node does not export"
        used = set(re.findall(r"(\w+)=~?\"", labels))
        if exported[name]:
            assert used <= exported[name], f"{name} has no label {used - exported[name]}"
    grouped = re.findall(r"by \(([^)]*)\) \((?:\s*\w+\()*\s*(credfed_\w+)", rules)
    assert len(grouped) >= 3, grouped  # the pattern still finds the aggregations
    for group, metric in grouped:
        for label in (part.strip() for part in group.split(",")):
            assert label in exported[metric] | {"le"}, f"{metric} has no label {label}"


def test_two_operators_follow_the_guide(operators: tuple[Operator, Operator]) -> None:
    de, fr = operators
    ran = de.ran
    started = time.monotonic()

    # -- 1. initialise, check, serve ------------------------------------------------
    for op in (de, fr):
        op.ok("init")
    assert shape(de.ok("config-check"), de.env) == shape(
        guidekit.documented_output(GUIDE, "config-check")
    )
    assert shape(de.ok("config-env"), de.env) == shape(
        guidekit.documented_output(GUIDE, "config-env")
    )
    typo = de.run("config-typo")
    assert typo.returncode == 1
    assert typo.stderr.strip() == guidekit.documented_output(GUIDE, "config-typo")
    nodes = {op.country: op.serve() for op in (de, fr)}
    try:
        health = de.ok("health")
        assert shape(health) == shape(guidekit.documented_output(GUIDE, "health"))

        # -- 2. pairing ----------------------------------------------------------------
        fingerprints = {}
        for op in (de, fr):
            out = op.ok("peer-export")
            documented = guidekit.documented_output(GUIDE, "peer-export")  # DE's
            assert shape(out) == shape(
                documented.replace("de-", f"{op.country.lower()}-").replace(
                    "(DE)", f"({op.country})"
                )
            )
            fingerprints[op.country] = out.rsplit("fingerprint ", 1)[1].strip()
            op.ok("peer-token")
            assert mode(op.work / f"peer-token-for-{op.partner}") == 0o600
        _exchange(de, fr)
        _exchange(fr, de)
        # A fingerprint misheard on the phone: refused, nothing pinned, token kept.
        wrong = de.run("peer-add", PARTNER_FINGERPRINT=fingerprints["DE"])
        assert wrong.returncode == 1
        assert "fingerprint" in wrong.stderr
        assert not (de.data / "peers" / "FR.json").exists()
        for op in (de, fr):
            op.ok("peer-add", PARTNER_FINGERPRINT=fingerprints[op.partner])
            assert not (op.work / f"peer-token-from-{op.partner}").exists()
            assert mode(op.data / "peers" / f"{op.partner}.link.json") == 0o600
        for cc, node in nodes.items():  # pairing changes need a restart
            node.stop()
            nodes[cc] = (de if cc == "DE" else fr).serve()

        def partner_ok(op: Operator) -> bool:
            report = op.status()
            origins = report["origins"]
            assert isinstance(origins, list)
            return report["alarms"] == [] and [o["origin"] for o in origins] == [op.partner]

        for op in (de, fr):
            eventually(partial(partner_ok, op), f"{op.country} to hear from its partner")
        checked = de.ok("peer-check")
        assert checked.startswith("FR\tfr-") and f"\tlocalhost:{fr.env['FED_PORT']}\t" in checked
        assert re.search(r"^  FR .* ok$", checked, re.M), checked
        assert checked.rstrip().endswith("alarms: none")
        _check_data_dir_table(de.data)

        # -- 3. issuers, credentials, employers -----------------------------------
        de.ok("issuer-add")
        issuer_token = de.ok("issuer-token").strip()
        assert issuer_token.startswith("cf_")
        cid = de.ok("issue", ISSUER_TOKEN=issuer_token).strip()
        assert ids.parse_credential_id(cid) == cid
        (de.work / "graduates.csv").write_text(GRADUATES, encoding="utf-8")
        imported = de.ok("import", ISSUER_TOKEN=issuer_token)
        assert shape(imported) == shape(guidekit.documented_output(GUIDE, "import"))
        assert de.ok("verifier-token").startswith("cf_")
        created = de.ok("client-cert")
        assert mode(de.work / "bauer" / "client.key") == 0o600
        client_id = re.search(r"client (\w+) \(verifier\)", created)
        assert client_id is not None, created
        revoked = de.ok("token-revoke", CLIENT_ID=client_id.group(1))
        assert f"revoked client {client_id.group(1)} (verifier" in revoked
        clients = de.cli_json("token", "list", "--data-dir", str(de.data))
        assert isinstance(clients, list)
        assert {c["client_id"]: c["status"] for c in clients}[client_id.group(1)] == "revoked"
        fr_employer = fr.ok("verifier-token").strip()

        def verified_at_fr(credential: str) -> str:
            out = fr.ok("verify-at-partner", CREDENTIAL_ID=credential, VERIFIER_TOKEN=fr_employer)
            assert out.startswith(f"{credential}: ACTIVE\n"), out
            assert "origin signature checked by the node" in out
            return out

        verified_at_fr(cid)

        # -- 4. rotation ---------------------------------------------------------------
        rotated = de.ok("key-rotate")
        assert shape(rotated) == shape(guidekit.documented_output(GUIDE, "key-rotate"))
        nodes["DE"].stop()
        nodes["DE"] = de.serve()  # signs with the new key; FR fetches the new descriptor

        def fr_sees_v2() -> bool:
            return "\tv2\t" in fr.ok("partner-sees-rotation")

        eventually(fr_sees_v2, "FR to accept DE's rotation")
        shown = fr.ok("partner-sees-rotation")
        assert shape(shown.replace("localhost", "credfed.de.example.eu")) == shape(
            guidekit.documented_output(GUIDE, "partner-sees-rotation")
        )
        assert fingerprints["DE"] not in shown  # a new descriptor, a new fingerprint
        before = (de.data / "tls" / "server.pem").read_bytes()
        tls = de.ok("tls-rotate")
        assert tls.startswith("new certificates; server serial ")
        assert tls.rstrip().endswith(": SERVING")  # no restart
        assert (de.data / "tls" / "server.pem").read_bytes() != before
        verified_at_fr(cid)

        # -- 5. backup, and the restore guard ---------------------------------------
        backups = Path(de.env["BACKUPS"])
        out = de.ok("backup")
        assert shape(out, de.env) == shape(guidekit.documented_output(GUIDE, "backup"))
        (first,) = backups.iterdir()
        first_made = time.monotonic()
        assert mode(first) == 0o700
        assert all(mode(p) == 0o600 for p in first.rglob("*") if p.is_file())
        later = de.ok("issue", ISSUER_TOKEN=issuer_token).strip()  # after the backup
        de_size = de.status()["log_size"]

        def fr_holds_all() -> bool:
            report = fr.status()
            origins = report["origins"]
            assert isinstance(origins, list)
            return bool(origins[0]["checkpoint_size"] == de_size)

        eventually(fr_holds_all, "FR to replicate DE's newest entry")
        nodes.pop("DE").stop()
        restored = de.work.parent / "nodes" / "de-restored-1"
        de.ok("restore", BACKUP=str(first), RESTORED=str(restored))
        refused = de.run("serve-restored", RESTORED=str(restored))
        assert refused.returncode == 1, refused.stderr
        assert shape(refused.stderr.splitlines()[-1]) == shape(
            guidekit.documented_output(GUIDE, "serve-restored")
        )
        assert f"size {de_size}" in refused.stderr  # FR's size, named
        # Roll it forward from FR: the credential issued after the backup is
        # in the log again, its record lost (listed by id).
        recovered = de.ok("recover", RESTORED=str(restored)).splitlines()
        recover_doc = guidekit.documented_output(GUIDE, "recover").splitlines()
        assert shape(recovered[0]) == shape(recover_doc[0])
        assert recovered[-1] == recover_doc[-1]
        assert any(line.endswith(f"issue them again): {later}") for line in recovered)
        assert not (restored / "restored.json").exists()  # FR holds no more now
        # A newer backup, of the stopped node, restored and served instead.
        time.sleep(max(0.0, 1.1 - (time.monotonic() - first_made)))  # backup names: seconds
        de.ok("backup")
        (second,) = (p for p in backups.iterdir() if p != first)
        restored = de.work.parent / "nodes" / "de-restored-2"
        de.ok("restore", BACKUP=str(second), RESTORED=str(restored))
        nodes["DE"] = de.serve("serve-restored", RESTORED=str(restored))
        assert not (restored / "restored.json").exists()  # checked with FR, marker gone
        # FR's link reconnects to a partner that was down within its backoff (5 s).
        eventually(
            lambda: (
                fr.run(
                    "verify-at-partner", CREDENTIAL_ID=later, VERIFIER_TOKEN=fr_employer
                ).returncode
                == 0
            ),
            "FR to reach the restored DE",
        )
        verified_at_fr(later)

        # -- 7. monitor ----------------------------------------------------------------
        at = {"DATA": str(restored)}
        eventually(lambda: de.status(restored)["alarms"] == [], "no alarms at the restored DE")
        text = de.ok("status", **at)
        human, _, as_json = text.partition("\n{")
        report = json.loads("{" + as_json)
        assert human.rstrip().endswith("alarms: none")
        assert report["serving"] is True
        assert report["alarms"] == []
        assert [o["forked"] for o in report["origins"]] == [False]
        assert fr.status()["alarms"] == []  # above all, no FORK: the restore forked nothing
        metrics = de.ok("metrics", **at)
        assert shape(metrics) == shape(guidekit.documented_output(GUIDE, "metrics"))
        assert 'credfed_origin_forked{origin="FR"} 0.0' in metrics
        with urllib.request.urlopen(f"http://{de.env['METRICS']}/metrics", timeout=10) as res:
            _check_promql(res.read().decode())
        audit = de.ok("audit", **at, CREDENTIAL_ID=cid)
        assert "chain intact" in audit
        assert re.search(r"LookupCredential +FR node \(peer, FR\) +OK", audit), audit
        (exported,) = de.work.glob("audit-*.jsonl")
        assert mode(exported) == 0o600
        assert all(json.loads(line)["hash"] for line in exported.read_text().splitlines())
        fr_audit = fr.ok("audit", CREDENTIAL_ID=cid)
        assert re.search(r"Verify +Elektro Bauer GmbH \(verifier, FR\) +OK", fr_audit), fr_audit
    finally:
        for node in nodes.values():
            node.stop()

    # The nodes' logs: JSON lines, calls tagged with their request id,
    # background work with its task.
    lines = [json.loads(line) for log in de.logs + fr.logs for line in log.read_text().splitlines()]
    assert any(
        line.get("event") == "credential.issued" and line.get("request_id") for line in lines
    )
    assert any(
        line.get("event") == "federation.descriptor_updated" and line.get("task") for line in lines
    )
    assert ran == set(blocks()), f"tested blocks not run: {set(blocks()) - ran}"
    assert time.monotonic() - started < 90
