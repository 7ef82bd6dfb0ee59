"""Federation benchmarks (issue 3), each against a figure measured in the same run.

* ``fed-propagation``: five nodes in a chain DE - AT - CZ - SK - HU, each
  linked to its neighbours both ways and pinning every other, so HU gets
  DE's log relayed through AT, CZ and SK. For each of N revocations at DE
  (one at a time), the time from just before the RevokeCredential call is
  sent until each replica's SubscribeLog stream (opened by this process at
  that node) carries a checkpoint covering it. Goal: 4-hop p99 <= 250 ms;
  the 1-hop (DE -> AT) figures are the comparison from the same run.
* ``fed-catchup``: a node FR started after DE holds 100,000 log entries
  catches up through its link. Baseline: a raw batched insert of the same
  100,000 leaf byte strings into a fresh SQLite file with the store's
  pragmas. Goal: catch-up rate >= 50% of the raw insert rate.
* ``fed-verify``: Verify of DE credentials at FR (cross-border, record cache
  warm, status from FR's replica) vs. Verify of the same credential at DE
  (local), same h2load settings, ABBA order. Goal: >= 80% of local QPS.

Every node is a real ``credfed serve`` process on 127.0.0.1 with a
``[federation]`` of sync_interval = checkpoint_interval = 5 s, so a
propagation under 5 s comes from the push stream, not from anti-entropy.

``--only catchup-parts`` (not in ``make bench``) times each step of a
catch-up on its own, to show where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import benchkit as bk
import grpc
import loadgen
import profiling
import verify_bench as vb

from credfed import config as cfg
from credfed.bootstrap import add_client, init_node
from credfed.clock import utc_now
from credfed.config import FederationSettings
from credfed.crypto.keys import SigningKey
from credfed.federation.descriptor import fingerprint
from credfed.federation.local import own_descriptor
from credfed.federation.peers import PeerDirectory
from credfed.v1 import common_pb2 as c
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc, registry_pb2_grpc
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v

GOAL_P99_MS = 250.0
GOAL_CATCHUP = 0.5
GOAL_CROSSBORDER = 0.8
#: Heartbeats and anti-entropy every 5 s: propagation faster than that is the push stream.
SETTINGS = FederationSettings(
    sync_interval=5.0, checkpoint_interval=5.0, max_staleness=900.0, call_timeout=5.0
)
CHAIN = ("DE", "AT", "CZ", "SK", "HU")
INSERT_BATCH = 1000  # rows per transaction in the raw-insert baseline
ENTRIES_PER_CALL = 1000  # GetLogEntries answers at most this many


# -- a real federation on loopback (after tests/fednet.py) ---------------------------


@dataclass
class FedProcess(bk.NodeProcess):
    """A ``credfed serve`` process on the fixed address its partners' links
    name (benchkit's nodes listen on port 0, unknown before start)."""

    listen: str = ""

    def start(self, timeout: float = 30.0) -> None:
        port_file = self.data_dir.parent / f"{self.data_dir.name}.port"
        port_file.unlink(missing_ok=True)
        env = dict(os.environ, CREDFED_LOG_LEVEL="info")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*bk.CREDFED, "serve", "--data-dir", str(self.data_dir),
                 "--listen", self.listen, "--port-file", str(port_file)],
                stdout=log, stderr=log, env=env,
            )  # fmt: skip
        try:
            self.port = bk._wait_for_port(self.proc, port_file, timeout)
        except BaseException:
            self.stop()
            raise


