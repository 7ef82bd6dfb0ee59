"""Verify latency on a node holding 1,000,000 credentials vs. one holding 10,000.

Both nodes are built by bulk import in the same run, restarted (so neither
process carries import-time state), then a separate client process sends
sequential Verify requests with random credential ids and matching birth
dates to each, in alternating blocks. Goal: p50 and p99 on the big node
within 1.2x of the small node. ``--quick`` builds 100,000 instead (for
development only; recorded figures use the full run).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import benchkit as bk
import profiling

GOAL = 1.2


def start(root: Path, name: str) -> bk.NodeProcess:
    bk.cli("init", "--country", bk.COUNTRY, "--data-dir", str(root / name),
           "--listen", "127.0.0.1:0", "--plaintext-dev")  # fmt: skip
    node = bk.NodeProcess(root / name, root / f"{name}.log")
    node.start()
    return node


def fill(node: bk.NodeProcess, name: str, count: int) -> list[str]:
    """Bulk import ``count`` credentials, printing progress; their ids."""
    bk.register_issuer(node)

    def progress(done: int, seconds: float) -> None:
        bk.log(f"{name}: {done:,}/{count:,} credentials ({done / seconds:,.0f}/s)")

    return bk.import_credentials(node, count, progress)


def sample(ids: Sequence[str], n: int, rng: random.Random) -> list[list[str]]:
    """``n`` random (id, matching birth date) pairs, drawn with replacement so
    both nodes get the same number of requests whatever their size."""
    picks = rng.choices(range(len(ids)), k=n)
    return [[ids[i], bk.birth_date(i).isoformat()] for i in picks]


def measure(root: Path, spec: dict[str, object]) -> dict[str, list[float]]:
    path = root / "seqclient.json"
    path.write_text(json.dumps(spec))
    cmd = [sys.executable, str(bk.BENCH_DIR / "seqclient.py"), str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"seqclient failed: {out.stderr.strip()}")
    latencies: dict[str, list[float]] = json.loads(out.stdout)
    return latencies


def db_megabytes(node: bk.NodeProcess) -> float:
    return sum(p.stat().st_size for p in node.data_dir.glob("credfed.db*")) / 1e6


def run(args: argparse.Namespace) -> bk.Result:
    big_count = args.big or (100_000 if args.quick else 1_000_000)
    rng = random.Random(args.seed)
    nodes: dict[str, bk.NodeProcess] = {}
    with bk.workspace("scale") as root:
        try:
            sizes = {"small": args.small, "big": big_count}
            spec: dict[str, object] = {"warmup": args.warmup, "blocks": args.blocks, "nodes": {}}
            for name, count in sizes.items():
                # Registered before the long import, so an interrupt stops it too.
                nodes[name] = start(root, name)
                ids = fill(nodes[name], name, count)
                pairs = sample(ids, args.warmup + args.samples, rng)
                del ids
                nodes[name].restart()
                token = bk.create_token(nodes[name], "verifier", f"bench {name}")
                spec["nodes"][name] = {  # type: ignore[index]
                    "target": nodes[name].target, "token": token, "pairs": pairs,
                }  # fmt: skip
            bk.log("measuring sequential verify latency on both nodes")
            with (
                profiling.maybe_profile(nodes["small"].pid, args.profile, "scale-small"),
                profiling.maybe_profile(nodes["big"].pid, args.profile, "scale-big"),
            ):
                latencies = measure(root, spec)
            disk = {name: db_megabytes(node) for name, node in nodes.items()}
        finally:
            for node in nodes.values():
                node.stop()
    return result(sizes, latencies, disk)


def result(
    sizes: dict[str, int], latencies: dict[str, list[float]], disk: dict[str, float]
) -> bk.Result:
    p = {
        name: (bk.percentile(lat, 50) * 1000, bk.percentile(lat, 99) * 1000)
        for name, lat in latencies.items()
    }
    r50, r99 = p["big"][0] / p["small"][0], p["big"][1] / p["small"][1]
    rows = [
        (f"{name} node", f"{sizes[name]:,} credentials, {disk[name]:,.0f} MB on disk, "
         f"{len(latencies[name]):,} sequential verifies: p50 {p[name][0]:.2f} ms, "
         f"p99 {p[name][1]:.2f} ms")
        for name in ("small", "big")
    ]  # fmt: skip
    rows += [("ratio big/small p50", f"{r50:.2f}x"), ("ratio big/small p99", f"{r99:.2f}x")]
    return bk.Result(
        name=f"scale: verify latency at {sizes['big']:,} vs {sizes['small']:,} credentials",
        ratio=max(r50, r99),
        goal=f"p50 and p99 within {GOAL}x",
        met=max(r50, r99) <= GOAL,
        rows=rows,
    )


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="100,000 instead of 1,000,000")
    p.add_argument("--big", type=int, default=0, help="credentials on the big node")
    p.add_argument("--small", type=int, default=10_000)
    # p99 from 20,000 samples rests on 200 tail samples: stable enough for a 1.2x goal.
    p.add_argument("--samples", type=int, default=20_000, help="measured verifies per node")
    p.add_argument("--warmup", type=int, default=300, help="unmeasured verifies per node")
    p.add_argument("--blocks", type=int, default=20, help="alternating blocks per node")
    p.add_argument("--seed", type=int, default=20261128)
    p.add_argument("--profile", metavar="DIR", help="record py-spy profiles of both nodes here")
    return p.parse_args(argv)


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    run(parse(argv)).print()
    return 0


if __name__ == "__main__":
    sys.exit(bk.entry(main))
