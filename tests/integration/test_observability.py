"""Observability of real `credfed serve` processes: a request id on every log
line logged while handling a call (echoed to the client), a ``task`` on the
lines of background work, and the Prometheus endpoint of a two-node
federation reporting replication as it is."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ISSUER, draft
from fednet import FedNode, build, eventually, free_port, register_issuer, start_all, stop_all
from prometheus_client.parser import text_string_to_metric_families

from credfed import config as cfg
from credfed.bootstrap import add_client, init_node
from credfed.rpc.observe import REQUEST_ID_KEY
from credfed.v1 import registry_pb2 as r
from credfed.v1 import registry_pb2_grpc, verification_pb2_grpc
from credfed.v1 import verification_pb2 as v

pytestmark = pytest.mark.slow

BIRTH = "1994-03-17"
#: Lines logged outside any call or background task: the process starting
#: and stopping (listed, so that a new untagged line fails this test).
UNTAGGED = {"server.started", "server.stopping"}


def records(path: Path) -> list[dict[str, Any]]:
    """Every line of a node's log, each of which must be a JSON record."""
    lines = path.read_text().splitlines()
    out = []
    for line in lines:
        record = json.loads(line)  # fails the test on a line that is not JSON
        assert isinstance(record, dict), line
        out.append(record)
    return out


def untagged(logged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        x
        for x in logged
        if "request_id" not in x and "task" not in x and x.get("event") not in UNTAGGED
    ]


