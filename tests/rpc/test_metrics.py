"""The Prometheus endpoint of a real node on real ports, scraped over HTTP
like a monitoring system would: calls counted by method and code, verify
outcomes, rate-limit refusals, the node's state sampled at scrape time,
request ids echoed to clients, and no personal data in any label."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from conftest import ISSUER, Stubs, draft, in_process
from prometheus_client.parser import text_string_to_metric_families

from credfed.bootstrap import Initialised, add_client
from credfed.config import LimitSettings
from credfed.errors import ConfigError
from credfed.node import Node
from credfed.rpc import server
from credfed.rpc.observe import REQUEST_ID_KEY, request_id
from credfed.rpc.ratelimit import RETRY_AFTER_KEY
from credfed.v1 import federation_pb2 as f
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v

VERIFY = "/credfed.v1.VerificationService/Verify"
BATCH = "/credfed.v1.VerificationService/VerifyBatch"
ISSUE = "/credfed.v1.RegistryService/IssueCredential"
BIRTH = "1994-03-17"
Key = tuple[str, tuple[tuple[str, str], ...]]


def scrape(port: int) -> str:
    """GET /metrics. Blocking: call it from a thread (asyncio.to_thread), as
    the node samples its state on its event loop, which must keep running."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text: str = resp.read().decode()
        return text


def parse(text: str) -> dict[Key, float]:
    """Every sample: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@dataclass
class Metered(Stubs):
    node: Node
    running: server.RunningServer
    channel: grpc.aio.Channel
    init: Initialised
    tokens: dict[str, str]
    text: str = ""

    def md(self, role: str, rid: str | None = None) -> tuple[tuple[str, str], ...]:
        md = (("authorization", f"Bearer {self.tokens[role]}"),)
        return md if rid is None else (*md, (REQUEST_ID_KEY, rid))

    async def samples(self) -> dict[Key, float]:
        self.text = await asyncio.to_thread(scrape, self.running.metrics_port)
        return parse(self.text)

    async def issue(self, **overrides: Any) -> str:
        got = await self.registry.IssueCredential(
            r.IssueCredentialRequest(draft=draft(**overrides)),
            metadata=self.md("admin"),
            timeout=10,
        )
        return str(got.receipt.credential.credential_id)


@contextlib.asynccontextmanager
async def metered(init: Initialised, **limits: Any) -> AsyncIterator[Metered]:
    config = dataclasses.replace(
        init.config, metrics_listen="127.0.0.1:0", limits=LimitSettings(**limits)
    )
    tokens = {"admin": init.admin_token}
    async with in_process(config) as served:
        for role in ("verifier", "peer"):
            tokens[role] = await add_client(
                config, role, f"client {role} Ms Example", partner="FR" if role == "peer" else None
            )
        m = Metered(served.node, served.server, served.channel, init, tokens)
        await m.registry.RegisterIssuer(
            r.RegisterIssuerRequest(issuer_id=ISSUER, name=ISSUER, sectors=["energy"]),
            metadata=m.md("admin"),
            timeout=10,
        )
        yield m


def delta(before: dict[Key, float], after: dict[Key, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def calls(before: dict[Key, float], after: dict[Key, float], method: str) -> dict[str, float]:
    """How many calls of ``method`` ended with each code between the scrapes."""
    codes = {
        dict(labels)["code"]
        for name, labels in (*before, *after)
        if name == "credfed_rpc_requests_total" and dict(labels).get("method") == method
    }
    out = {
        c: delta(before, after, "credfed_rpc_requests_total", method=method, code=c) for c in codes
    }
    return {c: n for c, n in out.items() if n}


def no_personal_data(text: str, *values: str) -> None:
    """No label value anywhere equals (or contains) one of ``values``."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            for label in s.labels.values():
                for value in values:
                    assert value not in label, (s.name, label)
    for value in values:
        assert value not in text


