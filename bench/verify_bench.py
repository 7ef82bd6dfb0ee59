"""Verify throughput and latency vs. grpc.health.v1/Check, same generator, same run.

Health/Check is the cheapest call the node serves (no auth, no storage), so
it measures what the gRPC stack and the access log alone cost; Verify adds
auth, the credential read, signature check, inclusion proof and response.
Both runs hit one node with the same h2load settings, in ABBA order
(health, verify, verify, health, ...) so drift on a shared machine hits both.
Goal: Verify QPS >= 70% of health QPS.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import benchkit as bk
import grpc
import loadgen
import profiling
from grpc_health.v1 import health_pb2

from credfed.v1 import common_pb2 as c
from credfed.v1 import verification_pb2 as v

GOAL = 0.7
HEALTH = "/grpc.health.v1.Health/Check"
VERIFY = "/credfed.v1.VerificationService/Verify"
H2LOAD = shutil.which("h2load") or "/usr/bin/h2load"
SEED_CREDENTIALS = 1000
# A request cut off when h2load's duration ends may be logged as CANCELLED.
_CUT_OFF = {"CANCELLED"}


@dataclass
class Target:
    """One gRPC method as the generator sends it."""

    label: str
    method: str
    body: Path
    headers: list[str]


@dataclass
class LoadRun:
    label: str
    qps: float
    p50_ms: float
    p99_ms: float
    measured: int
    node_cpu: float
    generator_cpu: float
    logged: dict[str, int]

    def describe(self) -> str:
        return (
            f"{self.label}: {self.qps:,.0f} req/s ({self.measured:,} timed), "
            f"p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, CPU node "
            f"{self.node_cpu:.0%} / generator {self.generator_cpu:.0%}, node log {self.logged}"
        )


def frame(message: bytes) -> bytes:
    """One uncompressed gRPC message frame: flag 0, big-endian length, bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def write_targets(root: Path, credential_id: str, birth: str, token: str) -> list[Target]:
    health = health_pb2.HealthCheckRequest(service="").SerializeToString()
    verify = v.VerifyRequest(credential_id=credential_id, birth_date=birth).SerializeToString()
    (root / "health.bin").write_bytes(frame(health))
    (root / "verify.bin").write_bytes(frame(verify))
    return [
        Target("health", HEALTH, root / "health.bin", []),
        Target("verify", VERIFY, root / "verify.bin", [f"authorization: Bearer {token}"]),
    ]


def validate(node: bk.NodeProcess, target: Target, credential_id: str) -> None:
    """Send the body file's exact bytes with a real gRPC client: status OK and
    the expected answer, or the benchmark would time errors."""
    raw = loadgen.unframe(target.body.read_bytes())
    metadata = tuple((k, val) for k, _, val in (h.partition(": ") for h in target.headers))
    with bk.channel(node.target) as ch:
        reply, call = ch.unary_unary(target.method).with_call(raw, metadata=metadata, timeout=10)
    if call.code().name != "OK":
        raise RuntimeError(f"{target.label}: {call.code()}")
    if target.method == HEALTH:
        ok = health_pb2.HealthCheckResponse.FromString(reply).status == 1  # SERVING
    else:
        result = v.VerifyResponse.FromString(reply).result
        active = result.status == c.CREDENTIAL_STATUS_ACTIVE
        ok = result.credential_id == credential_id and active
    if not ok:
        raise RuntimeError(f"{target.label}: unexpected answer to the benchmark request")


def h2load_command(
    node: bk.NodeProcess, t: Target, args: argparse.Namespace, log: Path
) -> list[str]:
    cmd = [H2LOAD, "-c", str(args.connections), "-m", str(args.streams), "-t", "1",
           "-D", _ms(args.duration), "--warm-up-time", _ms(args.warmup),
           "-d", str(t.body), "--log-file", str(log),
           "-H", "content-type: application/grpc", "-H", "te: trailers"]  # fmt: skip
    for header in t.headers:
        cmd += ["-H", header]
    return [*cmd, f"http://{node.target}{t.method}"]


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"  # h2load takes integers with a unit