@dataclass
class FedNode:
    name: str
    country: str
    proc: FedProcess
    #: A ``peer`` token this node issued to the benchmark (log observer).
    observer: str
    #: A ``verifier`` token this node issued to the benchmark.
    verifier: str
    #: ``peer`` tokens of partners this node holds, by partner name.
    links: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.proc.target

    def observer_md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.observer}"),)

    def verifier_md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.verifier}"),)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def build(
    root: Path,
    names: Sequence[str],
    links: Iterable[tuple[str, str]],
    pins: Iterable[tuple[str, str]],
    settings: FederationSettings = SETTINGS,
) -> dict[str, FedNode]:
    """Initialise nodes (not started); a node's country is its name's first
    two letters. ``pins`` are (pinner, pinned) and ``links`` (caller, callee)
    pairs, set up as ``credfed peer add --token-file`` and ``peer link`` do."""
    nodes: dict[str, FedNode] = {}
    for name in names:
        port = free_port()
        init = await init_node(root / name, name[:2], f"127.0.0.1:{port}")
        config = dataclasses.replace(init.config, federation=settings)
        (config.data_dir / cfg.CONFIG_FILE).write_text(config.to_toml())
        own_descriptor(config, SigningKey.load(config.key_path), utc_now())
        proc = FedProcess(config.data_dir, root / f"{name}.log", listen=config.listen)
        nodes[name] = FedNode(
            name,
            name[:2],
            proc,
            # ZZ: no partner of the bench; plaintext, so not bound to a certificate.
            observer=await add_client(config, "peer", "bench log observer", partner="ZZ"),
            verifier=await add_client(config, "verifier", "bench employer"),
        )
    for a, b in pins:
        config = cfg.load(nodes[b].proc.data_dir)
        envelope = own_descriptor(config, SigningKey.load(config.key_path), utc_now())
        directory = PeerDirectory(nodes[a].proc.data_dir, nodes[a].country)
        directory.add(envelope, fingerprint(envelope))
    for a, b in links:
        token = await add_client(
            cfg.load(nodes[b].proc.data_dir), "peer", f"node {a}", partner=nodes[a].country
        )
        nodes[a].links[b] = token
        directory = PeerDirectory(nodes[a].proc.data_dir, nodes[a].country)
        directory.set_link(nodes[b].country, token, nodes[b].proc.listen)
    return nodes


def stop_all(nodes: dict[str, FedNode]) -> None:
    for node in nodes.values():
        node.proc.stop()


def replica_size(node: FedNode, origin: str) -> int:
    """The tree size of ``node``'s checkpoint of ``origin`` (0 if none yet)."""
    with bk.channel(node.target) as ch:
        stub = federation_pb2_grpc.FederationServiceStub(ch)
        try:
            got = stub.GetLogCheckpoint(
                f.GetLogCheckpointRequest(origin=origin), metadata=node.observer_md(), timeout=10
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return 0
            raise
    return int(got.checkpoint.tree_size)


def wait_replicated(
    nodes: Iterable[FedNode], origin: str, size: int, timeout: float = 120.0
) -> None:
    deadline = time.monotonic() + timeout
    for node in nodes:
        while replica_size(node, origin) < size:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} did not replicate {origin} up to {size}")
            time.sleep(0.05)


# -- 1. revocation propagation -------------------------------------------------------


class StreamProbe:
    """A SubscribeLog stream of DE's log opened at one node: when each tree
    size was first seen (perf_counter in this process)."""

    def __init__(self, node: FedNode, origin: str) -> None:
        self.node = node
        self.origin = origin
        self.size = 0
        self.first_seen: list[tuple[int, float]] = []
        self._grew = asyncio.Event()
        self._channel = grpc.aio.insecure_channel(
            node.target, options=[("grpc.max_receive_message_length", bk.MAX_MESSAGE)]
        )
        self.task: asyncio.Task[None] | None = None

    async def run(self, from_index: int) -> None:
        stub = federation_pb2_grpc.FederationServiceStub(self._channel)
        call = stub.SubscribeLog(
            f.SubscribeLogRequest(origin=self.origin, from_index=from_index),
            metadata=self.node.observer_md(),
        )
        async for message in call:
            now = time.perf_counter()
            size = int(message.checkpoint.tree_size)
            if size > self.size:
                self.size = size
                self.first_seen.append((size, now))
                self._grew.set()

    async def reached(self, size: int, within: float) -> float:
        """The moment this stream first carried a checkpoint of at least ``size``."""
        deadline = time.perf_counter() + within
        while self.size < size:
            if self.task is not None and self.task.done():
                self.task.result()  # the stream failed: raise its error
                raise RuntimeError(f"the {self.node.name} stream ended")
            self._grew.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                raise RuntimeError(f"{self.node.name} did not show tree size {size} in {within}s")
            try:
                await asyncio.wait_for(self._grew.wait(), left)
            except TimeoutError:
                continue
        return next(t for s, t in self.first_seen if s >= size)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self.task
        await self._channel.close()


@dataclass
class Sample:
    sent: float
    acked: float
    seen: dict[str, float]


