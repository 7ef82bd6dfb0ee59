"""Attack: a scraper with a verifier token enumerates credential ids.

Expected defences (DESIGN.md, privacy; ``credfed.verification``,
``credfed.rpc.ratelimit``):

- ids are random and carry a check symbol, so enumeration means guessing;
- an unknown id and a real id with a wrong holder attribute get the same
  answer (code, details and metadata), in Verify, VerifyBatch items,
  WhereRecognised and a partner's LookupCredential alike, whatever the
  credential's status; a malformed id is refused the same way whether or
  not a real credential is "near" it;
- a configured per-client rate limit ends the scrape with
  RESOURCE_EXHAUSTED, however the scraper spreads its calls (several
  connections, batches), and other clients are still served.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from conftest import ISSUER, draft

from credfed import config as cfg
from credfed import ids
from credfed.bootstrap import Initialised, add_client
from credfed.config import LimitSettings
from credfed.node import Node
from credfed.rpc import server
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc, registry_pb2_grpc, verification_pb2_grpc
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v

NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
BIRTH, FAMILY = "1994-03-17", "Novák"
Md = tuple[tuple[str, str], ...]


@dataclasses.dataclass
class Scraped:
    node: Node
    target: str
    channel: grpc.aio.Channel
    config: cfg.Config
    admin: Md

    async def token(self, role: str) -> Md:
        token = await add_client(
            self.config, role, f"test {role}", partner="FR" if role == "peer" else None
        )
        return (("authorization", f"Bearer {token}"),)

    async def issue(self, **overrides: Any) -> str:
        got = await registry_pb2_grpc.RegistryServiceStub(self.channel).IssueCredential(
            r.IssueCredentialRequest(draft=draft(**overrides)), metadata=self.admin, timeout=10
        )
        return str(got.receipt.credential.credential_id)


@contextlib.asynccontextmanager
async def serve(init: Initialised, **limits: Any) -> AsyncIterator[Scraped]:
    """A served node with these ``[limits]`` (admin unlimited for set-up)."""
    limits.setdefault("rate_by_role", {})["admin"] = 1000.0
    limits.setdefault("burst_by_role", {})["admin"] = 1000
    config = dataclasses.replace(init.config, limits=LimitSettings(**limits))
    (config.data_dir / cfg.CONFIG_FILE).write_text(config.to_toml())
    node = await Node.open(cfg.load(config.data_dir))
    srv = await server.start(node, "127.0.0.1:0")
    target = f"127.0.0.1:{srv.port}"
    channel = grpc.aio.insecure_channel(target)
    admin = (("authorization", f"Bearer {init.admin_token}"),)
    try:
        await registry_pb2_grpc.RegistryServiceStub(channel).RegisterIssuer(
            r.RegisterIssuerRequest(issuer_id=ISSUER, name=ISSUER, sectors=["energy"]),
            metadata=admin,
            timeout=10,
        )
        yield Scraped(node, target, channel, config, admin)
    finally:
        await channel.close()
        await srv.stop(0)
        await node.close()


Answer = tuple[str, str, tuple[tuple[str, str], ...]]


async def _answer(call: Any) -> Answer:
    """Code, details and trailing metadata (what a scraper can compare)."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        pairs = [(k, str(val)) for k, val in exc.trailing_metadata() or ()]
        # Every answer carries a fresh random request id: noise, not signal
        # (its shape is checked so it cannot smuggle anything either).
        ids = [val for k, val in pairs if k == "x-request-id"]
        assert len(ids) == 1 and re.fullmatch(r"[0-9a-f]{16}", ids[0]), ids
        trailing = tuple(sorted(kv for kv in pairs if kv[0] != "x-request-id"))
        return exc.code().name, exc.details() or "", trailing
    return "OK", "", ()


def _wrong_check_symbol(cid: str) -> str:
    return cid[:-1] + ("2" if cid[-1] != "2" else "3")


