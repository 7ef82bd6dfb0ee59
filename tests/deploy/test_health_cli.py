"""`credfed health`: the probe of the Docker HEALTHCHECK, the compose
healthchecks and the Kubernetes probes, run against real `credfed serve`
processes (TLS and plaintext), a stopped node and a NOT_SERVING server."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from clikit import acredfed
from clikit import run as credfed
from fednet import free_port
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from nodeproc import NodeProcess

from credfed import config as cfg

FEDERATION = "credfed.v1.FederationService"


def init(data_dir: Path, *args: str) -> None:
    done = credfed("init", "--country", "DE", "--data-dir", str(data_dir), *args)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def tls_node(tmp_path: Path) -> Iterator[NodeProcess]:
    """A TLS node bound to 0.0.0.0 whose certificate names only `de` (as in
    compose): the probe must reach it on loopback and expect `de`."""
    listen = f"0.0.0.0:{free_port()}"
    init(
        tmp_path / "de", "--listen", listen, "--federation-listen", f"127.0.0.1:{free_port()}",
        "--hostname", "de",
    )  # fmt: skip
    proc = NodeProcess(tmp_path / "de", tmp_path / "de.log", listen=listen)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_tls_node_bound_to_all_addresses_is_serving(tls_node: NodeProcess) -> None:
    assert cfg.load(tls_node.data_dir).tls_hostnames == ("de",)
    done = credfed("health", "--data-dir", str(tls_node.data_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"the node at 127.0.0.1:{tls_node.port}: SERVING"
    done = credfed(
        "health", "--data-dir", str(tls_node.data_dir), "--service", FEDERATION, "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "service": FEDERATION,
        "status": "SERVING",
        "target": f"127.0.0.1:{tls_node.port}",
    }


def test_unknown_service_fails_naming_it(tls_node: NodeProcess) -> None:
    done = credfed("health", "--data-dir", str(tls_node.data_dir), "--service", "no.Such")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: health of service no.Such at 127.0.0.1:{tls_node.port}: "
        "NOT_FOUND: the node has no such service"
    )


def test_the_certificate_is_verified(tls_node: NodeProcess, tmp_path: Path) -> None:
    """The same address and settings, but another node's CA: refused."""
    init(tmp_path / "other", "--listen", f"127.0.0.1:{free_port()}", "--hostname", "de")
    impostor = tmp_path / "impostor"
    (impostor / "tls").mkdir(parents=True)
    shutil.copy(tls_node.data_dir / cfg.CONFIG_FILE, impostor / cfg.CONFIG_FILE)
    shutil.copy(tmp_path / "other" / "tls" / "ca.pem", impostor / "tls" / "ca.pem")
    done = credfed("health", "--data-dir", str(impostor), "--timeout", "3")
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: health of the node at 127.0.0.1:{tls_node.port}: ")
    assert len(done.stderr.strip().splitlines()) == 1


def test_plaintext_node_and_then_stopped(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    init(tmp_path / "de", "--listen", listen, "--plaintext-dev")
    proc = NodeProcess(tmp_path / "de", tmp_path / "de.log", listen=listen)
    proc.start()
    try:
        done = credfed("health", "--data-dir", str(tmp_path / "de"))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"the node at {listen}: SERVING"
    finally:
        proc.stop()
    done = credfed("health", "--data-dir", str(tmp_path / "de"), "--timeout", "2", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout) == {"service": "", "target": listen, "error": "UNAVAILABLE"}
    line = done.stderr.strip()
    assert line.startswith(f"error: health of the node at {listen}: UNAVAILABLE: ")
    assert "\n" not in line


@pytest.fixture
async def not_serving(tmp_path: Path) -> AsyncIterator[Path]:
    """A data directory whose server.listen is a real gRPC server reporting
    NOT_SERVING (as a node does while it shuts down)."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    init(tmp_path / "de", "--listen", f"127.0.0.1:{port}", "--plaintext-dev")
    try:
        yield tmp_path / "de"
    finally:
        await server.stop(0)


async def test_not_serving_exits_1_naming_the_status(not_serving: Path) -> None:
    # Run without blocking the loop that serves the health server.
    proc = await acredfed("health", "--data-dir", str(not_serving))
    assert proc[0] == 1
    assert proc[2].strip().endswith(": NOT_SERVING")
    assert proc[2].startswith("error: health of the node at 127.0.0.1:")


def test_listen_override_from_the_environment_is_used(tls_node: NodeProcess) -> None:
    """Kubernetes sets CREDFED_SERVER_LISTEN: the probe follows it."""
    elsewhere = f"0.0.0.0:{free_port()}"
    done = credfed(
        "health", "--data-dir", str(tls_node.data_dir), "--timeout", "2",
        env={"CREDFED_SERVER_LISTEN": elsewhere},
    )  # fmt: skip
    assert done.returncode == 1
    assert f"at 127.0.0.1:{elsewhere.rsplit(':', 1)[1]}: UNAVAILABLE" in done.stderr


def test_port_zero_and_missing_node_are_one_line_errors(tmp_path: Path) -> None:
    init(tmp_path / "de", "--listen", "127.0.0.1:0", "--plaintext-dev")
    done = credfed("health", "--data-dir", str(tmp_path / "de"))
    assert done.returncode == 1
    assert done.stderr == "error: server.listen: 127.0.0.1:0 has no fixed port to check\n"
    done = credfed("health", "--data-dir", str(tmp_path / "nothing"))
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "credfed init" in done.stderr
    assert len(done.stderr.splitlines()) == 1