async def revoke_and_watch(
    nodes: dict[str, FedNode], ids: Sequence[str], warmup: int, start_size: int
) -> list[Sample]:
    de = nodes[CHAIN[0]]
    probes = {name: StreamProbe(nodes[name], "DE") for name in CHAIN[1:]}
    for probe in probes.values():
        probe.task = asyncio.ensure_future(probe.run(start_size))
    samples: list[Sample] = []
    rng = random.Random(3)
    try:
        for probe in probes.values():
            await probe.reached(start_size, within=30)
        async with grpc.aio.insecure_channel(de.target) as ch:
            stub = registry_pb2_grpc.RegistryServiceStub(ch)
            md = (("authorization", f"Bearer {de.proc.admin_token}"),)
            for n, cid in enumerate(ids):
                request = r.RevokeCredentialRequest(credential_id=cid, reason="fraud")
                sent = time.perf_counter()
                got = await stub.RevokeCredential(request, metadata=md, timeout=10)
                acked = time.perf_counter()
                size = int(got.receipt.checkpoint.tree_size)
                seen = {name: await p.reached(size, within=30) for name, p in probes.items()}
                if n >= warmup:
                    samples.append(Sample(sent, acked, seen))
                if (n + 1) % 100 == 0:
                    bk.log(f"propagation: {n + 1}/{len(ids)} revocations")
                # Unsynchronised with anything on the nodes: a pause of 5-25 ms.
                await asyncio.sleep(0.005 + 0.02 * rng.random())
    finally:
        for probe in probes.values():
            await probe.close()
    return samples


def _ms(values: Sequence[float]) -> str:
    q = [bk.percentile(values, p) * 1000 for p in (50, 95, 99)]
    return f"p50 {q[0]:.1f}  p95 {q[1]:.1f}  p99 {q[2]:.1f}  max {max(values) * 1000:.1f} ms"


def run_propagation(args: argparse.Namespace) -> bk.Result:
    load0 = os.getloadavg()[0]
    count = args.revocations + args.revocation_warmup
    links = [(a, b) for x, y in itertools.pairwise(CHAIN) for a, b in ((x, y), (y, x))]
    pins = [(a, b) for a in CHAIN for b in CHAIN if a != b]
    with bk.workspace("fed-chain") as root:
        nodes = asyncio.run(build(root, CHAIN, links, pins))
        try:
            for node in nodes.values():
                node.proc.start()
            de = nodes["DE"]
            bk.register_issuer(de.proc)
            ids = bk.import_credentials(de.proc, count)
            wait_replicated([nodes[n] for n in CHAIN[1:]], "DE", count)
            bk.log(f"propagation: {count} credentials replicated along the chain; revoking")
            cpu0 = {n: bk.cpu_seconds(node.proc.pid) for n, node in nodes.items()}
            started = time.perf_counter()
            with profiling.maybe_profile(nodes["HU"].proc.pid, args.profile, "fed-propagation"):
                samples = asyncio.run(
                    revoke_and_watch(nodes, ids, args.revocation_warmup, start_size=count)
                )
            elapsed = time.perf_counter() - started
            cpu = {
                n: (bk.cpu_seconds(node.proc.pid) - cpu0[n]) / elapsed for n, node in nodes.items()
            }
            warnings = _log_warnings(nodes)
        finally:
            stop_all(nodes)
    return with_load(propagation_result(samples, cpu, warnings), load0)


def with_load(result: bk.Result, load0: float) -> bk.Result:
    """The machine's 1-minute load average (this benchmark's processes
    included) at start and end: other work on a shared machine shows here."""
    result.rows.append(("load average start / end", f"{load0:.2f} / {os.getloadavg()[0]:.2f}"))
    return result


def _log_warnings(nodes: dict[str, FedNode]) -> dict[str, int]:
    """Warning and error lines per node: a refused or failed replication
    would show here, and would disqualify the figures."""
    out = {}
    for name, node in nodes.items():
        lines = node.proc.log_path.read_text(errors="replace").splitlines()
        bad = [ln for ln in lines if '"level": "warning"' in ln or '"level": "error"' in ln]
        if bad:
            out[name] = len(bad)
    return out