async def test_unknown_ids_and_wrong_holder_attributes_are_indistinguishable(
    node_dir: Initialised,
) -> None:
    """Attack: probe which ids exist by comparing answers: random valid ids
    against real ids (active, suspended, revoked) asked with a wrong birth
    date or family name, in every RPC that takes id + attribute; and
    malformed ids near a real one against malformed random ones. Defence:
    one answer for all "no match" cases per RPC; malformed ids answered by
    format alone."""
    async with serve(node_dir) as s:
        real = [await s.issue() for _ in range(3)]
        registry = registry_pb2_grpc.RegistryServiceStub(s.channel)
        await registry.SuspendCredential(
            r.SuspendCredentialRequest(credential_id=real[1], reason="disciplinary"),
            metadata=s.admin,
            timeout=10,
        )
        await registry.RevokeCredential(
            r.RevokeCredentialRequest(credential_id=real[2], reason="fraud"),
            metadata=s.admin,
            timeout=10,
        )
        verifier, peer = await s.token("verifier"), await s.token("peer")
        verification = verification_pb2_grpc.VerificationServiceStub(s.channel)
        federation = federation_pb2_grpc.FederationServiceStub(s.channel)
        unknown = [ids.new_credential_id("DE") for _ in range(5)]
        probes: list[tuple[str, dict[str, str]]] = [(u, {"birth_date": BIRTH}) for u in unknown]
        probes += [(u, {"family_name": FAMILY}) for u in unknown]
        for cid in real:
            probes += [(cid, {"birth_date": "1994-03-18"}), (cid, {"family_name": "Novak-Svoboda"})]
            probes += [(cid.lower().replace("-", ""), {"birth_date": "1990-01-01"})]

        rpcs: dict[str, Callable[[str, dict[str, str]], Any]] = {
            "Verify": lambda cid, attr: verification.Verify(
                v.VerifyRequest(credential_id=cid, **attr), metadata=verifier, timeout=10
            ),
            "WhereRecognised": lambda cid, attr: verification.WhereRecognised(
                v.WhereRecognisedRequest(credential_id=cid, **attr), metadata=verifier, timeout=10
            ),
            "LookupCredential": lambda cid, attr: federation.LookupCredential(
                f.LookupCredentialRequest(credential_id=cid, **attr), metadata=peer, timeout=10
            ),
        }
        for name, rpc in rpcs.items():
            seen = {await _answer(rpc(cid, attr)) for cid, attr in probes}
            assert len(seen) == 1, f"{name} tells unknown ids from wrong attributes: {seen}"
            ((code, _, _),) = seen
            assert code == "NOT_FOUND", name
            # The right attribute does answer (the probes were not all refused for another reason).
            assert (await _answer(rpc(real[0], {"birth_date": BIRTH})))[0] == "OK", name

        batch = await verification.VerifyBatch(
            v.VerifyBatchRequest(
                requests=[v.VerifyRequest(credential_id=cid, **attr) for cid, attr in probes]
            ),
            metadata=verifier,
            timeout=10,
        )
        errors = {
            (i.WhichOneof("outcome"), i.error.code, i.error.field, i.error.message)
            for i in batch.items
        }
        assert len(errors) == 1, (
            f"VerifyBatch items tell unknown ids from wrong attributes: {errors}"
        )

        # Malformed: a real id with a broken check symbol is refused exactly
        # like a random id with a broken check symbol.
        malformed = {
            await _answer(
                verification.Verify(
                    v.VerifyRequest(credential_id=_wrong_check_symbol(cid), birth_date=BIRTH),
                    metadata=verifier,
                    timeout=10,
                )
            )
            for cid in [*real, *unknown]
        }
        assert len(malformed) == 1, f"a typo near a real id is answered differently: {malformed}"
        ((code, details, _),) = malformed
        assert code == "INVALID_ARGUMENT" and details.startswith("credential_id:"), details
        # Another country's ids (no partnership): one answer whatever the id.
        foreign = {
            await _answer(
                verification.Verify(
                    v.VerifyRequest(credential_id=ids.new_credential_id("FR"), birth_date=BIRTH),
                    metadata=verifier,
                    timeout=10,
                )
            )
            for _ in range(3)
        }
        assert len(foreign) == 1, foreign


