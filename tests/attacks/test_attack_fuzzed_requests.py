"""Attack: hostile request messages, generated from the protobuf descriptors.

Every RPC the server registers is called with messages a property-based
generator builds from the request's message descriptor: strings with
unicode, control characters and very long values, random and very long
bytes, integers at and beyond their limits (0, the type's maximum, unknown
enum numbers), nested messages, repeated fields with more than a thousand
items, and every branch of each oneof (or none). Generated values are mixed
with plausible ones (a real credential id, a known issuer, a valid date, a
reason code) so that the fuzzer also gets past the first validation check.

Expected defence, for every RPC and every generated request:

- the answer is OK or a well-defined refusal: never INTERNAL nor UNKNOWN
  (an unhandled exception in a servicer is a bug, whatever the input);
- the server stays up: a health check passes after each call;
- a refused call wrote nothing: the latest checkpoint, the log size and the
  counts of credentials, issuers and recognition rules are unchanged.

The RPC list is derived from the services the server registers
(``credfed.rpc.server.SERVICE_NAMES``), so a new RPC is fuzzed without a
change here; a test checks that the list is ``METHOD_ROLES`` less health
and reflection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from conftest import ISSUER, OTHER_ISSUER, draft
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from credfed import ids
from credfed.bootstrap import add_client, init_node
from credfed.node import Node
from credfed.rpc import server
from credfed.rpc.auth import METHOD_ROLES
from credfed.v1 import recognition_pb2 as rc
from credfed.v1 import registry_pb2 as r
from credfed.v1 import registry_pb2_grpc

#: The fuzz tests share one served node (module-scoped, on the module's loop).
ON_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

#: Examples per RPC and role the role table allows; a role it refuses is
#: stopped before the servicer, so fewer examples show that path holds.
EXAMPLES = 40
EXAMPLES_REFUSED_ROLE = 8
HEALTH_CHECKS = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.function_scoped_fixture,
    HealthCheck.differing_executors,
]
#: Codes a request may never get: a servicer crashed (or grpc failed).
CRASHES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
#: Seconds a server stream (SubscribeLog) is given to send its first message.
FIRST_UPDATE_SECONDS = 3.0
_PUBLIC_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


# -- the RPCs, from the service descriptors --------------------------------------


def _methods() -> list[MethodDescriptor]:
    pool = descriptor_pool.Default()
    return [
        method for name in server.SERVICE_NAMES for method in pool.FindServiceByName(name).methods
    ]


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


METHODS = {_path(m): m for m in _methods()}
#: The roles each RPC is fuzzed as: admin always; verifier for the
#: Verification service, peer for the Federation service.
ROLE_OF_SERVICE = {"VerificationService": "verifier", "FederationService": "peer"}


def _allowed(path: str, role: str) -> bool:
    roles = METHOD_ROLES[path]
    return roles is not None and any(kind.value == role for kind in roles)


def _cases(*, allowed: bool) -> list[Any]:
    cases = []
    for path, method in METHODS.items():
        roles = ["admin"]
        extra = ROLE_OF_SERVICE.get(method.containing_service.name)
        if extra is not None:
            roles.append(extra)
        cases += [
            pytest.param(path, role, id=f"{method.name}-{role}")
            for role in roles
            if _allowed(path, role) == allowed
        ]
    return cases


def test_the_fuzzed_rpcs_are_exactly_the_guarded_ones() -> None:
    """Attack: an RPC added to a service but left out of the fuzzer (or out
    of the role table). Defence: the fuzzed list, derived from the served
    services' descriptors, equals ``METHOD_ROLES`` less health/reflection."""
    guarded = {m for m in METHOD_ROLES if not m.startswith(_PUBLIC_PREFIXES)}
    assert set(METHODS) == guarded
    assert all(METHOD_ROLES[m] is not None for m in METHODS)


# -- a generic request generator ---------------------------------------------------

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
#: Nested messages below this depth are left unset.
MAX_DEPTH = 4
#: Lengths of the "very long" strings and bytes (the field cap is 1 KiB).
LONG = (1025, 4096, 100_000)
#: Items of a "many items" repeated field (the batch cap is 1,000).
MANY = (1001, 1500)