def propagation_result(
    samples: Sequence[Sample], cpu: dict[str, float], warnings: dict[str, int]
) -> bk.Result:
    last = CHAIN[-1]
    from_send = {n: [s.seen[n] - s.sent for s in samples] for n in CHAIN[1:]}
    from_ack = {n: [s.seen[n] - s.acked for s in samples] for n in CHAIN[1:]}
    revoke_rtt = [s.acked - s.sent for s in samples]
    p99 = bk.percentile(from_send[last], 99) * 1000
    rows = [
        ("revocations timed", f"{len(samples)} at DE, one at a time (5-25 ms pause after each "
         "reached HU), after warm-up ones"),
        ("clock", "from just before the RevokeCredential call is sent (headline), "
         "and from its answer; until the node's SubscribeLog stream carried a checkpoint "
         "covering it"),
        ("DE revoke RPC (send->answer)", _ms(revoke_rtt)),
    ]  # fmt: skip
    for hops, name in enumerate(CHAIN[1:], start=1):
        rows.append((f"{hops} hop{'s' * (hops > 1)} DE->{name} from send", _ms(from_send[name])))
    for hops, name in ((1, CHAIN[1]), (4, last)):
        rows.append((f"{hops} hop{'s' * (hops > 1)} DE->{name} from answer", _ms(from_ack[name])))
    one = statistics.median(from_send[CHAIN[1]])
    rows += [
        ("per extra hop (p50)", f"{(statistics.median(from_send[last]) - one) * 1000 / 3:.1f} ms"),
        ("ratio 4-hop / 1-hop p50", f"{statistics.median(from_send[last]) / one:.2f}x"),
        ("node CPU while revoking", ", ".join(f"{n} {share:.0%}" for n, share in cpu.items())),
        ("warning/error log lines", str(warnings or "none")),
    ]
    return bk.Result(
        name="fed-propagation: revocation DE->HU over 4 hops",
        ratio=p99 / GOAL_P99_MS,
        goal=f"4-hop p99 <= {GOAL_P99_MS:.0f} ms (ratio = p99 / {GOAL_P99_MS:.0f} ms)",
        met=p99 <= GOAL_P99_MS and not warnings,
        rows=rows,
    )


# -- 2. catch-up of a large log ------------------------------------------------------


def fetch_leaves(node: FedNode, origin: str, size: int) -> list[bytes]:
    leaves: list[bytes] = []
    with bk.channel(node.target) as ch:
        stub = federation_pb2_grpc.FederationServiceStub(ch)
        for start in range(0, size, ENTRIES_PER_CALL):
            end = min(size, start + ENTRIES_PER_CALL)
            got = stub.GetLogEntries(
                f.GetLogEntriesRequest(origin=origin, start=start, end=end),
                metadata=node.observer_md(),
                timeout=30,
            )
            leaves.extend(bytes(e.leaf) for e in got.entries)
    if len(leaves) != size:
        raise RuntimeError(f"fetched {len(leaves)} of {size} leaves")
    return leaves