async def test_calls_are_counted_by_method_and_code(node_dir: Initialised) -> None:
    async with metered(node_dir) as m:
        active = await m.issue()
        revoked = await m.issue(family_name="Kowalski", birth_date="1980-01-02")
        await m.registry.RevokeCredential(
            r.RevokeCredentialRequest(credential_id=revoked, reason="fraud"),
            metadata=m.md("admin"),
            timeout=10,
        )
        before = await m.samples()
        verify = m.verification.Verify
        for _ in range(3):
            got = await verify(
                v.VerifyRequest(credential_id=active, birth_date=BIRTH),
                metadata=m.md("verifier"),
                timeout=10,
            )
            assert got.result.credential_id == active
        await verify(
            v.VerifyRequest(credential_id=revoked, family_name="Kowalski"),
            metadata=m.md("verifier"),
            timeout=10,
        )
        failures = [
            # A wrong birth date: NOT_FOUND.
            (verify, v.VerifyRequest(credential_id=active, birth_date="2000-01-01"), "verifier"),
            # Not an id: INVALID_ARGUMENT.
            (verify, v.VerifyRequest(credential_id="not-an-id", birth_date=BIRTH), "verifier"),
            # A verifier may not issue: PERMISSION_DENIED.
            (m.registry.IssueCredential, r.IssueCredentialRequest(draft=draft()), "verifier"),
        ]
        codes = []
        for method, request, role in failures:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(request, metadata=m.md(role), timeout=10)
            codes.append(info.value.code().name)
        assert codes == ["NOT_FOUND", "INVALID_ARGUMENT", "PERMISSION_DENIED"]
        batch = await m.verification.VerifyBatch(
            v.VerifyBatchRequest(
                requests=[
                    v.VerifyRequest(credential_id=active, birth_date=BIRTH),
                    v.VerifyRequest(credential_id=active, family_name="Wrong"),
                    v.VerifyRequest(credential_id=revoked, birth_date="1980-01-02"),
                ]
            ),
            metadata=m.md("verifier"),
            timeout=10,
        )
        assert [i.WhichOneof("outcome") for i in batch.items] == ["result", "error", "result"]
        after = await m.samples()

        assert calls(before, after, VERIFY) == {"OK": 4, "NOT_FOUND": 1, "INVALID_ARGUMENT": 1}
        assert calls(before, after, ISSUE) == {"PERMISSION_DENIED": 1}
        assert calls(before, after, BATCH) == {"OK": 1}
        # Timed once per call, whatever the outcome.
        hist = "credfed_rpc_duration_seconds_count"
        assert delta(before, after, hist, method=VERIFY) == 6
        assert delta(before, after, hist, method=BATCH) == 1
        assert (
            delta(before, after, "credfed_rpc_duration_seconds_bucket", method=VERIFY, le="5.0")
            == 6
        )
        # Outcomes per answer, batch items included.
        results = "credfed_verify_results_total"
        assert delta(before, after, results, status="ACTIVE", source="local") == 3 + 1
        assert delta(before, after, results, status="REVOKED", source="local") == 1 + 1
        assert delta(before, after, results, status="NOT_FOUND", source="none") == 1 + 1
        assert delta(before, after, results, status="INVALID_ARGUMENT", source="none") == 1
        assert (
            sum(
                delta(before, after, name, **dict(labels))
                for name, labels in after
                if name == results
            )
            == 9
        )
        # The node's own log, from memory.
        assert after["credfed_log_size", ()] == 3  # two issued, one revocation
        assert 0 <= after["credfed_log_checkpoint_age_seconds", ()] < 60
        assert after["credfed_subscribers", ()] == 0
        assert after["credfed_health_serving", (("service", "server"),)] == 1
        assert after["credfed_fork_alarms_total", ()] == 0
        no_personal_data(
            m.text,
            active,
            revoked,
            "Novák",
            "Kowalski",
            "Jana",
            BIRTH,
            "1980-01-02",
            *m.tokens.values(),
            "Ms Example",
        )


async def test_rate_limit_refusals_are_counted_and_keep_the_request_id(
    node_dir: Initialised,
) -> None:
    limits = {
        "rate_by_role": {"admin": 1000.0, "verifier": 0.01},
        "burst_by_role": {"admin": 1000, "verifier": 2},
    }
    async with metered(node_dir, **limits) as m:
        before = await m.samples()
        checkpoint = m.verification.GetCheckpoint
        await m.issue()
        for _ in range(2):
            await checkpoint(v.GetCheckpointRequest(), metadata=m.md("verifier"), timeout=10)
        refused = []
        for n in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await checkpoint(
                    v.GetCheckpointRequest(), metadata=m.md("verifier", f"limited-{n}"), timeout=10
                )
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            refused.append(dict(info.value.trailing_metadata() or ()))
        # The retry time and the request id, both.
        assert [t[REQUEST_ID_KEY] for t in refused] == ["limited-0", "limited-1", "limited-2"]
        assert all(int(t[RETRY_AFTER_KEY]) > 0 for t in refused)
        # A batch beyond the burst is refused whatever the bucket holds.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await m.verification.VerifyBatch(
                v.VerifyBatchRequest(requests=[v.VerifyRequest()] * 3),
                metadata=m.md("verifier"),
                timeout=10,
            )
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        after = await m.samples()
        limited = "credfed_rate_limited_total"
        assert delta(before, after, limited, role="verifier", reason="rate") == 3
        assert delta(before, after, limited, role="verifier", reason="batch") == 1
        assert delta(before, after, limited, role="admin", reason="rate") == 0
        method = "/credfed.v1.VerificationService/GetCheckpoint"
        assert calls(before, after, method) == {"OK": 2, "RESOURCE_EXHAUSTED": 3}
        no_personal_data(m.text, *m.tokens.values(), "Ms Example")


