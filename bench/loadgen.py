"""Fallback gRPC load generator (grpc.aio), used when h2load is missing.

Run as its own process by verify_bench.py. It sends the message inside an
h2load body file (gRPC frame: flag byte, 4-byte length, message) as raw
bytes, so both generators send identical requests. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc


def unframe(body: bytes) -> bytes:
    """The message inside one length-prefixed gRPC frame."""
    if len(body) < 5 or body[0] != 0 or int.from_bytes(body[1:5], "big") != len(body) - 5:
        raise ValueError("not one uncompressed gRPC frame")
    return body[5:]


async def _worker(
    call: Any,
    request: bytes,
    metadata: tuple[tuple[str, str], ...],
    until: float,
    measure_from: float,
    latencies: list[float],
    codes: Counter[str],
) -> None:
    while (start := time.perf_counter()) < until:
        try:
            await call(request, metadata=metadata, timeout=30)
            code = "OK"
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        if start >= measure_from:
            latencies.append(time.perf_counter() - start)
            codes[code] += 1


async def generate(args: argparse.Namespace, request: bytes) -> dict[str, Any]:
    metadata = tuple((k, val) for k, _, val in (h.partition(": ") for h in args.header))
    channels = [grpc.aio.insecure_channel(args.target) for _ in range(args.connections)]
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    now = time.perf_counter()
    measure_from = now + args.warmup
    until = measure_from + args.duration
    try:
        # No serializers: the raw request bytes go out as they are.
        calls = [ch.unary_unary(args.method) for ch in channels]
        await asyncio.gather(
            *(
                _worker(call, request, metadata, until, measure_from, latencies, codes)
                for call in calls
                for _ in range(args.streams)
            )
        )
    finally:
        for ch in channels:
            await ch.close()
    return {"latencies": latencies, "codes": dict(codes), "duration": args.duration}


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True)
    p.add_argument("--method", required=True, help="/package.Service/Method")
    p.add_argument("--body-file", required=True)
    p.add_argument("--header", action="append", default=[], help="'name: value'")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--streams", type=int, default=8, help="concurrent calls per connection")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    args = p.parse_args(argv)
    request = unframe(Path(args.body_file).read_bytes())
    print(json.dumps(asyncio.run(generate(args, request))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