def raw_insert_rate(path: Path, origin: str, leaves: Sequence[bytes]) -> float:
    """Leaves per second into a fresh file: the store's pragmas (WAL,
    synchronous=FULL), its replica_leaves table, 1,000 rows per transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode = WAL", "synchronous = FULL", "foreign_keys = ON",
                       "busy_timeout = 10000"):  # fmt: skip
            conn.execute(f"PRAGMA {pragma}")
        conn.execute(
            "CREATE TABLE replica_leaves (origin TEXT NOT NULL, idx INTEGER NOT NULL, "
            "leaf BLOB NOT NULL, PRIMARY KEY (origin, idx)) WITHOUT ROWID"
        )
        rows = [(origin, i, leaf) for i, leaf in enumerate(leaves)]
        started = time.perf_counter()
        for first in range(0, len(rows), INSERT_BATCH):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO replica_leaves (origin, idx, leaf) VALUES (?, ?, ?)",
                rows[first : first + INSERT_BATCH],
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return len(rows) / elapsed


@dataclass
class CatchUp:
    seconds: float  # from spawning the process to the checkpoint seen
    after_start: float  # from the node's server.started log line
    node_cpu: float  # CPU share of one core, whole run
    origin_cpu: float


def started_at(log_path: Path) -> float:
    """Epoch seconds of the node's ``server.started`` line (replication starts
    just before it is written)."""
    for line in log_path.read_text().splitlines():
        if '"server.started"' in line:
            stamp = json.loads(line)["timestamp"]
            return datetime.fromisoformat(stamp).timestamp()
    raise RuntimeError(f"no server.started line in {log_path}")


def catch_up(fr: FedNode, de: FedNode, size: int, profile: str | None, label: str) -> CatchUp:
    de_cpu0 = bk.cpu_seconds(de.proc.pid)
    started = time.perf_counter()
    fr.proc.start()
    with profiling.maybe_profile(fr.proc.pid, profile, label):
        while replica_size(fr, "DE") < size:
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"{fr.name} did not catch up within 600 s")
            time.sleep(0.02)
    elapsed, wall1 = time.perf_counter() - started, time.time()
    node_cpu = bk.cpu_seconds(fr.proc.pid) / elapsed
    origin_cpu = (bk.cpu_seconds(de.proc.pid) - de_cpu0) / elapsed
    after_start = wall1 - started_at(fr.proc.log_path)
    return CatchUp(elapsed, after_start, node_cpu, origin_cpu)


def run_catchup(args: argparse.Namespace) -> bk.Result:
    load0 = os.getloadavg()[0]
    size = args.entries
    followers = [f"FR{i + 1}" for i in range(args.catchup_rounds)]
    with bk.workspace("fed-catchup") as root:
        nodes = asyncio.run(
            build(
                root,
                ["DE", *followers],
                links=[(fr, "DE") for fr in followers],
                pins=[(fr, "DE") for fr in followers],
            )
        )
        try:
            de = nodes["DE"]
            de.proc.start()
            bk.register_issuer(de.proc)

            def progress(done: int, seconds: float) -> None:
                bk.log(f"catch-up: DE issued {done:,}/{size:,} ({done / seconds:,.0f}/s)")

            bk.import_credentials(de.proc, size, progress)
            leaves = fetch_leaves(de, "DE", size)
            baselines: list[float] = []
            rounds: list[CatchUp] = []
            # Alternated, so drift on a shared machine hits both.
            for n, name in enumerate(followers):
                baselines.append(raw_insert_rate(root / f"raw-{n}.db", "DE", leaves))
                bk.log(f"catch-up: raw insert {baselines[-1]:,.0f} leaves/s")
                rounds.append(catch_up(nodes[name], de, size, args.profile, f"fed-catchup-{n}"))
                bk.log(
                    f"catch-up: {name} {size / rounds[-1].seconds:,.0f} entries/s from spawn, "
                    f"{size / rounds[-1].after_start:,.0f}/s from server.started"
                )
                nodes[name].proc.stop()
            baselines.append(raw_insert_rate(root / "raw-last.db", "DE", leaves))
            bk.log(f"catch-up: raw insert {baselines[-1]:,.0f} leaves/s")
            warnings = _log_warnings(nodes)
        finally:
            stop_all(nodes)
    return with_load(catchup_result(size, leaves, baselines, rounds, warnings), load0)


def catchup_result(
    size: int,
    leaves: Sequence[bytes],
    baselines: Sequence[float],
    rounds: Sequence[CatchUp],
    warnings: dict[str, int],
) -> bk.Result:
    raw = statistics.median(baselines)
    full = statistics.median(size / x.seconds for x in rounds)
    warm = statistics.median(size / x.after_start for x in rounds)
    ratio = full / raw
    rows = [
        ("entries", f"{size:,} leaves, {statistics.mean(len(x) for x in leaves):.0f} bytes mean"),
        ("raw insert (median)", f"{raw:,.0f} leaves/s  rounds: {_fmt(baselines)}  "
         f"({INSERT_BATCH} rows/transaction, WAL, synchronous=FULL)"),
        ("catch-up from spawn (headline)", f"{full:,.0f} entries/s  rounds: "
         f"{_fmt(size / x.seconds for x in rounds)}  ({_fmt1(x.seconds for x in rounds)} s)"),
        ("catch-up from server.started", f"{warm:,.0f} entries/s  rounds: "
         f"{_fmt(size / x.after_start for x in rounds)}  "
         f"({_fmt1(x.after_start for x in rounds)} s)"),
        ("start-up (spawn -> server.started)",
         f"{_fmt1(x.seconds - x.after_start for x in rounds)} s"),
        ("CPU follower / origin", ", ".join(f"{x.node_cpu:.0%} / {x.origin_cpu:.0%}"
                                            for x in rounds) + " of one core"),
        ("ratio catch-up/raw insert", f"{ratio:.1%} (from server.started: {warm / raw:.1%})"),
        ("warning/error log lines", str(warnings or "none")),
    ]  # fmt: skip
    return bk.Result(
        name=f"fed-catchup: {size:,} entries vs raw SQLite insert",
        ratio=ratio,
        goal=f"catch-up >= {GOAL_CATCHUP:.0%} of raw insert rate",
        met=ratio >= GOAL_CATCHUP and not warnings,
        rows=rows,
    )


def _fmt(values: Iterable[float]) -> str:
    return ", ".join(f"{x:,.0f}" for x in values)


def _fmt1(values: Iterable[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


# -- where a catch-up's time goes (diagnostic, not in make bench) ---------------------

_NODE_KEY_SHIFT = 56  # replica_nodes.node_key = level << 56 | index (migration 0002)


def explain_catchup(args: argparse.Namespace) -> None:
    """Time, one after the other and in one thread, each step the follower
    takes per 1,000-entry batch (see Replicas._catch_up), over the real
    leaves of a real DE node: the RPCs (from this process, a sync client),
    the checks, the Merkle work, and the replica write through the store
    and as plain sqlite3 table by table. Their sum approximates a serial
    catch-up; the table split shows the floor the schema sets."""
    from credfed.statuslog import merkle
    from credfed.statuslog.entries import decode_entry
    from credfed.storage.base import ReplicaAppend
    from credfed.storage.sqlite import SqliteStore

    size = args.entries
    rows: list[tuple[str, float]] = []

    def timed(label: str, fn: Any) -> Any:
        started = time.perf_counter()
        out = fn()
        rows.append((label, time.perf_counter() - started))
        return out

    with bk.workspace("fed-parts") as root:
        de = asyncio.run(build(root, ["DE"], [], []))["DE"]
        de.proc.start()
        try:
            bk.register_issuer(de.proc)
            bk.import_credentials(de.proc, size)
            leaves = timed("GetLogEntries, 1,000 per call", lambda: fetch_leaves(de, "DE", size))

            def proofs() -> None:
                with bk.channel(de.target) as ch:
                    stub = federation_pb2_grpc.FederationServiceStub(ch)
                    for end in range(ENTRIES_PER_CALL, size, ENTRIES_PER_CALL):
                        stub.GetLogConsistencyProof(
                            f.GetLogConsistencyProofRequest(
                                origin="DE", old_size=end, new_size=size
                            ),
                            metadata=de.observer_md(),
                            timeout=10,
                        )

            timed("GetLogConsistencyProof, one per batch but the last", proofs)
        finally:
            de.proc.stop()

        def statuses() -> list[list[tuple[str, int]]]:
            out = []
            for start in range(0, size, ENTRIES_PER_CALL):
                batch = []
                for n, leaf in enumerate(leaves[start : start + ENTRIES_PER_CALL]):
                    entry = decode_entry(leaf)
                    if entry.origin != "DE" or entry.index != start + n:
                        raise RuntimeError("entry out of place")
                    batch.append((entry.credential_id, start + n))
                out.append(batch)
            return out

        status_rows = timed("decode_entry + origin/index check, per leaf", statuses)
        hashes = timed("merkle.leaf_hash, per leaf", lambda: [merkle.leaf_hash(x) for x in leaves])

        def tree() -> list[list[tuple[int, int, bytes]]]:
            frontier: dict[tuple[int, int], bytes] = {}
            out = []
            for start in range(0, size, ENTRIES_PER_CALL):
                end = min(size, start + ENTRIES_PER_CALL)
                nodes = merkle.append_nodes(start, hashes[start:end], frontier)
                known = dict(frontier)
                known.update(((level, index), h) for level, index, h in nodes)
                merkle.root_hash(end, known)
                frontier = {k: known[k] for k in merkle.frontier_ids(end)}
                out.append(nodes)
            return out

        node_rows = timed("merkle.append_nodes + root_hash, per batch", tree)

        async def through_store(path: Path) -> None:
            store = await SqliteStore.open(path)
            try:
                for k, start in enumerate(range(0, size, ENTRIES_PER_CALL)):
                    end = min(size, start + ENTRIES_PER_CALL)
                    batch = ReplicaAppend(
                        "DE", start, leaves[start:end], node_rows[k], status_rows[k], None
                    )
                    await store.append_replica(batch)
            finally:
                await store.close()

        timed(
            "SqliteStore.append_replica (leaves, nodes, status)",
            lambda: asyncio.run(through_store(root / "store.db")),
        )
        # The same rows as plain sqlite3, table by table, into the store's schema.
        tables = {
            "leaves": (
                "INSERT INTO replica_leaves (origin, idx, leaf) VALUES (?, ?, ?)",
                [[("DE", start + n, x) for n, x in enumerate(leaves[start : start + 1000])]
                 for start in range(0, size, 1000)],
            ),
            "nodes": (
                "INSERT INTO replica_nodes (origin, node_key, hash) VALUES (?, ?, ?)",
                [[("DE", lv << _NODE_KEY_SHIFT | ix, h) for lv, ix, h in b] for b in node_rows],
            ),
            "status": (
                "INSERT INTO replica_status (origin, credential_id, idx) VALUES (?, ?, ?) "
                "ON CONFLICT (origin, credential_id) DO UPDATE SET idx = excluded.idx "
                "WHERE excluded.idx > replica_status.idx",
                [[("DE", cid, idx) for cid, idx in b] for b in status_rows],
            ),
        }  # fmt: skip
        for name, (sql, batches_) in tables.items():
            path = root / f"{name}.db"
            asyncio.run(_close_store(SqliteStore.open(path)))  # the store's schema
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")

            def insert(conn: sqlite3.Connection = conn, sql: str = sql, b: Any = batches_) -> None:
                for batch in b:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(sql, batch)
                    conn.execute("COMMIT")

            rows_ = sum(len(b) for b in batches_)
            timed(f"plain sqlite3, {name} only ({rows_:,} rows)", insert)
            conn.close()
    serial = sum(t for label, t in rows if not label.startswith("plain"))
    print(f"\n== fed-catchup-parts: {size:,} entries, each step timed on its own")
    for label, seconds in rows:
        print(f"  {label:<52} {seconds:6.3f} s  {seconds / size * 1e6:6.2f} us/entry")
    print(f"  {'sum of the serial steps (not the plain rows)':<52} {serial:6.3f} s")


async def _close_store(opening: Any) -> None:
    store = await opening
    await store.close()


# -- 3. warm cross-border verify -----------------------------------------------------


def warm_record_cache(fr: FedNode, ids: Sequence[str]) -> None:
    """Verify every DE id once at FR: each answer must be ACTIVE, with DE's
    signature checked by FR."""
    with bk.channel(fr.target) as ch:
        verify = ch.unary_unary(vb.VERIFY)
        for n, cid in enumerate(ids):
            request = v.VerifyRequest(credential_id=cid, birth_date=bk.birth_date(n).isoformat())
            raw = verify(request.SerializeToString(), metadata=fr.verifier_md(), timeout=10)
            result = v.VerifyResponse.FromString(raw).result
            if (
                result.status != c.CREDENTIAL_STATUS_ACTIVE
                or not result.provenance.signature_checked
            ):
                raise RuntimeError(f"cross-border warm-up: unexpected answer for {cid}")


def check_cross_border(fr: FedNode, target: vb.Target) -> str:
    """The benchmark request at FR answers from the record cache and FR's
    replica; returns the provenance for the report."""
    raw = v.VerifyRequest.FromString(loadgen.unframe(target.body.read_bytes()))
    with bk.channel(fr.target) as ch:
        got = ch.unary_unary(vb.VERIFY)(
            raw.SerializeToString(), metadata=fr.verifier_md(), timeout=10
        )
    p = v.VerifyResponse.FromString(got).result.provenance
    if not (p.record_cached and p.signature_checked and p.origin == "DE"):
        raise RuntimeError(f"cross-border answer not from the warm cache: {p}")
    source = v.StatusSource.Name(p.source)
    return f"origin {p.origin}, source {source}, record_cached, signature_checked"


def run_crossborder(args: argparse.Namespace) -> bk.Result:
    load0 = os.getloadavg()[0]
    args.generator = vb.pick_generator(args.generator)
    runs: dict[str, list[vb.LoadRun]] = {"local": [], "cross-border": []}
    with bk.workspace("fed-verify") as root:
        nodes = asyncio.run(
            build(root, ["DE", "FR"], links=[("FR", "DE")], pins=[("FR", "DE"), ("DE", "FR")])
        )
        try:
            de, fr = nodes["DE"], nodes["FR"]
            for node in (de, fr):
                node.proc.start()
            bk.register_issuer(de.proc)
            ids = bk.import_credentials(de.proc, args.credentials)
            wait_replicated([fr], "DE", len(ids))
            warm_record_cache(fr, ids)
            n = len(ids) // 2
            request = v.VerifyRequest(credential_id=ids[n], birth_date=bk.birth_date(n).isoformat())
            body = root / "verify.bin"
            body.write_bytes(vb.frame(request.SerializeToString()))
            local = vb.Target("local", vb.VERIFY, body, [f"authorization: Bearer {de.verifier}"])
            cross = vb.Target(
                "cross-border", vb.VERIFY, body, [f"authorization: Bearer {fr.verifier}"]
            )
            served = {"local": de, "cross-border": fr}
            for t in (local, cross):
                vb.validate(served[t.label].proc, t, ids[n])
                vb.prove_failures_logged(served[t.label].proc, ids[n], served[t.label].verifier)
            provenance = check_cross_border(fr, cross)
            pair = [local, cross]
            order = [t for i in range(args.rounds) for t in (pair if i % 2 == 0 else pair[::-1])]
            for k, t in enumerate(order):
                run = vb.load_run(served[t.label].proc, t, args, root, k)
                runs[t.label].append(run)
                bk.log(run.describe())
            provenance_after = check_cross_border(fr, cross)
            warnings = _log_warnings(nodes)
        finally:
            stop_all(nodes)
    result = crossborder_result(args, runs, provenance, provenance_after, warnings)
    return with_load(result, load0)


def crossborder_result(
    args: argparse.Namespace,
    runs: dict[str, list[vb.LoadRun]],
    provenance: str,
    provenance_after: str,
    warnings: dict[str, int],
) -> bk.Result:
    def med(label: str, attr: str) -> float:
        return float(statistics.median(getattr(x, attr) for x in runs[label]))

    ratio = med("cross-border", "qps") / med("local", "qps")
    rows = [
        ("generator", f"{args.generator}, {args.connections} connections x {args.streams} "
         f"streams, {args.duration:g}s after {args.warmup:g}s warm-up, {args.rounds} rounds ABBA"),
        ("request", f"Verify of one DE credential (of {args.credentials:,}, all verified once "
         "at FR first) with its birth date"),
        ("cross-border answers", f"{provenance} (after the load: {provenance_after})"),
    ]  # fmt: skip
    for label, where in (("local", "at DE"), ("cross-border", "at FR")):
        qps = ", ".join(f"{x.qps:,.0f}" for x in runs[label])
        rows += [
            (f"{label} QPS {where} (median)", f"{med(label, 'qps'):,.0f}  rounds: {qps}"),
            (f"{label} p50 / p99", f"{med(label, 'p50_ms'):.2f} / {med(label, 'p99_ms'):.2f} ms"),
            (f"{label} CPU node / generator",
             f"{med(label, 'node_cpu'):.0%} / {med(label, 'generator_cpu'):.0%} of one core"),
        ]  # fmt: skip
    rows += [
        ("ratio cross-border/local QPS", f"{ratio:.1%}"),
        ("warning/error log lines", str(warnings or "none")),
    ]
    return bk.Result(
        name="fed-verify: warm cross-border Verify vs local Verify",
        ratio=ratio,
        goal=f"cross-border QPS >= {GOAL_CROSSBORDER:.0%} of local",
        met=ratio >= GOAL_CROSSBORDER and not warnings,
        rows=rows,
    )


# -- entry points --------------------------------------------------------------------


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="propagation,catchup,verify",
                   help="comma-separated: propagation, catchup, verify; or catchup-parts "
                        "(where a catch-up's time goes, not in make bench)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="catch-up of 20,000 (development only)")
    p.add_argument("--revocations", type=int, default=300, help="timed revocations (>= 200)")
    p.add_argument("--revocation-warmup", type=int, default=20, help="untimed revocations first")
    p.add_argument("--entries", type=int, default=100_000, help="log entries to catch up")
    p.add_argument("--catchup-rounds", type=int, default=2, help="fresh followers, one at a time")
    p.add_argument("--credentials", type=int, default=1000, help="DE credentials for verify")
    p.add_argument("--generator", choices=["auto", "h2load", "python"], default="auto")
    p.add_argument("-c", "--connections", type=int, default=8)
    p.add_argument("-m", "--streams", type=int, default=8, help="concurrent streams per connection")
    p.add_argument("-D", "--duration", type=float, default=10, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2, help="warm-up seconds before each run")
    p.add_argument("--rounds", type=int, default=2, help="local+cross-border pairs, ABBA order")
    p.add_argument("--profile", metavar="DIR", help="record py-spy profiles of the nodes here")
    args = p.parse_args(argv)
    if args.quick:
        args.entries = min(args.entries, 20_000)
    if args.revocations < 200 and not args.quick:
        p.error("--revocations must be at least 200 (the issue's acceptance)")
    args.selected = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.selected) - {*RUNS, "catchup-parts"}
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    return args


RUNS = {"propagation": run_propagation, "catchup": run_catchup, "verify": run_crossborder}


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    args = parse(argv)
    for key, value in bk.machine():
        print(f"{key:<13} {value}")
    for name in args.selected:
        bk.log(f"running federation {name} benchmark")
        if name == "catchup-parts":
            explain_catchup(args)
        else:
            RUNS[name](args).print()
    return 0


if __name__ == "__main__":
    sys.exit(bk.entry(main))
