"""Run the credfed benchmarks (``make bench``) and print a summary table.

Each benchmark compares the node against a baseline measured in the same
run, so the ratios hold on a shared, noisy machine; absolute figures do not.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import benchkit as bk
import federation_bench
import import_bench
import scale_bench
import verify_bench

# name: (parse its argv, run it)
BENCHES: dict[
    str,
    tuple[Callable[[Sequence[str]], argparse.Namespace], Callable[[argparse.Namespace], bk.Result]],
] = {
    "verify": (verify_bench.parse, verify_bench.run),
    "import": (import_bench.parse, import_bench.run),
    "scale": (scale_bench.parse, scale_bench.run),
    "fed-propagation": (federation_bench.parse, federation_bench.run_propagation),
    "fed-catchup": (federation_bench.parse, federation_bench.run_catchup),
    "fed-verify": (federation_bench.parse, federation_bench.run_crossborder),
}


def bench_argv(name: str, args: argparse.Namespace) -> list[str]:
    argv = ["--profile", args.profile] if args.profile else []
    if name in ("scale", "fed-catchup") and args.quick:
        argv.append("--quick")
    return argv


def summary(results: Sequence[bk.Result]) -> str:
    header = ("benchmark", "ratio", "goal", "result")
    rows = [
        (r.name.split(":")[0], f"{r.ratio:.3f}", r.goal, "met" if r.met else "MISSED")
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    rule = "  ".join("-" * w for w in widths)
    head = "  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True))
    return "\n".join([head, rule, *lines])


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = ", ".join(BENCHES)
    p.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated: {names}")
    p.add_argument(
        "--quick",
        action="store_true",
        help="scale: 100,000 instead of 1,000,000; fed-catchup: 20,000 instead of 100,000",
    )
    p.add_argument("--profile", metavar="DIR", help="record py-spy profiles of the nodes here")
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the results as JSON")
    args = p.parse_args(argv)
    args.selected = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(args.selected) - set(BENCHES)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    args = parse(argv)
    info = bk.machine()
    for key, value in info:
        print(f"{key:<13} {value}")
    results = []
    for name in args.selected:
        parse_bench, run_bench = BENCHES[name]
        bk.log(f"running {name} benchmark")
        result = run_bench(parse_bench(bench_argv(name, args)))
        result.print()
        results.append(result)
    print("\n== summary (ratios against baselines measured in this run)")
    print(summary(results))
    if args.json:
        payload = {"machine": dict(info), "results": [r.as_dict() for r in results]}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(bk.entry(main))