def run_h2load(node: bk.NodeProcess, t: Target, args: argparse.Namespace, log: Path) -> float:
    """Run h2load; its QPS. Fails on any non-2xx or unfinished request."""
    proc = subprocess.run(
        h2load_command(node, t, args, log), capture_output=True, text=True, check=False
    )
    out = proc.stdout
    if proc.returncode != 0:
        raise RuntimeError(f"h2load failed ({proc.returncode}): {proc.stderr.strip()}\n{out}")
    m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    req = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if m is None or req is None:
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    if req[2] != req[3]:
        raise RuntimeError(f"h2load: only {req[3]} of {req[2]} requests succeeded:\n{out}")
    return float(m[1])


def h2load_latencies(log: Path) -> list[float]:
    """Seconds per request from h2load's --log-file (start us, status, duration us)."""
    out = []
    for line in log.read_text().splitlines():
        _, status, micros = line.split("\t")
        if status != "200":
            raise RuntimeError(f"h2load logged HTTP {status}")
        out.append(int(micros) / 1e6)
    return out


def run_loadgen(
    node: bk.NodeProcess, t: Target, args: argparse.Namespace
) -> tuple[float, list[float]]:
    """The Python fallback generator, in its own process; (QPS, latencies)."""
    cmd = [sys.executable, str(bk.BENCH_DIR / "loadgen.py"), "--target", node.target,
           "--method", t.method, "--body-file", str(t.body),
           "--connections", str(args.connections), "--streams", str(args.streams),
           "--duration", str(args.duration), "--warmup", str(args.warmup)]  # fmt: skip
    for header in t.headers:
        cmd += ["--header", header]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    bad = {k: n for k, n in out["codes"].items() if k != "OK"}
    if bad:
        raise RuntimeError(f"{t.label}: generator saw failures {bad}")
    latencies: list[float] = out["latencies"]
    return len(latencies) / out["duration"], latencies


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def generate(
    node: bk.NodeProcess, t: Target, args: argparse.Namespace, root: Path, n: int
) -> tuple[float, list[float]]:
    """One timed run of the chosen generator; (QPS, per-request seconds)."""
    if args.generator == "h2load":
        log = root / f"{t.label}-{n}.h2load.tsv"
        return run_h2load(node, t, args, log), h2load_latencies(log)
    return run_loadgen(node, t, args)


def load_run(
    node: bk.NodeProcess, t: Target, args: argparse.Namespace, root: Path, n: int
) -> LoadRun:
    offset = node.log_size()
    with profiling.maybe_profile(node.pid, args.profile, f"{t.label}-{n}"):
        # CPU shares show which side saturates: the node (~100%+) or the generator.
        cpu0, gen0, started = bk.cpu_seconds(node.pid), _children_cpu(), time.perf_counter()
        qps, latencies = generate(node, t, args, root, n)
        elapsed = time.perf_counter() - started
        node_cpu = (bk.cpu_seconds(node.pid) - cpu0) / elapsed
        generator_cpu = (_children_cpu() - gen0) / elapsed
    logged = {code: k for (method, code), k in node.rpc_codes(offset).items() if method == t.method}
    check_logged(t, logged, len(latencies), args.connections * args.streams)
    return LoadRun(
        t.label,
        qps,
        bk.percentile(latencies, 50) * 1000,
        bk.percentile(latencies, 99) * 1000,
        len(latencies),
        node_cpu,
        generator_cpu,
        logged,
    )


def check_logged(t: Target, logged: dict[str, int], measured: int, in_flight: int) -> None:
    """The node's own access log proves the calls answered OK (h2load counts
    HTTP 200 as success even when grpc-status says otherwise): it logs every
    failed call (see prove_failures_logged), so no failure line while
    ``measured`` responses came back means all of them were OK. Where OK calls
    are logged too (older nodes, debug level) there must be enough of them."""
    failed = {code: k for code, k in logged.items() if code != "OK"}
    cut_off = sum(k for code, k in failed.items() if code in _CUT_OFF)
    ok = logged.get("OK")
    if set(failed) - _CUT_OFF or cut_off > in_flight or (ok is not None and ok < measured):
        raise RuntimeError(
            f"{t.label}: node logged {logged} for {measured} measured requests; "
            "the generator's figures are not of successful calls"
        )


