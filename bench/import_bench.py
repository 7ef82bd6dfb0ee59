"""Bulk import rate vs. the raw Ed25519 signing rate, same run.

Baseline: ``SigningKey.sign`` over the exact bytes the node signs for each
credential (DSSE PAE of the canonical record, ~550 bytes), in this process.
Measured: credentials/s through one BulkIssueCredentials stream from this
process to a ``credfed serve`` process. Every credential costs the node one
signature, so the ratio is the share of the import's time spent on the
unavoidable signing; goal >= 50%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

import benchkit as bk
import profiling

from credfed import ids
from credfed.crypto.envelope import CREDENTIAL_TYPE, pae
from credfed.crypto.keys import SigningKey
from credfed.records import encode_record, record_from_draft
from credfed.rpc import convert
from credfed.v1 import registry_pb2 as r

GOAL = 0.5
MIN_COUNT = 20_000  # enough for the node to reach its steady rate


def signed_payloads(count: int) -> list[bytes]:
    """The bytes the node would sign for drafts 0..count-1."""
    out = []
    for n in range(count):
        domain = convert.draft(bk.draft(n), "draft")
        cid = ids.new_credential_id(bk.COUNTRY)
        record = record_from_draft(cid, bk.COUNTRY, bk.ISSUER_NAME, domain, None)
        out.append(pae(CREDENTIAL_TYPE, encode_record(record)))
    return out


def signing_rate(payloads: Sequence[bytes]) -> float:
    key = SigningKey.generate()
    started = time.perf_counter()
    for payload in payloads:
        key.sign(payload)
    return len(payloads) / (time.perf_counter() - started)


def import_round(node: bk.NodeProcess, count: int, first: int) -> tuple[float, float]:
    """Import ``count`` prepared drafts; (credentials/s, node CPU share of one core)."""
    messages: list[r.BulkIssueCredentialsRequest] = list(bk.batches(first, count))
    cpu0, started = bk.cpu_seconds(node.pid), time.perf_counter()
    resp = bk.bulk_issue(node.target, node.admin_token, messages)
    elapsed = time.perf_counter() - started
    cpu = (bk.cpu_seconds(node.pid) - cpu0) / elapsed
    if len(resp.credential_ids) != count:
        raise RuntimeError(f"imported {len(resp.credential_ids)} of {count}")
    return count / elapsed, cpu


def run(args: argparse.Namespace) -> bk.Result:
    count, rounds = args.count, args.rounds
    bk.log(f"import: preparing {count} realistic payloads for the signing baseline")
    payloads = signed_payloads(count)
    size = statistics.mean(len(p) for p in payloads)
    sign_rates: list[float] = []
    import_rates: list[float] = []
    cpu_shares: list[float] = []
    with bk.workspace("import") as root, bk.running_node(root, "de") as node:
        bk.register_issuer(node)
        bk.import_credentials(node, bk.BATCH)  # warm-up: first-call and page-cache effects
        # Alternate baseline and measurement so drift on a shared machine hits both.
        for i in range(rounds):
            sign_rates.append(signing_rate(payloads))
            with profiling.maybe_profile(node.pid, args.profile, f"import-{i}"):
                rate, cpu = import_round(node, count, first=bk.BATCH + i * count)
            import_rates.append(rate)
            cpu_shares.append(cpu)
            bk.log(f"round {i + 1}: sign {sign_rates[-1]:,.0f}/s, import {rate:,.0f}/s")
        sign_rates.append(signing_rate(payloads))
    sign, imp = statistics.median(sign_rates), statistics.median(import_rates)
    ratio = imp / sign
    return bk.Result(
        name="import: BulkIssueCredentials vs raw Ed25519 signing",
        ratio=ratio,
        goal=f"import >= {GOAL:.0%} of signing rate",
        met=ratio >= GOAL,
        rows=[
            ("credentials per round", f"{count:,} (1 stream, {bk.BATCH} drafts/message)"),
            ("signed payload size", f"{size:.0f} bytes mean"),
            ("signing rate (median)", f"{sign:,.0f} sig/s  rounds: {_fmt(sign_rates)}"),
            ("import rate (median)", f"{imp:,.0f} cred/s  rounds: {_fmt(import_rates)}"),
            ("node CPU during import", f"{statistics.median(cpu_shares):.0%} of one core"),
            ("ratio import/signing", f"{ratio:.1%}"),
        ],
    )


def _fmt(values: Sequence[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=MIN_COUNT, help="credentials per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile", metavar="DIR", help="record py-spy profiles of the node here")
    args = p.parse_args(argv)
    if args.count < MIN_COUNT:
        p.error(f"--count must be at least {MIN_COUNT:,}")
    return args


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    run(parse(argv)).print()
    return 0


if __name__ == "__main__":
    sys.exit(bk.entry(main))
