"""Shared benchmark plumbing: node processes, realistic drafts, bulk import,
statistics and result tables.

Every node under test is a real ``credfed serve`` process on 127.0.0.1; the
benchmark process (or a generator it spawns) is always a separate client.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import cryptography
import grpc

from credfed.v1 import common_pb2 as c
from credfed.v1 import registry_pb2 as r
from credfed.v1 import registry_pb2_grpc

BENCH_DIR = Path(__file__).resolve().parent
CREDFED = [sys.executable, "-m", "credfed.cli"]
COUNTRY = "DE"
ISSUER_ID = "de-bench-kammer"
ISSUER_NAME = "Industrie- und Handelskammer für München und Oberbayern (Berufsbildung)"
BATCH = 1000  # drafts per BulkIssueCredentials message: the contract's maximum
# The response lists every id (~22 bytes each) and must stay under the node's
# 4 MiB message limit, so large imports are split into several streams.
MAX_STREAM = 100_000
MAX_MESSAGE = 4 * 1024 * 1024

# (national code, title, EQF level, ISCO-08, sector): typical trade
# certificates, so signed records have a realistic size (~500-600 bytes).
QUALIFICATIONS = (
    ("DE-HWK-EGT-2019", "Elektroniker/in für Energie- und Gebäudetechnik", 4, "7411", "energy"),
    ("DE-HWK-MAU-2020", "Maurer/in (Gesellenprüfung, Hochbau)", 4, "7112", "construction"),
    ("DE-IHK-FIAE-2020", "Fachinformatiker/in für Anwendungsentwicklung", 4, "2514",
     "information technology"),
    ("DE-PFL-PFK-2020", "Pflegefachfrau/Pflegefachmann (generalistische Ausbildung)", 4, "2221",
     "healthcare"),
    ("DE-IHK-BKF-2021", "Berufskraftfahrer/in Güterverkehr mit Grundqualifikation", 3, "8332",
     "transport"),
    ("DE-IHK-IM-2018", "Industriemechaniker/in, Fachrichtung Instandhaltung", 4, "7233",
     "manufacturing"),
    ("DE-HWK-MEI-EL-2015", "Elektrotechnikermeister/in (Meisterprüfung Teile I-IV)", 6, "3113",
     "energy"),
)  # fmt: skip
SECTORS = sorted({q[4] for q in QUALIFICATIONS})
GIVEN = ("Jana", "Lukas Maximilian", "Zoë", "Mehmet Ali", "Anna-Lena", "Jürgen", "Katarzyna")
FAMILY = ("Novák", "Müller-Lüdenscheidt", "Öztürk", "Schmidt", "Wiśniewska", "Björnsdóttir")
_BIRTH_EPOCH = date(1960, 1, 1)


# -- process hygiene ----------------------------------------------------------------


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so every ``finally`` (node shutdown, temp
    dir removal) runs; Ctrl-C already raises KeyboardInterrupt."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def entry(main: Callable[[], int]) -> int:
    """Run a benchmark's main; Ctrl-C ends it with one line, after every
    ``finally`` has stopped the nodes and removed the temp dirs."""
    exit_on_sigterm()
    try:
        return main()
    except KeyboardInterrupt:
        print("\ninterrupted: nodes stopped, temporary data removed", file=sys.stderr)
        return 130


@contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix=f"credfed-bench-{prefix}-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# Runs the real ``credfed`` click command, then exits at once: a stray
# non-daemon thread (see docs/performance.md, "Bugs found") must not keep a
# finished command alive.
_CLI_RUNNER = """
import os, sys
from credfed.cli import main
try:
    main(sys.argv[1:], prog_name="credfed")
except SystemExit as done:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(done.code if isinstance(done.code, int) else 1)
"""


def cli(*args: str) -> str:
    """Run one ``credfed`` command; its stdout, or an exception with stderr."""
    env = dict(os.environ, CREDFED_LOG_LEVEL="warning")
    proc = subprocess.run(
        [sys.executable, "-c", _CLI_RUNNER, *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"credfed {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command name: state is field 3, utime 14, stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- nodes --------------------------------------------------------------------------


@dataclass
class NodeProcess:
    """One ``credfed serve`` process with its own data directory."""

    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def start(self, timeout: float = 30.0) -> None:
        port_file = self.data_dir.parent / f"{self.data_dir.name}.port"
        port_file.unlink(missing_ok=True)
        # info: the access log line per RPC (with its status code) is the
        # evidence that load-generator calls really succeeded.
        env = dict(os.environ, CREDFED_LOG_LEVEL="info")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*CREDFED, "serve", "--data-dir", str(self.data_dir),
                 "--listen", "127.0.0.1:0", "--port-file", str(port_file)],
                stdout=log, stderr=log, env=env,
            )  # fmt: skip
        try:
            self.port = _wait_for_port(self.proc, port_file, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM, then SIGKILL if it lingers; safe to call twice. Every
        commit is durable (synchronous=FULL), so a kill loses nothing."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def rpc_codes(self, since: int = 0) -> Counter[tuple[str, str]]:
        """(method, code) counts of the access-log lines written after byte ``since``."""
        counts: Counter[tuple[str, str]] = Counter()
        with self.log_path.open("rb") as f:
            f.seek(since)
            for line in f:
                if b'"event": "rpc"' not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                counts[(str(entry.get("method")), str(entry.get("code")))] += 1
        return counts


def _wait_for_port(proc: subprocess.Popen[bytes], port_file: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"node exited at start (status {proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError("node did not start in time")
        time.sleep(0.02)
    return int(port_file.read_text())


@contextmanager
def running_node(root: Path, name: str) -> Iterator[NodeProcess]:
    """Initialise a node in ``root/name``, serve it, stop it on exit."""
    data_dir = root / name
    cli(
        "init",
        "--country",
        COUNTRY,
        "--data-dir",
        str(data_dir),
        "--listen",
        "127.0.0.1:0",
        "--plaintext-dev",
    )
    node = NodeProcess(data_dir, root / f"{name}.log")
    try:
        node.start()
        yield node
    finally:
        node.stop()


def create_token(node: NodeProcess, role: str, name: str) -> str:
    return cli("token", "create", "--data-dir", str(node.data_dir), "--role", role, "--name", name)


def channel(target: str) -> Any:
    return grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", MAX_MESSAGE)])


def register_issuer(node: NodeProcess) -> None:
    """The benchmark's issuer, accredited for every sector its drafts use."""
    with channel(node.target) as ch:
        registry_pb2_grpc.RegistryServiceStub(ch).RegisterIssuer(
            r.RegisterIssuerRequest(issuer_id=ISSUER_ID, name=ISSUER_NAME, sectors=SECTORS),
            metadata=(("authorization", f"Bearer {node.admin_token}"),),
            timeout=30,
        )