class Served:
    """`credfed serve` with JSON logs at debug level and a metrics endpoint on
    port 0, both set by environment variables as a container would."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port_file = data_dir / "serve.port"
        self.metrics_file = data_dir / "metrics.port"
        env = dict(
            os.environ,
            CREDFED_LOG_LEVEL="debug",
            CREDFED_LOG_FORMAT="json",
            CREDFED_METRICS_LISTEN="127.0.0.1:0",
        )
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "credfed.cli", "serve", "--data-dir", str(data_dir),
                 "--port-file", str(self.port_file),
                 "--metrics-port-file", str(self.metrics_file)],
                stdout=out, stderr=out, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while not self.port_file.exists():
            assert self.proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the node did not start"
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())
        self.metrics_port = int(self.metrics_file.read_text())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) == 0


async def test_every_line_logged_during_a_call_carries_its_request_id(tmp_path: Path) -> None:
    init = await init_node(tmp_path / "de", "DE", "127.0.0.1:0")
    verifier = await add_client(init.config, "verifier", "employer Ms Example")
    log = tmp_path / "node.log"
    node = Served(init.config.data_dir, log)
    admin = (("authorization", f"Bearer {init.admin_token}"),)
    employer = (("authorization", f"Bearer {verifier}"),)
    echoed: dict[str, str] = {}  # call -> id in its trailing metadata
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            verification = verification_pb2_grpc.VerificationServiceStub(channel)

            async def call(name: str, method: Any, request: Any, md: Any) -> Any:
                rpc = method(request, metadata=md, timeout=10)
                try:
                    await rpc
                except grpc.aio.AioRpcError as exc:
                    echoed[name] = dict(exc.trailing_metadata() or ())[REQUEST_ID_KEY]
                    return exc.code()
                echoed[name] = dict(await rpc.trailing_metadata() or ())[REQUEST_ID_KEY]
                return await rpc

            issuer = r.RegisterIssuerRequest(issuer_id=ISSUER, name=ISSUER, sectors=["energy"])
            await call("register", registry.RegisterIssuer, issuer, admin)
            issued = await call(
                "issue", registry.IssueCredential, r.IssueCredentialRequest(draft=draft()), admin
            )
            cid = issued.receipt.credential.credential_id
            chosen = "employer-check-42"
            got = await call(
                "chosen",
                verification.Verify,
                v.VerifyRequest(credential_id=cid, birth_date=BIRTH),
                (*employer, (REQUEST_ID_KEY, chosen)),
            )
            assert got.result.credential_id == cid
            invalid = await call(
                "invalid",
                verification.Verify,
                v.VerifyRequest(credential_id="DE-NOT-AN-ID", birth_date=BIRTH),
                employer,
            )
            assert invalid == grpc.StatusCode.INVALID_ARGUMENT
            too_long = "r" * 500
            await call(
                "too_long",
                verification.GetCheckpoint,
                v.GetCheckpointRequest(),
                (*employer, (REQUEST_ID_KEY, too_long)),
            )
            markup = "<b>id</b>"
            await call(
                "markup",
                verification.GetCheckpoint,
                v.GetCheckpointRequest(),
                (*employer, (REQUEST_ID_KEY, markup)),
            )
            # Concurrent calls: each keeps its own id (a context per call).
            concurrent = [f"parallel-{n}" for n in range(20)]
            await asyncio.gather(
                *(
                    call(
                        rid,
                        verification.Verify,
                        v.VerifyRequest(credential_id=cid, birth_date=BIRTH),
                        (*employer, (REQUEST_ID_KEY, rid)),
                    )
                    for rid in concurrent
                )
            )
    finally:
        node.stop()

    assert echoed["chosen"] == chosen
    assert echoed["too_long"] != too_long and len(echoed["too_long"]) == 16
    assert echoed["markup"] != markup and len(echoed["markup"]) == 16
    assert all(echoed[rid] == rid for rid in concurrent)
    assert len(set(echoed.values())) == len(echoed), "every call has an id of its own"

    logged = records(log)
    assert untagged(logged) == []
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in logged:
        if "request_id" in record:
            by_id.setdefault(record["request_id"], []).append(record)
    # Each call's lines: the domain's (the issue) and the access log line.
    assert set(by_id) == set(echoed.values())
    assert [x["event"] for x in by_id[echoed["issue"]]] == ["credential.issued", "rpc"]
    for name, rid in echoed.items():
        access = [x for x in by_id[rid] if x["event"] == "rpc"]
        assert len(access) == 1, name
    invalid_line = by_id[echoed["invalid"]][-1]
    assert invalid_line["code"] == "INVALID_ARGUMENT" and invalid_line["level"] == "info"
    assert by_id[chosen][-1]["method"] == "/credfed.v1.VerificationService/Verify"
    for rid in concurrent:
        assert [x["code"] for x in by_id[rid]] == ["OK"]
    # A refused id is not logged either.
    text = log.read_text()
    assert too_long not in text and markup not in text
    assert {x["event"] for x in logged if "request_id" not in x and "task" not in x} == UNTAGGED


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def with_metrics(node: FedNode) -> int:
    """Give a node (not yet started) a metrics endpoint; its port."""
    port = free_port()
    config = cfg.load(node.data_dir)
    config = dataclasses.replace(config, metrics_listen=f"127.0.0.1:{port}")
    (node.data_dir / cfg.CONFIG_FILE).write_text(config.to_toml())
    return port


async def test_federation_metrics_report_replication(tmp_path: Path) -> None:
    nodes = await build(tmp_path, ["DE", "FR"], [("FR", "DE"), ("DE", "FR")])
    de, fr = nodes["DE"], nodes["FR"]
    ports = {name: with_metrics(node) for name, node in nodes.items()}

    async def metrics(name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return await asyncio.to_thread(scrape, ports[name])

    await start_all(de, fr)
    try:
        await register_issuer(de)
        cids = [await de.issue() for _ in range(3)]
        await de.revoke(cids[0])
        size = await de.log_size()
        assert size == 4
        de_origin = (("origin", "DE"),)

        async def caught_up() -> Any:
            got = await metrics("FR")
            return got if got.get(("credfed_replica_size", de_origin)) == size else None

        fr_metrics = await eventually(caught_up)
        assert fr_metrics["credfed_replica_checkpoint_size", de_origin] == size
        # FAST settings: DE re-signs every second, FR hears of it at once.
        assert 0 <= fr_metrics["credfed_replica_lag_seconds", de_origin] < 10
        assert 0 <= fr_metrics["credfed_replica_last_contact_seconds", de_origin] < 10
        assert fr_metrics["credfed_origin_forked", de_origin] == 0
        assert fr_metrics["credfed_fork_alarms_total", ()] == 0
        assert fr_metrics["credfed_log_size", ()] == 0  # FR issued nothing; heartbeats sign size 0
        de_metrics = await metrics("DE")
        assert de_metrics["credfed_log_size", ()] == size
        assert 0 <= de_metrics["credfed_log_checkpoint_age_seconds", ()] < 10
        # FR follows DE's log over a SubscribeLog stream DE serves.
        assert de_metrics["credfed_subscribers", ()] >= 1
        assert de_metrics["credfed_health_serving", (("service", "server"),)] == 1
        # A cross-border verify at FR answers from its replica of DE's log.
        result = await fr.verify(cids[1])
        assert result.credential_id == cids[1]
        after = await metrics("FR")
        replica = ("credfed_verify_results_total", (("source", "replica"), ("status", "ACTIVE")))
        assert after[replica] == 1
        ok = (
            "credfed_rpc_requests_total",
            (("code", "OK"), ("method", "/credfed.v1.VerificationService/Verify")),
        )
        assert after[ok] == 1
        # The link's calls are counted at DE by method (never by caller).
        pulled = "/credfed.v1.FederationService/GetLogCheckpoint"
        assert de_metrics["credfed_rpc_requests_total", (("code", "OK"), ("method", pulled))] >= 1
    finally:
        await stop_all(de, fr)
    # Replication logs with task=replicator, calls with their request id.
    for node in (de, fr):
        logged = records(node.proc.log_path)
        assert untagged(logged) == [], node.country
        tasks = {x["task"] for x in logged if "task" in x}
        assert "replicator" in tasks or node is de, tasks
        assert any("request_id" in x for x in logged)
