"""``make demo``: a real node, driven through the real CLI, end to end.

Every step runs the ``credfed`` command in its own process, exactly as an
operator would type it; the node itself is a separate ``credfed serve``
process on a loopback port.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from credfed import ids
from credfed.cli import CSV_COLUMNS

CREDFED = [sys.executable, "-m", "credfed.cli"]
HOLDER = {"given": "Jana", "family": "Novák", "birth": "1994-03-17"}


class Tour:
    def __init__(self, root: Path) -> None:
        self.root = root
        level = os.environ.get("CREDFED_DEMO_LOG_LEVEL", "warning")
        self.env = dict(os.environ, CREDFED_LOG_LEVEL=level)

    def run(self, *args: str, expect_fail: bool = False, token: str | None = None) -> str:
        shown = " ".join(a if " " not in a else repr(a) for a in args)
        print(f"\n$ credfed {shown}", flush=True)
        env = dict(self.env)
        if token:
            env["CREDFED_TOKEN"] = token
        proc = subprocess.run(
            [*CREDFED, *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        out = (proc.stdout + proc.stderr).rstrip()
        if out:
            print("  " + out.replace("\n", "\n  "), flush=True)
        if (proc.returncode != 0) != expect_fail:
            raise SystemExit(f"demo: step failed unexpectedly (exit {proc.returncode})")
        return proc.stdout.strip()


def _wait_for(path: Path, proc: subprocess.Popen[bytes], seconds: float = 20) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return int(path.read_text())
        if proc.poll() is not None:
            raise SystemExit("demo: the node exited at start")
        time.sleep(0.05)
    raise SystemExit("demo: the node did not start in time")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="credfed-demo-"))
    tour = Tour(root)
    de = root / "de"
    node: subprocess.Popen[bytes] | None = None
    node_log = None
    started = time.monotonic()
    try:
        print("== 1. An operator creates the German node (Ed25519 key, database, admin token)")
        tour.run("init", "--country", "DE", "--data-dir", str(de), "--listen", "127.0.0.1:0")
        port_file = root / "de.port"
        # CREDFED_DEMO_NODE_LOG: where the node's own log goes (a test scans it).
        node_log_path = os.environ.get("CREDFED_DEMO_NODE_LOG")
        if node_log_path:
            node_log = open(node_log_path, "ab")  # noqa: SIM115 - closed in finally
        node = subprocess.Popen(
            [*CREDFED, "serve", "--data-dir", str(de), "--port-file", str(port_file)],
            env=tour.env,
            stderr=node_log,
        )
        port = _wait_for(port_file, node)
        admin = ["--data-dir", str(de), "--server", f"127.0.0.1:{port}"]
        server = ["--server", f"127.0.0.1:{port}"]
        print(f"   node serving on 127.0.0.1:{port} (plaintext, loopback only)")

        print("\n== 2. Registry staff accredit an issuing body and hand out API tokens")
        tour.run(
            "issuer",
            "add",
            "de-hwk-muenchen",
            "--name",
            "Handwerkskammer München",
            "--sector",
            "energy",
            "--sector",
            "construction",
            *admin,
        )
        issuer_token = tour.run(
            "token",
            "create",
            "--data-dir",
            str(de),
            "--role",
            "issuer:de-hwk-muenchen",
            "--name",
            "HWK München",
        )
        verifier_token = tour.run(
            "token",
            "create",
            "--data-dir",
            str(de),
            "--role",
            "verifier",
            "--name",
            "Elektro Bauer GmbH (HR)",
        )

        print("\n== 3. The chamber issues an electrician's certificate")
        draft = [
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
        cid = tour.run("issue", *draft, *server, token=issuer_token)

        pub = next((de / "keys").glob("*.pub"))
        print(
            "\n== 4. An employer verifies it with one holder attribute; the CLI checks the "
            "signatures and the inclusion proof itself"
        )
        tour.run(
            "verify",
            cid,
            "--birth-date",
            HOLDER["birth"],
            "--public-key",
            str(pub),
            *server,
            token=verifier_token,
        )
        print("\n   A wrong attribute gets exactly the answer an unknown id gets:")
        tour.run(
            "verify",
            cid,
            "--family-name",
            "Schmidt",
            *server,
            token=verifier_token,
            expect_fail=True,
        )
        tour.run(
            "verify",
            ids.new_credential_id("DE"),
            "--family-name",
            "Novák",
            *server,
            token=verifier_token,
            expect_fail=True,
        )
        print("\n   A typo in the id is caught before any lookup:")
        tour.run(
            "verify",
            cid[:-1] + ("2" if cid[-1] != "2" else "3"),
            "--family-name",
            "Novák",
            *server,
            token=verifier_token,
            expect_fail=True,
        )
        print("\n   An employer's token cannot issue:")
        tour.run("issue", *draft, *server, token=verifier_token, expect_fail=True)

        print("\n== 5. Suspend (with an until-date and an appeal case), reinstate, revoke")
        tour.run(
            "suspend",
            cid,
            "--reason",
            "under_investigation",
            "--until",
            "2031-01-31",
            "--appeal-ref",
            "VG-M-2026-118",
            *server,
            token=issuer_token,
        )
        tour.run("verify", cid, "--family-name", "NOVÁK", *server, token=verifier_token)
        tour.run(
            "reinstate",
            cid,
            "--reason",
            "appeal_upheld",
            "--appeal-ref",
            "VG-M-2026-118",
            *server,
            token=issuer_token,
        )
        tour.run("revoke", cid, "--reason", "fraud", *server, token=issuer_token)
        tour.run("revoke", cid, "--reason", "fraud", *server, token=issuer_token, expect_fail=True)
        tour.run("verify", cid, "--birth-date", HOLDER["birth"], *server, token=verifier_token)

        print("\n== 6. Bulk import: 500 certificates from a CSV, all or nothing")
        csv_path = root / "graduates.csv"
        _write_csv(csv_path, 500)
        tour.run("import", str(csv_path), *admin)

        print("\n== 7. The signed status log: checkpoint, and proof that it only grew")
        tour.run("log", "checkpoint", *admin)
        tour.run("log", "proof", "--old-size", "1", "--public-key", str(pub), *admin)
        print(f"\n== done in {time.monotonic() - started:.1f}s — node data in {de}")
    finally:
        if node is not None:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=15)
        if node_log is not None:
            node_log.close()
        if os.environ.get("CREDFED_DEMO_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)


def _write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for n in range(rows):
            writer.writerow(
                [
                    "de-hwk-muenchen",
                    f"Given{n}",
                    f"Family{n}",
                    f"19{70 + n % 30}-0{1 + n % 9}-1{n % 10}",
                    "DE-HWK-MAU-2020",
                    "Maurer/in",
                    "4",
                    "7112",
                    "construction",
                    "2024-07-01",
                    "",
                ]
            )


if __name__ == "__main__":
    main()