@dataclass(frozen=True)
class Plausible:
    """Valid-looking values mixed into the generated strings, so that the
    fuzzer gets past the first check: ``ids`` (real credential ids and
    variants) and ``general`` (every hint plus classic hostile strings)."""

    ids: tuple[str, ...]
    general: tuple[str, ...]

    def hints(self, field_name: str) -> tuple[str, ...]:
        """Values for a field, chosen by its name alone (no RPC is special)."""
        for words, values in _HINTS:
            if any(word in field_name for word in words):
                return values
        if "credential_id" in field_name or field_name in ("supersedes", "superseded_by"):
            return self.ids
        return self.general


_HINTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("birth_date", "_on", "until", "valid_from"), ("1994-03-17", "1994-02-30", "9999-12-31")),
    (("origin", "country"), ("DE", "FR", "de", "XX", "")),
    (("reason",), ("fraud", "disciplinary", "appeal_upheld", "upgrade", "issued")),
    (("issuer_id",), (ISSUER, OTHER_ISSUER, "de-unknown")),
    (("sector",), ("energy", "construction", "Energy ", "nuclear")),
    (("family_name", "given_names"), ("Novák", "NOVÁK ", "Jana")),
    (("rule_id",), ("fr-elec-existing", "fr-new-rule")),
    (("isco",), ("7411", "74", "7")),
    (("national_code", "local_code"), ("DE-HWK-EGT-2019", "FR-CAP-1")),
    (("case_ref",), ("CASE-2025/17",)),
    (("language_level",), ("B1", "Z9")),
)
_HOSTILE = ("", " ", "\x00", "\u202e", "a\u0301", "\U0001f600", "' OR 1=1 --", "%s%n{0}")


def _plausible(real_ids: tuple[str, ...]) -> Plausible:
    fr_id = ids.new_credential_id("FR")
    credential_ids = (
        *real_ids,
        *(i.lower().replace("-", "") for i in real_ids),
        ids.new_credential_id("DE"),
        fr_id,
        fr_id[:-1] + ("2" if fr_id[-1] != "2" else "3"),  # a wrong check symbol
    )
    general = tuple(
        dict.fromkeys((*credential_ids, *(v for _, vs in _HINTS for v in vs), *_HOSTILE))
    )
    return Plausible(credential_ids, general)


def _text(hints: tuple[str, ...], general: tuple[str, ...]) -> st.SearchStrategy[str]:
    control = st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp", "Co"])
    return st.one_of(
        st.sampled_from(hints),
        st.sampled_from(hints),
        st.sampled_from(general),
        st.text(max_size=40),
        st.text(control, max_size=8),
        st.tuples(st.sampled_from(LONG), st.characters(codec="utf-8")).map(lambda t: t[1] * t[0]),
    )


def _bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64),
        st.sampled_from([b"", b"{}", b"null", b'{"format":"credfed-fork-evidence/v1"}']),
        st.sampled_from(LONG).map(lambda n: b"\xff" * n),
    )


def _integers(field: FieldDescriptor) -> st.SearchStrategy[int]:
    lo, hi = _INT_RANGES[field.type]
    edges = sorted(n for n in {lo, hi, 0, 1, 1000, 1001, 2**31 - 1, 2**32 - 1} if lo <= n <= hi)
    return st.one_of(st.sampled_from(edges), st.integers(0, 9), st.integers(lo, hi))