async def _scrape(s: Scraped, md: Md, connections: int, calls: int) -> list[Answer]:
    """``calls`` Verify calls of random ids, spread over fresh connections."""
    channels = [
        grpc.aio.insecure_channel(s.target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(connections)
    ]
    try:
        stubs = [verification_pb2_grpc.VerificationServiceStub(ch) for ch in channels]
        return list(
            await asyncio.gather(
                *(
                    _answer(
                        stubs[n % connections].Verify(
                            v.VerifyRequest(
                                credential_id=ids.new_credential_id("DE"), birth_date=BIRTH
                            ),
                            metadata=md,
                            timeout=10,
                        )
                    )
                    for n in range(calls)
                )
            )
        )
    finally:
        for channel in channels:
            await channel.close()


RATE, BURST = 5.0, 10


async def test_a_scraper_spread_over_connections_is_rate_limited_and_others_are_served(
    node_dir: Initialised,
) -> None:
    """Attack: a scraper with one verifier token sends 150 Verify calls of
    random ids over 5 separate connections at once. Defence (``[limits]``
    verifier rate 5/s, burst 10): the bucket is per client, not per
    connection - at most burst + rate x elapsed lookups are answered, the
    rest get RESOURCE_EXHAUSTED with a retry time; an honest employer with
    its own token is served meanwhile."""
    limits = {"rate_by_role": {"verifier": RATE}, "burst_by_role": {"verifier": BURST}}
    async with serve(node_dir, **limits) as s:
        real = await s.issue()
        scraper, employer = await s.token("verifier"), await s.token("verifier")
        start = time.monotonic()
        answers = await _scrape(s, scraper, connections=5, calls=150)
        elapsed = time.monotonic() - start
        looked_up = [a for a in answers if a[0] == "NOT_FOUND"]
        limited = [a for a in answers if a[0] == "RESOURCE_EXHAUSTED"]
        assert len(looked_up) + len(limited) == len(answers), {a[0] for a in answers}
        assert len(looked_up) <= BURST + RATE * elapsed + 1, (len(looked_up), elapsed)
        assert all(dict(a[2]).get("retry-after-ms") for a in limited)
        honest = await verification_pb2_grpc.VerificationServiceStub(s.channel).Verify(
            v.VerifyRequest(credential_id=real, birth_date=BIRTH), metadata=employer, timeout=10
        )
        assert honest.result.credential_id == real


async def test_a_scraper_cannot_escape_the_rate_limit_with_verify_batch(
    node_dir: Initialised,
) -> None:
    """Attack: the same scraper packs its guesses into VerifyBatch calls (one
    call, up to 1,000 lookups). Defence: the limit bounds lookups, not calls:
    a batch costs its items, so at most burst + rate x elapsed ids are looked
    up, in batches as one by one; a batch larger than the burst is refused
    outright (RESOURCE_EXHAUSTED, no retry time: it could never pass)."""
    limits = {"rate_by_role": {"verifier": RATE}, "burst_by_role": {"verifier": BURST}}
    async with serve(node_dir, **limits) as s:
        scraper = await s.token("verifier")
        verification = verification_pb2_grpc.VerificationServiceStub(s.channel)

        def batch(size: int) -> v.VerifyBatchRequest:
            return v.VerifyBatchRequest(
                requests=[
                    v.VerifyRequest(credential_id=ids.new_credential_id("DE"), birth_date=BIRTH)
                    for _ in range(size)
                ]
            )

        code, details, trailing = await _answer(
            verification.VerifyBatch(batch(1000), metadata=scraper, timeout=10)
        )
        assert code == "RESOURCE_EXHAUSTED", (code, details)
        assert "retry-after-ms" not in dict(trailing)
        looked_up, refused = 0, 0
        start = time.monotonic()
        for _ in range(10):
            answer = verification.VerifyBatch(batch(4), metadata=scraper, timeout=10)
            code, _, _ = await _answer(answer)
            if code == "OK":
                got = await answer
                looked_up += sum(1 for item in got.items if item.error.code == NOT_FOUND.name)
            else:
                assert code == EXHAUSTED.name
                refused += 1
        elapsed = time.monotonic() - start
        assert looked_up > 0, "no batch at all was served"
        assert refused > 0
        assert looked_up <= BURST + RATE * elapsed + 1, (
            f"{looked_up} ids looked up in {elapsed:.2f}s by a client limited to"
            f" {RATE:g}/s (burst {BURST})"
        )
