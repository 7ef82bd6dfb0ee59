"""``make demo``: a real three-country federation on this machine.

DE, FR and PL each run ``credfed serve`` as a separate process on a loopback
port with their own SQLite database and keys. FR is linked to both; PL only
to FR, so everything PL learns about DE travels through FR, while PL checks
it with DE's descriptor that PL's operator pinned. Every operator step runs
the ``credfed`` command in its own process, exactly as typed; only the
revocation timing is measured in-process, so that command start-up does not
hide or inflate it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import IO

import tomli_w

from credfed import ids
from credfed.rpc.client import Client
from credfed.v1 import common_pb2 as c
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v

CREDFED = [sys.executable, "-m", "credfed.cli"]
HOLDER = {"given": "Jana", "family": "Novák", "birth": "1994-03-17"}
COUNTRIES = ("DE", "FR", "PL")
#: Who calls whom (caller, callee): PL and DE are not linked to each other.
LINKS = (("DE", "FR"), ("FR", "DE"), ("FR", "PL"), ("PL", "FR"))
#: Short periods so the tour shows heartbeats and ages within seconds.
FEDERATION = {"sync_interval": 2.0, "checkpoint_interval": 2.0, "max_staleness": 60.0}


class Tour:
    def __init__(self, root: Path) -> None:
        self.root = root
        level = os.environ.get("CREDFED_DEMO_LOG_LEVEL", "warning")
        self.env = dict(os.environ, CREDFED_LOG_LEVEL=level)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.metrics_ports: dict[str, int] = {}
        # CREDFED_DEMO_NODE_LOG=PREFIX: each node's own log goes to PREFIX.<country>
        # (a test scans them); one file each, so concurrent lines never mix.
        self.node_log_prefix = os.environ.get("CREDFED_DEMO_NODE_LOG")
        self.node_logs: list[IO[bytes]] = []

    def run(self, *args: str, expect_fail: bool = False, token: str | None = None) -> str:
        shown = " ".join(a if " " not in a else repr(a) for a in args)
        shown = shown.replace(str(self.root) + "/", "")
        print(f"\n$ credfed {shown}", flush=True)
        env = dict(self.env)
        if token:
            env["CREDFED_TOKEN"] = token
        proc = subprocess.run(
            [*CREDFED, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
            cwd=self.root,
        )
        out = (proc.stdout + proc.stderr).rstrip()
        if out:
            print("  " + out.replace("\n", "\n  "), flush=True)
        if (proc.returncode != 0) != expect_fail:
            raise SystemExit(f"demo: step failed unexpectedly (exit {proc.returncode})")
        return proc.stdout.strip()

    def dir(self, country: str) -> str:
        return country.lower()

    def client(self, country: str, token: str) -> Client:
        """An in-process client over TLS, trusting the node's CA."""
        ca = (self.root / self.dir(country) / "tls" / "ca.pem").read_bytes()
        return Client(f"127.0.0.1:{self.ports[country]}", token, root_certificates=ca)

    def serve(self, country: str) -> None:
        port_file = self.root / f"{country}.port"
        port_file.unlink(missing_ok=True)
        self.procs[country] = subprocess.Popen(
            [*CREDFED, "serve", "--data-dir", self.dir(country), "--port-file", str(port_file)],
            env=self.env,
            stderr=self._log_file(country),
            cwd=self.root,
        )
        _wait_for(port_file, self.procs[country])

    def stop(self, country: str) -> None:
        proc = self.procs.pop(country)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)

    def close(self) -> None:
        for country in list(self.procs):
            self.stop(country)
        for log in self.node_logs:
            log.close()

    def _log_file(self, country: str) -> IO[bytes] | None:
        if self.node_log_prefix is None:
            return None
        self.node_logs.append(open(f"{self.node_log_prefix}.{country}", "ab"))  # noqa: SIM115
        return self.node_logs[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for(path: Path, proc: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return
        if proc.poll() is not None:
            raise SystemExit("demo: a node exited at start")
        time.sleep(0.05)
    raise SystemExit("demo: a node did not start in time")


def _shorten_timings(config_file: Path) -> None:
    data = tomllib.loads(config_file.read_text())
    data.setdefault("federation", {}).update(FEDERATION)
    config_file.write_text(tomli_w.dumps(data))


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="credfed-demo-"))
    tour = Tour(root)
    started = time.monotonic()
    try:
        _pairing(tour)
        admin = {cc: (root / tour.dir(cc) / "admin.token").read_text().strip() for cc in COUNTRIES}

        print("\n== 3. The three nodes start (separate processes; TLS for clients, mutual TLS")
        print("   between partners, each trusting the CAs in the descriptors it pinned)")
        for cc in COUNTRIES:
            tour.serve(cc)
            print(f"   {cc} serving on 127.0.0.1:{tour.ports[cc]}")

        print("\n== 4. In Germany, a chamber is accredited and issues an electrician's certificate")
        tour.run(
            "issuer",
            "add",
            "de-hwk-muenchen",
            "--name",
            "Handwerkskammer München",
            "--sector",
            "energy",
            "--data-dir",
            "de",
        )
        issuer_token = tour.run(
            "token",
            "create",
            "--data-dir",
            "de",
            "--role",
            "issuer:de-hwk-muenchen",
            "--name",
            "HWK München",
        )
        cid = tour.run("issue", *_draft(), "--data-dir", "de", token=issuer_token)

        print("\n== 5. A Polish employer verifies it at the PL node")
        print("   PL has no link to DE: the lookup and DE's log travel through FR; PL checks")
        print("   DE's signatures with the descriptor its operator pinned.")
        pl_verifier = tour.run(
            "token",
            "create",
            "--data-dir",
            "pl",
            "--role",
            "verifier",
            "--name",
            "Budimex HR (PL)",
        )
        verify_at_pl = ["verify", cid, "--birth-date", HOLDER["birth"], "--data-dir", "pl"]
        tour.run(*verify_at_pl, token=pl_verifier)
        print("\n   A wrong attribute gets exactly the answer an unknown id gets:")
        tour.run(
            "verify", cid, "--family-name", "Schmidt", "--data-dir", "pl", token=pl_verifier,
            expect_fail=True,
        )  # fmt: skip
        tour.run(
            "verify", ids.new_credential_id("DE"), "--family-name", "Novák", "--data-dir", "pl",
            token=pl_verifier, expect_fail=True,
        )  # fmt: skip

        print("\n== 6. Recognition: FR and PL decide how German electricians count locally")
        tour.run(
            "recognition", "add", "--rule-id", "de-electricians", "--origin", "DE",
            "--eqf-min", "4", "--eqf-max", "4", "--isco", "7411", "--sector", "energy",
            "--outcome", "conditional",
            "--local-occupation", "Électricien (habilitation électrique B1V/BR)",
            "--adaptation-months", "6", "--language-level", "B1",
            "--legal-basis", "Directive 2005/36/EC art. 14; Code du travail R4544-9",
            "--valid-from", "2024-01-01", "--data-dir", "fr",
        )  # fmt: skip
        tour.run(
            "recognition", "add", "--rule-id", "de-egt-2019", "--origin", "DE",
            "--national-code", "DE-HWK-EGT-2019", "--outcome", "full",
            "--local-occupation", "Elektryk (świadectwo kwalifikacyjne SEP E)",
            "--legal-basis", "Ustawa o zasadach uznawania kwalifikacji zawodowych, art. 9",
            "--valid-from", "2024-01-01", "--data-dir", "pl",
        )  # fmt: skip
        fr_verifier = tour.run(
            "token", "create", "--data-dir", "fr", "--role", "verifier",
            "--name", "Bouygues Énergies RH (FR)",
        )  # fmt: skip
        print("\n   A French employer verifies the same certificate at FR:")
        tour.run(
            "verify", cid, "--birth-date", HOLDER["birth"], "--data-dir", "fr", token=fr_verifier
        )
        print("\n   The worker asks where the certificate is recognised (PL holds FR's signed")
        print("   rules, received over federation):")
        _wait_for_rules(tour, cid, pl_verifier)
        tour.run(
            "recognition", "where", cid, "--birth-date", HOLDER["birth"], "--data-dir", "pl",
            token=pl_verifier,
        )  # fmt: skip

        print("\n== 7. DE revokes the certificate; how long until PL (two hops away) sees it?")
        elapsed = _revoke_and_time(tour, cid, admin["DE"], pl_verifier)
        print(
            f"   PL answered REVOKED {elapsed * 1000:.0f} ms after DE acknowledged the revocation"
        )
        print("   (DE -> FR -> PL, pushed over the log subscriptions, verified at each hop)")
        tour.run(*verify_at_pl, token=pl_verifier)
        tour.run("status", "--data-dir", "pl")

        print("\n== 8. DE goes down. PL still answers, from its cached record and replica,")
        print("   and says how old the status is")
        tour.stop("DE")
        time.sleep(3)
        tour.run(*verify_at_pl, token=pl_verifier)
        tour.run("status", "--data-dir", "pl")
        print(
            f"\n   Past max_staleness ({FEDERATION['max_staleness']:.0f} s in this tour) PL would"
            " answer 'status unknown', never 'valid'."
        )

        print("\n== 9. DE comes back; PL's replica is fresh again")
        tour.serve("DE")
        _wait_fresh(tour, cid, pl_verifier)
        tour.run("status", "--data-dir", "pl")
        _operations(tour)
        kept = f" — node data kept in {root}" if os.environ.get("CREDFED_DEMO_KEEP") == "1" else ""
        print(f"\n== done in {time.monotonic() - started:.1f}s{kept}")
    finally:
        tour.close()
        if os.environ.get("CREDFED_DEMO_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)


def _operations(tour: Tour) -> None:
    print("\n== 10. Operating PL's node: configuration, health, metrics, an online backup")
    tour.run("config", "check", "--data-dir", "pl")
    tour.run("health", "--data-dir", "pl")
    url = f"http://127.0.0.1:{tour.metrics_ports['PL']}/metrics"
    print(f"\n$ curl -s {url} | grep -E 'replica_(size|lag)|verify_results|health_serving'")
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    shown = re.compile(r"^credfed_(replica_size|replica_lag_seconds|verify_results_total|health)")
    for line in text.splitlines():
        if shown.match(line):
            print("  " + line)
    tour.run("backup", "--data-dir", "pl", "--out", "pl-backup")


def _pairing(tour: Tour) -> None:
    print("== 1. Three operators create their nodes: Ed25519 signing key, a TLS CA with")
    print("   server and client certificates (ECDSA P-256), database, admin token")
    for cc in COUNTRIES:
        tour.ports[cc] = _free_port()
        tour.run(
            "init",
            "--country",
            cc,
            "--data-dir",
            tour.dir(cc),
            "--listen",
            f"127.0.0.1:{tour.ports[cc]}",
            "--federation-listen",
            f"127.0.0.1:{_free_port()}",
            "--metrics-listen",
            f"127.0.0.1:{tour.metrics_ports.setdefault(cc, _free_port())}",
        )
        _shorten_timings(tour.root / tour.dir(cc) / "credfed.toml")
    print(f"   (tour only: federation timings shortened in each credfed.toml: {FEDERATION})")

    print("\n== 2. Pairing: each exports its signed descriptor; partners pin it after")
    print("   confirming the fingerprint by phone, and issue each other peer tokens")
    fingerprints = {}
    for cc in COUNTRIES:
        out = tour.run("peer", "export", "--data-dir", tour.dir(cc), "--out", f"{cc}.json")
        fingerprints[cc] = out.rsplit("fingerprint ", 1)[1].strip()
    for caller, callee in LINKS:
        token = tour.run(
            "token",
            "create",
            "--data-dir",
            tour.dir(callee),
            "--role",
            "peer",
            "--partner",
            caller,
            "--name",
            f"{caller} node",
        )
        token_file = tour.root / f"{callee}-token-for-{caller}"
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    linked = set(LINKS)
    for cc in COUNTRIES:
        for other in COUNTRIES:
            if other == cc:
                continue
            args = [
                "peer",
                "add",
                f"{other}.json",
                "--fingerprint",
                fingerprints[other],
                "--data-dir",
                tour.dir(cc),
            ]
            if (cc, other) in linked:
                args += ["--token-file", f"{other}-token-for-{cc}"]
            tour.run(*args)
    tour.run("peer", "list", "--data-dir", "pl")


def _draft() -> list[str]:
    return [
        "--issuer",
        "de-hwk-muenchen",
        "--given-names",
        HOLDER["given"],
        "--family-name",
        HOLDER["family"],
        "--birth-date",
        HOLDER["birth"],
        "--national-code",
        "DE-HWK-EGT-2019",
        "--title",
        "Elektroniker/in für Energie- und Gebäudetechnik",
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


def _verify_request(cid: str) -> v.VerifyRequest:
    return v.VerifyRequest(credential_id=cid, birth_date=HOLDER["birth"])


def _revoke_and_time(tour: Tour, cid: str, de_admin: str, pl_verifier: str) -> float:
    de = tour.client("DE", de_admin)
    pl = tour.client("PL", pl_verifier)
    try:
        print(f"\n$ (RegistryService.RevokeCredential {cid} reason=fraud at DE)")
        de.call(
            de.registry.RevokeCredential,
            r.RevokeCredentialRequest(credential_id=cid, reason="fraud"),
        )
        acknowledged = time.monotonic()
        while time.monotonic() - acknowledged < 30:
            result = pl.call(pl.verification.Verify, _verify_request(cid)).result
            if result.status == c.CREDENTIAL_STATUS_REVOKED:
                return time.monotonic() - acknowledged
            time.sleep(0.005)
        raise SystemExit("demo: PL did not see the revocation within 30 s")
    finally:
        de.close()
        pl.close()


def _wait_for_rules(tour: Tour, cid: str, pl_verifier: str) -> None:
    pl = tour.client("PL", pl_verifier)
    request = v.WhereRecognisedRequest(credential_id=cid, birth_date=HOLDER["birth"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            decisions = pl.call(pl.verification.WhereRecognised, request).decisions
            if any(d.country == "FR" and d.rule_id for d in decisions):
                return
            time.sleep(0.1)
        raise SystemExit("demo: FR's rules did not reach PL")
    finally:
        pl.close()


def _wait_fresh(tour: Tour, cid: str, pl_verifier: str) -> None:
    pl = tour.client("PL", pl_verifier)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            result = pl.call(pl.verification.Verify, _verify_request(cid)).result
            if result.provenance.data_age_seconds <= FEDERATION["checkpoint_interval"]:
                return
            time.sleep(0.1)
        raise SystemExit("demo: PL's replica of DE did not become fresh again")
    finally:
        pl.close()


if __name__ == "__main__":
    main()