async def test_subscribers_are_counted_while_a_stream_is_served(node_dir: Initialised) -> None:
    async with metered(node_dir) as m:
        await m.issue()
        stream = m.federation.SubscribeLog(
            f.SubscribeLogRequest(origin="DE", from_index=0), metadata=m.md("peer"), timeout=30
        )
        first = await stream.read()
        assert first.checkpoint.envelope.payload
        serving = await m.samples()
        assert serving["credfed_subscribers", ()] == 1
        stream.cancel()
        method = "/credfed.v1.FederationService/SubscribeLog"
        for _ in range(100):  # the server learns of the cancel a moment later
            gone = await m.samples()
            if gone["credfed_subscribers", ()] == 0 and calls(serving, gone, method):
                break
            await asyncio.sleep(0.05)
        assert gone["credfed_subscribers", ()] == 0
        # Counted once it ended, like every stream.
        assert calls(serving, gone, method) == {"CANCELLED": 1}


async def test_a_subscription_past_the_cap_is_counted(node_dir: Initialised) -> None:
    async with metered(node_dir, max_subscriptions_per_client=1) as m:
        await m.issue()
        before = await m.samples()
        held = m.federation.SubscribeLog(
            f.SubscribeLogRequest(origin="DE", from_index=0), metadata=m.md("peer"), timeout=30
        )
        await held.read()
        second = m.federation.SubscribeLog(
            f.SubscribeLogRequest(origin="DE", from_index=0), metadata=m.md("peer"), timeout=30
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await second.read()
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        after = await m.samples()
        held.cancel()
        limited = "credfed_rate_limited_total"
        assert delta(before, after, limited, role="peer", reason="subscriptions") == 1
        assert delta(before, after, limited, role="peer", reason="rate") == 0
        assert after["credfed_subscribers", ()] == 1


async def test_request_ids_are_echoed_or_replaced(node_dir: Initialised) -> None:
    async with metered(node_dir) as m:

        async def echoed(rid: str | None, *, fail: bool = False) -> str:
            request = v.GetCheckpointRequest()
            call = m.verification.GetCheckpoint(
                request, metadata=m.md("peer" if fail else "verifier", rid), timeout=10
            )
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call
            assert await call.code() == (
                grpc.StatusCode.PERMISSION_DENIED if fail else grpc.StatusCode.OK
            )
            trailing = dict(await call.trailing_metadata() or ())
            return str(trailing[REQUEST_ID_KEY])

        await m.issue()
        assert await echoed("order-4711.retry_2") == "order-4711.retry_2"
        assert await echoed("order-4712", fail=True) == "order-4712"
        fresh = {await echoed(None) for _ in range(5)}
        assert len(fresh) == 5
        assert all(len(x) == 16 and int(x, 16) >= 0 for x in fresh)
        # (grpc clients refuse to send a newline or non-ASCII at all.)
        for bad in ("x" * 65, "x" * 500, "a b", "<script>", "id;drop"):
            replaced = await echoed(bad)
            assert replaced != bad
            assert len(replaced) == 16


def test_request_id_rules() -> None:
    assert request_id(((REQUEST_ID_KEY, "A-z_0.9"),)) == "A-z_0.9"
    assert request_id(((REQUEST_ID_KEY, "x" * 64),)) == "x" * 64
    for bad in ("", "x" * 65, "a\nb", "a\x00b", "a/b"):
        assert request_id(((REQUEST_ID_KEY, bad),)) != bad
    assert request_id(((REQUEST_ID_KEY, b"bytes"),)) != "bytes"
    assert request_id(None) != request_id(None)


async def test_a_metrics_port_in_use_is_a_config_error(node_dir: Initialised) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = dataclasses.replace(node_dir.config, metrics_listen=f"127.0.0.1:{port}")
        node = await Node.open(config)
        try:
            with pytest.raises(
                ConfigError, match=r"^metrics\.listen: cannot listen on 127\.0\.0\.1"
            ):
                await server.start(node, "127.0.0.1:0")
        finally:
            await node.close()


async def test_no_endpoint_unless_configured(node_dir: Initialised) -> None:
    node = await Node.open(node_dir.config)
    running = await server.start(node, "127.0.0.1:0")
    try:
        assert node_dir.config.metrics_listen == ""
        assert running.metrics is None
        assert running.metrics_port == 0
    finally:
        await running.stop(0)
        await node.close()