def _scalar(field: FieldDescriptor, plausible: Plausible, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _text(plausible.hints(field.name), plausible.general)
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes()
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [value.number for value in field.enum_type.values]
        # Proto3 enums are open: unknown numbers reach the server as such.
        return st.sampled_from([*known, max(known) + 1, 99, -1, 2**31 - 1])
    if kind in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
        assert field.message_type is not None
        return messages(field.message_type, plausible, depth + 1)
    return _integers(field)


def _repeated(element: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """A few items, or more than a thousand (copies of one small item)."""

    def many(item: Any) -> st.SearchStrategy[list[Any]]:
        small = len(item) < 100 if isinstance(item, str | bytes) else True
        if isinstance(item, Message):
            small = item.ByteSize() < 2000
        return st.sampled_from(MANY).map(lambda n: [item] * (n if small else 3))

    return st.one_of(st.lists(element, max_size=4), element.flatmap(many))


def _field(field: FieldDescriptor, plausible: Plausible, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE and depth + 1 >= MAX_DEPTH:
        return st.none()
    element = _scalar(field, plausible, depth)
    if field.is_repeated:
        return _repeated(element)
    return element


def messages(
    descriptor: Descriptor, plausible: Plausible, depth: int = 0
) -> st.SearchStrategy[Message]:
    """Any message of ``descriptor``'s type: each plain field set or not,
    each oneof with one of its fields set, or none."""
    return _messages(descriptor.full_name, plausible, depth)


@cache
def _messages(full_name: str, plausible: Plausible, depth: int) -> st.SearchStrategy[Message]:
    descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    cls = message_factory.GetMessageClass(descriptor)
    plain = {
        f.name: st.one_of(st.none(), _field(f, plausible, depth))
        for f in descriptor.fields
        if f.containing_oneof is None
    }
    oneofs = [
        st.one_of(
            st.none(),
            *(st.tuples(st.just(f.name), _field(f, plausible, depth)) for f in oneof.fields),
        )
        for oneof in descriptor.oneofs
    ]

    def build(values: dict[str, Any], chosen: tuple[tuple[str, Any] | None, ...]) -> Message:
        fields = {k: v for k, v in values.items() if v is not None}
        fields.update(c for c in chosen if c is not None and c[1] is not None)
        message: Message = cls(**fields)
        return message

    return st.builds(build, st.fixed_dictionaries(plain), st.tuples(*oneofs))


# -- a served node, shared by the module ---------------------------------------------


@dataclass
class Target:
    node: Node
    channel: grpc.aio.Channel
    tokens: dict[str, str]
    db: Path
    plausible: Plausible

    def md(self, role: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[role]}"),)

    async def state(self) -> tuple[object, ...]:
        """Everything a refused call must leave as it was."""
        latest = await self.node.store.latest_checkpoint()
        checkpoint = (
            None if latest is None else (latest.checkpoint.tree_size, latest.checkpoint.root_hash)
        )
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            counts = db.execute(
                "SELECT (SELECT COUNT(*) FROM credentials), (SELECT COUNT(*) FROM issuers),"
                " (SELECT COUNT(*) FROM recognition_rules), (SELECT COUNT(*) FROM log_leaves),"
                " (SELECT COUNT(*) FROM clients)"
            ).fetchone()
        return (checkpoint, *counts)

    async def healthy(self) -> bool:
        got = await health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
        return bool(got.status == health_pb2.HealthCheckResponse.SERVING)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    init = await init_node(tmp_path_factory.mktemp("fuzz") / "de", "DE", "127.0.0.1:0")
    node = await Node.open(init.config)
    srv = await server.start(node, "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}")
    tokens = {"admin": init.admin_token}
    try:
        admin = (("authorization", f"Bearer {init.admin_token}"),)
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        for issuer_id in (ISSUER, OTHER_ISSUER):
            await registry.RegisterIssuer(
                r.RegisterIssuerRequest(issuer_id=issuer_id, name=issuer_id, sectors=["energy"]),
                metadata=admin,
                timeout=10,
            )
        for role in ("verifier", "peer"):
            tokens[role] = await add_client(
                init.config, role, f"fuzz {role}", partner="FR" if role == "peer" else None
            )
        real = []
        for _ in range(2):
            got = await registry.IssueCredential(
                r.IssueCredentialRequest(draft=draft()), metadata=admin, timeout=10
            )
            real.append(got.receipt.credential.credential_id)
        await registry.SuspendCredential(
            r.SuspendCredentialRequest(credential_id=real[1], reason="disciplinary"),
            metadata=admin,
            timeout=10,
        )
        await registry.AddRecognitionRule(
            r.AddRecognitionRuleRequest(
                rule=rc.RecognitionRule(
                    rule_id="fr-elec-existing",
                    origin="FR",
                    eqf_min=4,
                    eqf_max=4,
                    isco_prefix="7411",
                    outcome=rc.RECOGNITION_OUTCOME_FULL,
                    local_occupation="Elektroniker/in",
                    legal_basis="BQFG § 4",
                    valid_from="2025-01-01",
                )
            ),
            metadata=admin,
            timeout=10,
        )
        yield Target(node, channel, tokens, init.config.db_path, _plausible(tuple(real)))
    finally:
        await channel.close()
        await srv.stop(0)
        await node.close()


# -- calling any RPC generically ---------------------------------------------------------


def _codec(method: MethodDescriptor) -> tuple[Callable[[Message], bytes], Callable[[bytes], Any]]:
    out = message_factory.GetMessageClass(method.output_type)
    return (lambda m: m.SerializeToString()), out.FromString


async def call(target: Target, path: str, request: Any, role: str) -> tuple[grpc.StatusCode, str]:
    """Call ``path`` with ``request`` (a list of messages for a client
    stream); a server stream is read for its first message, then cancelled."""
    method = METHODS[path]
    ser, des = _codec(method)
    md = target.md(role)
    channel = target.channel
    try:
        if method.client_streaming:
            stub = channel.stream_unary(path, request_serializer=ser, response_deserializer=des)
            await stub(iter(request), metadata=md, timeout=30)
        elif method.server_streaming:
            stub = channel.unary_stream(path, request_serializer=ser, response_deserializer=des)
            stream = stub(request, metadata=md, timeout=30)
            try:
                await asyncio.wait_for(stream.read(), FIRST_UPDATE_SECONDS)
            except TimeoutError:
                pass  # open and waiting for news: a well-defined answer too
            finally:
                stream.cancel()
        else:
            stub = channel.unary_unary(path, request_serializer=ser, response_deserializer=des)
            await stub(request, metadata=md, timeout=30)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _requests(method: MethodDescriptor, plausible: Plausible) -> st.SearchStrategy[Any]:
    one = messages(method.input_type, plausible)
    if method.client_streaming:
        return st.lists(one, max_size=3)
    return one


async def _attack(target: Target, path: str, role: str, data: st.DataObject) -> grpc.StatusCode:
    request = data.draw(_requests(METHODS[path], target.plausible), label="request")
    before = await target.state()
    code, details = await call(target, path, request, role)
    event(code.name)  # the answers' spread: pytest --hypothesis-show-statistics
    assert code not in CRASHES, f"{path} as {role}: {code.name} {details[:300]!r}"
    assert await target.healthy(), f"{path} as {role}: the server is not serving"
    if code != grpc.StatusCode.OK:
        assert await target.state() == before, f"{path} refused ({code.name}) but wrote"
    return code


@ON_MODULE_LOOP
@pytest.mark.parametrize(("path", "role"), _cases(allowed=True))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=HEALTH_CHECKS)
@given(data=st.data())
async def test_fuzzed_request_is_answered_cleanly(
    target: Target, path: str, role: str, data: st.DataObject
) -> None:
    """Attack: any request message, well-formed protobuf but hostile content,
    to every RPC as admin or as the service's own role (verifier, peer).
    Defence: OK or a well-defined refusal, never INTERNAL/UNKNOWN; the
    server stays healthy; a refused call wrote nothing."""
    await _attack(target, path, role, data)


@ON_MODULE_LOOP
@pytest.mark.parametrize(("path", "role"), _cases(allowed=False))
@settings(max_examples=EXAMPLES_REFUSED_ROLE, deadline=None, suppress_health_check=HEALTH_CHECKS)
@given(data=st.data())
async def test_fuzzed_request_from_a_refused_role_is_denied(
    target: Target, path: str, role: str, data: st.DataObject
) -> None:
    """Attack: hostile requests to the Federation service with an admin token
    (a role the table does not allow there). Defence: PERMISSION_DENIED
    whatever the message, before any servicer code runs; nothing written."""
    assert await _attack(target, path, role, data) == grpc.StatusCode.PERMISSION_DENIED