def prove_failures_logged(node: bk.NodeProcess, credential_id: str, token: str) -> None:
    """A canary that must fail (wrong birth date: NOT_FOUND) must show up in
    the node's log at its configured level, or check_logged proves nothing."""
    offset = node.log_size()
    wrong = v.VerifyRequest(credential_id=credential_id, birth_date="1900-01-01")
    with bk.channel(node.target) as ch:
        try:
            ch.unary_unary(VERIFY)(
                wrong.SerializeToString(),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=10,
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            raise RuntimeError("the canary verify with a wrong birth date succeeded")
    time.sleep(0.2)  # the node writes its log line after answering
    if node.rpc_codes(offset)[(VERIFY, "NOT_FOUND")] != 1:
        raise RuntimeError("the node does not log failed calls: cannot prove the load was OK")


def pick_generator(requested: str) -> str:
    if requested == "python" or (requested == "auto" and not Path(H2LOAD).exists()):
        if requested == "auto":
            print(
                "h2load not found (install it: apt-get install nghttp2-client); falling "
                "back to the grpc.aio generator bench/loadgen.py in its own process",
                flush=True,
            )
        return "python"
    if not Path(H2LOAD).exists():
        raise SystemExit("h2load not found: apt-get install nghttp2-client")
    return "h2load"


def prepare(root: Path, node: bk.NodeProcess) -> list[Target]:
    """Seed credentials, a verifier token, the request files, checked once."""
    bk.register_issuer(node)
    ids = bk.import_credentials(node, SEED_CREDENTIALS)
    token = bk.create_token(node, "verifier", "bench employer")
    n = SEED_CREDENTIALS // 2
    targets = write_targets(root, ids[n], bk.birth_date(n).isoformat(), token)
    for t in targets:
        validate(node, t, ids[n])
    prove_failures_logged(node, ids[n], token)
    return targets


def run(args: argparse.Namespace) -> bk.Result:
    args.generator = pick_generator(args.generator)
    runs: dict[str, list[LoadRun]] = {"health": [], "verify": []}
    with bk.workspace("verify") as root, bk.running_node(root, "de") as node:
        targets = prepare(root, node)
        order = [t for i in range(args.rounds) for t in (targets if i % 2 == 0 else targets[::-1])]
        for n, t in enumerate(order):
            run_ = load_run(node, t, args, root, n)
            runs[t.label].append(run_)
            bk.log(run_.describe())
    return result(args, runs)


def result(args: argparse.Namespace, runs: dict[str, list[LoadRun]]) -> bk.Result:
    def med(label: str, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in runs[label]))

    ratio = med("verify", "qps") / med("health", "qps")
    rows = [
        ("generator", f"{args.generator}, {args.connections} connections x {args.streams} "
         f"streams, {args.duration:g}s after {args.warmup:g}s warm-up, {args.rounds} rounds"),
    ]  # fmt: skip
    for label in ("health", "verify"):
        qps = ", ".join(f"{r.qps:,.0f}" for r in runs[label])
        rows += [
            (f"{label} QPS (median)", f"{med(label, 'qps'):,.0f}  rounds: {qps}"),
            (
                f"{label} p50 / p99",
                f"{med(label, 'p50_ms'):.2f} ms / {med(label, 'p99_ms'):.2f} ms",
            ),
            (
                f"{label} CPU node / generator",
                f"{med(label, 'node_cpu'):.0%} / {med(label, 'generator_cpu'):.0%} of one core",
            ),
        ]
    logged = sum((Counter(r.logged) for r in runs["verify"]), Counter[str]())
    ok = logged.pop("OK", 0)
    timed = sum(r.measured for r in runs["verify"])
    rows += [
        ("ratio verify/health QPS", f"{ratio:.1%}"),
        ("verify calls in node log", f"failures: {dict(logged) or 'none'} for {timed:,} timed "
         f"responses (a canary NOT_FOUND was logged); OK lines: {ok:,}"),
    ]  # fmt: skip
    return bk.Result(
        name="verify: Verify vs grpc.health.v1/Check",
        ratio=ratio,
        goal=f"verify QPS >= {GOAL:.0%} of health QPS",
        met=ratio >= GOAL,
        rows=rows,
    )


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", choices=["auto", "h2load", "python"], default="auto")
    p.add_argument("-c", "--connections", type=int, default=8)
    p.add_argument("-m", "--streams", type=int, default=8, help="concurrent streams per connection")
    p.add_argument("-D", "--duration", type=float, default=10, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2, help="warm-up seconds before each run")
    p.add_argument("--rounds", type=int, default=2, help="health+verify pairs, ABBA order")
    p.add_argument("--profile", metavar="DIR", help="record py-spy profiles of the node here")
    return p.parse_args(argv)


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    run(parse(argv)).print()
    return 0


if __name__ == "__main__":
    sys.exit(bk.entry(main))