# -- drafts -------------------------------------------------------------------------


def birth_date(n: int) -> date:
    """Draft ``n``'s holder birth date: a pure function of n, so a verify
    client can match any imported id without keeping the drafts."""
    return _BIRTH_EPOCH + timedelta(days=(n * 7919) % 15_000)


def draft(n: int) -> c.CredentialDraft:
    code, title, level, isco, sector = QUALIFICATIONS[n % len(QUALIFICATIONS)]
    issued = date(2015, 1, 1) + timedelta(days=(n * 104_729) % 3650)
    return c.CredentialDraft(
        issuer_id=ISSUER_ID,
        holder=c.Holder(
            given_names=GIVEN[n % len(GIVEN)],
            family_name=f"{FAMILY[(n // 7) % len(FAMILY)]}",
            birth_date=birth_date(n).isoformat(),
        ),
        qualification=c.Qualification(
            national_code=code, title=title, eqf_level=level, isco_code=isco, sector=sector
        ),
        issued_on=issued.isoformat(),
        valid_until=(issued + timedelta(days=20 * 365)).isoformat(),
    )


def batches(start: int, count: int) -> Iterator[r.BulkIssueCredentialsRequest]:
    """Messages of up to BATCH drafts numbered start .. start+count-1."""
    for first in range(start, start + count, BATCH):
        last = min(first + BATCH, start + count)
        yield r.BulkIssueCredentialsRequest(drafts=[draft(n) for n in range(first, last)])


def bulk_issue(
    target: str, token: str, requests: Iterable[r.BulkIssueCredentialsRequest]
) -> r.BulkIssueCredentialsResponse:
    """One BulkIssueCredentials stream (one transaction on the node)."""
    with channel(target) as ch:
        stub = registry_pb2_grpc.RegistryServiceStub(ch)
        resp: r.BulkIssueCredentialsResponse = stub.BulkIssueCredentials(
            iter(requests), metadata=(("authorization", f"Bearer {token}"),), timeout=3600
        )
        return resp


def import_credentials(
    node: NodeProcess,
    total: int,
    progress: Callable[[int, float], None] | None = None,
) -> list[str]:
    """Issue drafts 0..total-1 in streams of MAX_STREAM; their ids in order."""
    ids: list[str] = []
    started = time.perf_counter()
    for start in range(0, total, MAX_STREAM):
        count = min(MAX_STREAM, total - start)
        resp = bulk_issue(node.target, node.admin_token, batches(start, count))
        if len(resp.credential_ids) != count:
            raise RuntimeError(f"asked for {count} credentials, got {len(resp.credential_ids)}")
        ids.extend(resp.credential_ids)
        if progress is not None:
            progress(len(ids), time.perf_counter() - started)
    return ids


# -- statistics and reporting -------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Result:
    """One benchmark's outcome: printed rows, the headline ratio and its goal."""

    name: str
    ratio: float
    goal: str
    met: bool
    rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def print(self) -> None:
        width = max(len(k) for k, _ in self.rows) if self.rows else 0
        print(f"\n== {self.name}")
        for key, value in self.rows:
            print(f"  {key:<{width}}  {value}")
        for note in self.notes:
            print(f"  note: {note}")
        print(f"  goal {self.goal}: {'MET' if self.met else 'MISSED'} (ratio {self.ratio:.3f})")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ratio": self.ratio,
            "goal": self.goal,
            "met": self.met,
            "rows": dict(self.rows),
            "notes": self.notes,
        }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine() -> list[tuple[str, str]]:
    """What the figures were measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    h2load = shutil.which("h2load")
    h2 = ""
    if h2load:
        h2 = subprocess.run(
            [h2load, "--version"], capture_output=True, text=True, check=False
        ).stdout
    return [
        ("date", time.strftime("%Y-%m-%d %H:%M %Z")),
        ("credfed", _revision()),
        ("cpu", f"{os.cpu_count()} x {cpu}"),
        ("python", platform.python_version()),
        ("grpcio", grpc.__version__),
        ("cryptography", cryptography.__version__),
        ("sqlite", sqlite3.sqlite_version),
        ("h2load", h2.strip().splitlines()[0] if h2 else "not installed"),
    ]


def _revision() -> str:
    """The commit measured, and whether src/ had uncommitted edits (read-only git)."""
    root = BENCH_DIR.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [
        line.split(maxsplit=1)[1] for line in git("status", "--porcelain", "--", "src").splitlines()
    ]
    return f"{head} + uncommitted changes in {', '.join(dirty)}" if dirty else head
