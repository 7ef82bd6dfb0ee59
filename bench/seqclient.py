"""Sequential Verify client for scale_bench.py, run as its own process.

Reads a JSON spec ``{"nodes": {name: {"target", "token", "pairs": [[id,
birth_date], ...]}}, "warmup": n, "blocks": k}``, sends one request at a time
(each pair once, in the given random order; the first ``warmup`` pairs are
not measured) and prints per-node latencies in seconds as JSON. Nodes take
turns in blocks, alternating which goes first, so machine noise falls on all
of them alike.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import grpc

from credfed.v1 import verification_pb2 as v
from credfed.v1 import verification_pb2_grpc


class Probe:
    """One node: its stub, token and request stream."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.channel = grpc.insecure_channel(spec["target"])
        self.stub = verification_pb2_grpc.VerificationServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {spec['token']}"),)
        self.pairs: list[list[str]] = spec["pairs"]
        self.latencies: list[float] = []

    def verify(self, credential_id: str, birth: str) -> float:
        request = v.VerifyRequest(credential_id=credential_id, birth_date=birth)
        started = time.perf_counter()
        reply = self.stub.Verify(request, metadata=self.metadata, timeout=30)
        elapsed = time.perf_counter() - started
        if reply.result.credential_id != credential_id:
            raise RuntimeError(f"answer for {reply.result.credential_id}, not {credential_id}")
        return elapsed


def run(spec: dict[str, Any]) -> dict[str, list[float]]:
    probes = {name: Probe(s) for name, s in spec["nodes"].items()}
    try:
        for probe in probes.values():
            for cid, birth in islice(probe.pairs, spec["warmup"]):
                probe.verify(cid, birth)
        blocks = int(spec["blocks"])
        names = list(probes)
        for block in range(blocks):
            for name in names if block % 2 == 0 else names[::-1]:
                probe = probes[name]
                measured = probe.pairs[spec["warmup"] :]
                size = len(measured) // blocks
                for cid, birth in measured[block * size : (block + 1) * size]:
                    probe.latencies.append(probe.verify(cid, birth))
    finally:
        for probe in probes.values():
            probe.channel.close()
    return {name: p.latencies for name, p in probes.items()}


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    print(json.dumps(run(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
