"""The ``credfed`` command: wiring only.

Local commands (init, serve, token create) work on a data directory; the
others talk to a node over gRPC. An error is one line on stderr and a
non-zero exit: 1 for a refused operation, 2 for bad usage or input.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click

# gRPC's C core prints its own copy of errors we report in one line (a failed
# bind, say); GRPC_VERBOSITY=debug set by the operator still takes effect.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
import grpc
from google.protobuf.json_format import MessageToDict

from credfed import config as cfg
from credfed import logging as clog
from credfed import validation
from credfed.crypto.keys import SigningKey, VerifyingKey
from credfed.crypto.tls import TlsFiles
from credfed.errors import CredfedError, ValidationError
from credfed.models import Client as ApiClient
from credfed.models import CredentialDraft
from credfed.registry import MAX_BULK_TOTAL
from credfed.rpc.client import Client
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import decode_checkpoint, verify_checkpoint
from credfed.v1 import common_pb2 as c
from credfed.v1 import recognition_pb2 as rc
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v

DEFAULT_LISTEN = "127.0.0.1:7400"
IMPORT_BATCH = 1000
CSV_COLUMNS = (
    "issuer_id",
    "given_names",
    "family_name",
    "birth_date",
    "national_code",
    "title",
    "eqf_level",
    "isco_code",
    "sector",
    "issued_on",
    "valid_until",
)


#: The data directory of a node on this machine (local commands).
_node_dir = click.option(
    "--data-dir",
    required=True,
    envvar="CREDFED_DATA_DIR",
    type=click.Path(path_type=Path, file_okay=False),
    help="The node's data directory.",
)


class Failure(click.ClickException):
    """A refused operation: one line, exit 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def fail(message: str) -> NoReturn:
    raise Failure(message)


def _emit(as_json: bool, data: object, human: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else human)


def _msg(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return result


# -- options shared by remote commands ------------------------------------------------
def _remote(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option("--server", envvar="CREDFED_SERVER", help="Node address HOST:PORT."),
            click.option("--token", envvar="CREDFED_TOKEN", help="API token (cf_…)."),
            click.option(
                "--data-dir",
                envvar="CREDFED_DATA_DIR",
                type=click.Path(path_type=Path, file_okay=False),
                help="A node's data directory: its address and admin token are the defaults.",
            ),
            click.option(
                "--ca-file",
                envvar="CREDFED_CA_FILE",
                type=click.Path(path_type=Path, dir_okay=False, exists=True),
                help="The node's CA certificate (TLS); default: the one in --data-dir.",
            ),
            click.option(
                "--client-cert",
                envvar="CREDFED_CLIENT_CERT",
                type=click.Path(path_type=Path, dir_okay=False, exists=True),
                help="Authenticate with this certificate (and --client-key) instead of a token.",
            ),
            click.option(
                "--client-key",
                envvar="CREDFED_CLIENT_KEY",
                type=click.Path(path_type=Path, dir_okay=False, exists=True),
            ),
            click.option("--timeout", default=10.0, show_default=True, help="Deadline, seconds."),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        ]
    ):
        fn = option(fn)
    return fn


def _client(  # noqa: PLR0917 - the remote options, one each
    server: str | None,
    token: str | None,
    data_dir: Path | None,
    timeout: float,
    ca_file: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> Client:
    roots = ca_file.read_bytes() if ca_file is not None else None
    server_name = None
    if data_dir is not None:
        config = _load_config(data_dir)
        if server is None:
            server, server_name = _node_target(config)
        token_file = data_dir / cfg.ADMIN_TOKEN_FILE
        if token is None and token_file.exists():
            token = token_file.read_text().strip()
        if roots is None and not config.plaintext:
            roots = TlsFiles(config.tls_dir).ca_cert.read_bytes()
    if server is None:
        server = DEFAULT_LISTEN
    if client_cert is not None:
        if client_key is None or roots is None:
            fail("--client-cert needs --client-key and the node's CA (--ca-file)")
        return Client(
            server,
            None,
            timeout,
            roots,
            certificate_chain=client_cert.read_bytes(),
            private_key=client_key.read_bytes(),
            server_name=server_name,
        )
    if token is None:
        fail(
            "no API token: pass --token, set CREDFED_TOKEN, or --data-dir of a node you administer"
        )
    return Client(server, token, timeout, roots, server_name=server_name)


def _connect(kw: dict[str, Any]) -> Client:
    """A client from the options every remote command takes (see _remote)."""
    return _client(
        kw["server"],
        kw["token"],
        kw["data_dir"],
        kw["timeout"],
        kw["ca_file"],
        kw["client_cert"],
        kw["client_key"],
    )


def _call(client: Client, method: Any, request: Any) -> Any:
    try:
        return client.call(method, request)
    except grpc.RpcError as exc:
        _rpc_failure(exc)


def _rpc_failure(exc: grpc.RpcError) -> NoReturn:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    fail(f"{code.name if code else 'RPC'}: {details}")


def _load_config(data_dir: Path) -> cfg.Config:
    try:
        return cfg.load(data_dir)
    except CredfedError as exc:
        fail(str(exc))


@click.group()
@click.option(
    "--log-level",
    type=click.Choice(cfg.LOG_LEVELS, case_sensitive=False),
    envvar="CREDFED_LOG_LEVEL",
    help="debug, info, warning or error (default: the node's log.level, else info).",
)
@click.pass_context
def main(ctx: click.Context, log_level: str | None) -> None:
    """credfed: a country node of the federation of vocational credential registries."""
    ctx.obj = log_level
    clog.configure(log_level or "info")


# -- local commands -------------------------------------------------------------------
@main.command()
@click.option("--country", required=True, help="ISO 3166 two-letter code of this node's country.")
@click.option("--data-dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, help="HOST:PORT to serve on.")
@click.option(
    "--federation-listen",
    default="",
    help="HOST:PORT where partners call, with mutual TLS (default: the next port).",
)
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    help="A name or address in the server certificate (repeatable; default: the listen host).",
)
@click.option(
    "--client-cert-listen",
    default="",
    help="HOST:PORT where clients may authenticate with a certificate instead of a token.",
)
@click.option(
    "--metrics-listen",
    default="",
    help="HOST:PORT for Prometheus metrics over HTTP (default: no metrics endpoint).",
)
@click.option(
    "--plaintext-dev",
    is_flag=True,
    help="No TLS: loopback development only (one port for everything).",
)
@click.option("--json", "as_json", is_flag=True)
def init(  # noqa: PLR0917 - click passes each option as an argument
    country: str,
    data_dir: Path,
    listen: str,
    federation_listen: str,
    hostnames: tuple[str, ...],
    client_cert_listen: str,
    metrics_listen: str,
    plaintext_dev: bool,
    as_json: bool,
) -> None:
    """Create a node: signing key, TLS CA and certificates (keys mode 0600),
    configuration, database, admin token."""
    from credfed.bootstrap import init_node

    try:
        cfg.check_listen(listen, plaintext=plaintext_dev)
    except CredfedError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    try:
        done = asyncio.run(
            init_node(
                data_dir,
                country,
                listen,
                plaintext=plaintext_dev,
                federation_listen=federation_listen,
                hostnames=hostnames,
                client_cert_listen=client_cert_listen,
                metrics_listen=metrics_listen,
            )
        )
    except ValidationError as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{exc.field}") from None
    except CredfedError as exc:
        fail(str(exc))
    _emit(
        as_json,
        {
            "country": done.config.country,
            "node_id": done.config.node_id,
            "key_id": done.key_id,
            "listen": listen,
            "federation_listen": done.config.federation_listen,
            "tls": not done.config.plaintext,
            "metrics_listen": done.config.metrics_listen,
            "admin_token_file": str(done.admin_token_file),
        },
        f"initialised node {done.config.node_id} ({done.config.country}) in {data_dir}\n"
        f"signing key {done.key_id}\nadmin token written to {done.admin_token_file} (mode 0600)",
    )


@main.command()
@_node_dir
@click.option("--listen", help="Override the configured HOST:PORT.")
@click.option(
    "--port-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the bound gRPC port here once serving (for port 0).",
)
@click.option(
    "--metrics-port-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the metrics endpoint's bound port (metrics.listen) here, before --port-file.",
)
@click.option(
    "--allow-unverified-restore",
    is_flag=True,
    help="A restored node: start even if a linked partner cannot be asked about its log.",
)
@click.pass_context
def serve(  # noqa: PLR0917 - click passes each option as an argument
    ctx: click.Context,
    data_dir: Path,
    listen: str | None,
    port_file: Path | None,
    metrics_port_file: Path | None,
    allow_unverified_restore: bool,
) -> None:
    """Serve the node until SIGTERM or SIGINT."""
    config = _load_config(data_dir)
    if metrics_port_file is not None and not config.metrics_listen:
        fail("--metrics-port-file: metrics.listen is not set, there is no metrics endpoint")
    # The command line's --log-level wins over the node's [log] settings.
    as_json = {"json": True, "console": False}.get(config.log_format)
    clog.configure(ctx.obj or config.log_level, json=as_json)
    try:
        # A restored node signs nothing before its partners' copies are checked.
        asyncio.run(_check_restored(config, allow_unverified_restore))
        asyncio.run(_serve(config, listen, port_file, metrics_port_file))
    except CredfedError as exc:
        fail(str(exc))


def _write_port(path: Path, port: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)  # a reader never sees it half-written


async def _serve(
    config: cfg.Config, listen: str | None, port_file: Path | None, metrics_port_file: Path | None
) -> None:
    from credfed.node import Node
    from credfed.rpc import server

    node = await Node.open(config)
    try:
        running = await server.start(node, listen)
        if metrics_port_file is not None:
            _write_port(metrics_port_file, running.metrics_port)
        if port_file is not None:
            _write_port(port_file, running.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        clog.get("credfed").info("server.stopping")
        await running.stop(grace=5.0)
    finally:
        await node.close()


@main.group("config")
def config_group() -> None:
    """The node's configuration (credfed.toml, CREDFED_<SECTION>_<NAME> variables)."""


@config_group.command("check")
@_node_dir
@click.option("--json", "as_json", is_flag=True)
def config_check(data_dir: Path, as_json: bool) -> None:
    """Validate the configuration as `credfed serve` would read it (file and
    environment), and the files the node needs: keys, TLS, database.

    Every setting NAME of [SECTION] may be overridden by the variable
    CREDFED_<SECTION>_<NAME> (e.g. CREDFED_LIMITS_RATE, CREDFED_METRICS_LISTEN);
    an entry of a table by CREDFED_<SECTION>_<TABLE>_<KEY> (e.g.
    CREDFED_LIMITS_RATE_BY_ROLE_VERIFIER, CREDFED_FEDERATION_MAX_STALENESS_BY_ORIGIN_FR).
    """
    from credfed.configcheck import check_files

    config = _load_config(data_dir)
    try:
        checked = check_files(config)
    except CredfedError as exc:
        fail(str(exc))
    overridden = "".join(f"\n  {s} = {v}" for s, v in sorted(config.sources.items()))
    _emit(
        as_json,
        {
            "ok": True,
            "config_file": str(data_dir / cfg.CONFIG_FILE),
            "settings": config.to_dict(),
            "environment": config.sources,
            "checked": checked,
        },
        f"ok: {data_dir / cfg.CONFIG_FILE} ({config.country}, {config.node_id})\n"
        + "".join(f"  {line}\n" for line in checked)
        + ("set by the environment:" + overridden if overridden else "no environment overrides"),
    )


@main.group()
def token() -> None:
    """API tokens (local to the node's data directory)."""


_DURATION = re.compile(r"([1-9][0-9]{0,6})([dhm])")
_DURATION_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
#: The longest --expires-in: ten years.
MAX_TOKEN_LIFETIME = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    """A whole number of days, hours or minutes: ``90d``, ``12h``, ``30m``
    (strictly: no sign, spaces, leading zeros, fractions or other units).
    Raises ValueError with a message for people."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: a positive whole number of days, hours "
            "or minutes, such as 90d, 12h or 30m"
        )
    duration = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if duration > MAX_TOKEN_LIFETIME:
        raise ValueError(f"{text} is longer than {MAX_TOKEN_LIFETIME.days}d (ten years)")
    return duration


def _duration_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> timedelta | None:
    try:
        return None if value is None else parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _moment(moment: datetime | None, never: str = "-") -> str:
    """A stored time for people: UTC to the second."""
    if moment is None:
        return never
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _client_status(client: ApiClient, now: datetime) -> str:
    refusal = client.refusal(now)
    return "active" if refusal is None else refusal.removeprefix("token ")


def _client_json(client: ApiClient, now: datetime) -> dict[str, Any]:
    """What may be shown of a client: never its token nor the token's hash."""

    def iso(moment: datetime | None) -> str | None:
        return None if moment is None else moment.astimezone(UTC).isoformat()

    return {
        "client_id": client.client_id,
        "name": client.name,
        "role": str(client.role),
        "status": _client_status(client, now),
        "created_at": iso(client.created_at),
        "expires_at": iso(client.expires_at),
        "revoked_at": iso(client.revoked_at),
        "partner": client.partner,
    }


@token.command("create")
@_node_dir
@click.option("--role", required=True, help="admin, verifier, peer or issuer:<issuer-id>")
@click.option("--name", required=True, help="Who the token is for (an organisation, a system).")
@click.option(
    "--partner",
    metavar="COUNTRY",
    help="With --role peer (required): the partner's country; the token then works "
    "only with a client certificate of that partner's CA.",
)
@click.option(
    "--expires-in",
    callback=_duration_option,
    metavar="DURATION",
    help="The token stops working after this long: 90d, 12h, 30m (default: never).",
)
@click.option("--json", "as_json", is_flag=True)
def token_create(  # noqa: PLR0917 - click passes each option as an argument
    data_dir: Path,
    role: str,
    name: str,
    partner: str | None,
    expires_in: timedelta | None,
    as_json: bool,
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    from credfed.bootstrap import create_client

    config = _load_config(data_dir)
    try:
        name = validation.text(name, "name")
        client, value = asyncio.run(create_client(config, role, name, expires_in, partner=partner))
    except ValidationError as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{exc.field}") from None
    except CredfedError as exc:
        fail(str(exc))
    _audit_local(config, "token create", [client.client_id])
    if as_json:
        data = {"token": value, **_client_json(client, client.created_at)}
        _emit(True, data, value)
        return
    # stdout holds the token alone (scripts capture it); the rest goes to stderr.
    click.echo(value)
    if client.expires_at is not None:
        click.echo(f"client {client.client_id}: expires {_moment(client.expires_at)}", err=True)


@token.command("list")
@_node_dir
@click.option("--json", "as_json", is_flag=True)
def token_list(data_dir: Path, as_json: bool) -> None:
    """List the node's API clients (never their tokens): id, status, role,
    created, expires, revoked, name."""
    from credfed.bootstrap import list_clients

    config = _load_config(data_dir)
    try:
        clients = asyncio.run(list_clients(config))
    except CredfedError as exc:
        fail(str(exc))
    now = datetime.now(UTC)
    rows = [
        f"{c.client_id}\t{_client_status(c, now)}\t{c.role}\tcreated {_moment(c.created_at)}"
        f"\texpires {_moment(c.expires_at, 'never')}\trevoked {_moment(c.revoked_at)}\t{c.name}"
        + (f" (partner {c.partner})" if c.partner else "")
        for c in clients
    ]
    _emit(as_json, [_client_json(c, now) for c in clients], "\n".join(rows) or "no clients")


@token.command("revoke")
@_node_dir
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def token_revoke(data_dir: Path, client_id: str, as_json: bool) -> None:
    """Revoke a client's token (see `credfed token list` for client ids).
    A running node refuses it within 5 seconds (its authentication cache);
    revoking again is harmless and keeps the first revocation time."""
    from credfed.bootstrap import revoke_client

    config = _load_config(data_dir)
    before = datetime.now(UTC)
    try:
        client = asyncio.run(revoke_client(config, client_id))
    except CredfedError as exc:
        _audit_local(config, "token revoke", [client_id], exc)
        fail(str(exc))
    _audit_local(config, "token revoke", [client.client_id])
    who = f"client {client.client_id} ({client.role}, {client.name})"
    when = _moment(client.revoked_at)
    already = client.revoked_at is not None and client.revoked_at < before
    _emit(
        as_json,
        _client_json(client, datetime.now(UTC)),
        f"{who} was already revoked at {when}" if already else f"revoked {who} at {when}",
    )


@main.group()
def peer() -> None:
    """Pairing with partner nodes."""


def _link_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--endpoint",
        help="The partner's HOST:PORT (default: the first endpoint in its descriptor).",
    )(fn)
    return click.option(
        "--token-file",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="A file holding the peer token the partner issued to this node.",
    )(fn)


@peer.command("export")
@_node_dir
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the signed descriptor here (default: stdout).",
)
@click.option("--json", "as_json", is_flag=True)
def peer_export(data_dir: Path, out: Path | None, as_json: bool) -> None:
    """Write this node's signed descriptor and print its fingerprint, which the
    partner's operator confirms out of band before pinning it."""
    from credfed.clock import utc_now
    from credfed.crypto.envelope import envelope_to_json
    from credfed.federation.descriptor import decode_descriptor, fingerprint
    from credfed.federation.local import own_descriptor

    config = _load_config(data_dir)
    try:
        envelope = own_descriptor(config, SigningKey.load(config.key_path), utc_now())
    except CredfedError as exc:
        fail(str(exc))
    descriptor = decode_descriptor(envelope.payload)
    if out is None:
        click.echo(envelope_to_json(envelope).decode())
    else:
        out.write_bytes(envelope_to_json(envelope))
    summary = {
        "country": descriptor.country,
        "node_id": descriptor.node_id,
        "version": descriptor.version,
        "fingerprint": fingerprint(envelope),
    }
    _emit(
        as_json,
        summary,
        f"descriptor of {descriptor.node_id} ({descriptor.country}) version "
        f"{descriptor.version}\nfingerprint {fingerprint(envelope)}",
    )


@peer.command("add")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--fingerprint",
    "expected",
    required=True,
    help="The fingerprint the partner's operator read to you.",
)
@_link_options
@_node_dir
@click.option("--json", "as_json", is_flag=True)
def peer_add(  # noqa: PLR0917 - click passes each option as an argument
    file: Path,
    expected: str,
    token_file: Path | None,
    endpoint: str | None,
    data_dir: Path,
    as_json: bool,
) -> None:
    """Pin a partner node by its exported descriptor and confirmed fingerprint.

    With --token-file the node also calls it (a link); without, the partner
    is trusted and its data reaches this node through linked partners.
    Restart a serving node to apply."""
    from credfed.crypto.envelope import envelope_from_json
    from credfed.federation.peers import PeerDirectory

    config = _load_config(data_dir)
    peers = PeerDirectory(data_dir, config.country)
    token = _read_token(token_file) if token_file is not None else None
    try:
        pinned = peers.add(
            envelope_from_json(file.read_bytes()), expected, token=token, endpoint=endpoint
        )
    except CredfedError as exc:
        _audit_local(config, "peer add", [], exc)
        fail(str(exc))
    d = pinned.descriptor
    _audit_local(config, "peer add", [d.country])
    linked = " and linked" if token_file is not None else ""
    _emit(
        as_json,
        _peer_dict(pinned) | {"linked": token_file is not None},
        f"pinned{linked} {d.node_id} ({d.country}) version {d.version},"
        f" fingerprint {pinned.fingerprint}",
    )


@peer.command("link")
@click.argument("country")
@_link_options
@_node_dir
def peer_link(country: str, token_file: Path | None, endpoint: str | None, data_dir: Path) -> None:
    """Call the pinned partner of COUNTRY with the peer token its operator
    issued to this node (`credfed token create --role peer` there)."""
    from credfed.federation.peers import PeerDirectory

    if token_file is None:
        raise click.UsageError("--token-file is required")
    config = _load_config(data_dir)
    try:
        link = PeerDirectory(data_dir, config.country).set_link(
            country.strip().upper(), _read_token(token_file), endpoint
        )
    except CredfedError as exc:
        _audit_local(config, "peer link", [country], exc)
        fail(str(exc))
    _audit_local(config, "peer link", [link.country])
    click.echo(f"linked {link.country} at {link.endpoint}; restart a serving node to apply")


def _read_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        fail(f"{path}: {exc.strerror}")


@peer.command("list")
@_node_dir
@click.option("--json", "as_json", is_flag=True)
def peer_list(data_dir: Path, as_json: bool) -> None:
    """The pinned partner nodes."""
    from credfed.federation.peers import PeerDirectory

    config = _load_config(data_dir)
    directory = PeerDirectory(data_dir, config.country)
    try:
        peers = directory.list()
        links = {link.country: link.endpoint for link in directory.links()}
    except CredfedError as exc:
        fail(str(exc))
    rows = [
        f"{p.descriptor.country}\t{p.descriptor.node_id}\tv{p.descriptor.version}\t"
        f"{links.get(p.descriptor.country, 'not linked (relayed)')}\t{p.fingerprint}"
        for p in peers
    ]
    _emit(
        as_json,
        [_peer_dict(p) | {"link": links.get(p.descriptor.country)} for p in peers],
        "\n".join(rows) or "no partners pinned",
    )


@peer.command("remove")
@click.argument("country")
@_node_dir
def peer_remove(country: str, data_dir: Path) -> None:
    """Stop trusting the partner of COUNTRY."""
    from credfed.federation.peers import PeerDirectory

    config = _load_config(data_dir)
    try:
        PeerDirectory(data_dir, config.country).remove(country.strip().upper())
    except CredfedError as exc:
        _audit_local(config, "peer remove", [country], exc)
        fail(str(exc))
    _audit_local(config, "peer remove", [country])
    click.echo(f"removed the {country.strip().upper()} partner")


def _peer_dict(p: Any) -> dict[str, object]:
    d = p.descriptor
    return {
        "country": d.country,
        "node_id": d.node_id,
        "version": d.version,
        "endpoints": list(d.endpoints),
        "key_ids": [k.key_id for k in d.keys],
        "fingerprint": p.fingerprint,
    }


@main.command()
@_node_dir
@click.option("--json", "as_json", is_flag=True)
def status(data_dir: Path, as_json: bool) -> None:
    """This node at a glance: serving or not, its log, its partners, per
    origin the replica size, lag (age of the newest checkpoint held) and
    last contact, health, and alarms. Reads the data directory and what the
    serving process publishes there; works whether the node runs or not."""
    from credfed.federation.status import node_status

    config = _load_config(data_dir)
    try:
        report = asyncio.run(node_status(config))
    except CredfedError as exc:
        fail(str(exc))
    _emit(as_json, report, _status_text(report))


def _status_text(report: dict[str, Any]) -> str:
    state = "serving" if report["serving"] else "NOT SERVING"
    store = "store writable" if report["store_writable"] else "STORE NOT WRITABLE"
    lines = [
        f"node {report['node_id']} ({report['country']}): {state}, log size"
        f" {report['log_size']}, checkpoint age {_age(report['checkpoint_age_seconds'])},"
        f" {store}",
        "peers:" + ("" if report["peers"] else " none pinned"),
    ]
    for p in report["peers"]:
        link = f"link {p['link']}" if p["link"] else "no link (relayed)"
        lines.append(
            f"  {p['country']}  {p['node_id']:<14} {link:<28} keys {len(p['key_ids'])}"
            f"  fingerprint {p['fingerprint'][:16]}"
        )
    if report["origins"]:
        lines.append(
            f"  {'ORIGIN':<6} {'REPLICA':>9} {'SIGNED':>9} {'LAG':>8} {'CONTACT':>9}"
            f"  {'VIA':<4} STATE"
        )
    for o in report["origins"]:
        state = "FORKED" if o["forked"] else ("stale" if o["stale"] else "ok")
        signed = "-" if o["checkpoint_size"] is None else o["checkpoint_size"]
        lines.append(
            f"  {o['origin']:<6} {o['replica_size']:>9} {signed:>9}"
            f" {_age(o['checkpoint_age_seconds']):>8} {_age(o['last_contact_age_seconds']):>9}"
            f"  {o['last_contact_via'] or '-':<4} {state}"
        )
    if report["health"]:
        lines.append(
            "health: "
            + ", ".join(
                f"{name.rsplit('.', 1)[-1]} {'SERVING' if h['serving'] else 'NOT_SERVING'}"
                for name, h in sorted(report["health"].items())
            )
        )
    lines.append("alarms:" + ("".join(f"\n  {a}" for a in report["alarms"]) or " none"))
    return "\n".join(lines)


@main.command()
@_node_dir
@click.option("--service", default="", help="A service's full name (default: the node as a whole).")
@click.option(
    "--timeout",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True, max=300),
    help="Deadline, seconds.",
)
@click.option("--json", "as_json", is_flag=True)
def health(data_dir: Path, service: str, timeout: float, as_json: bool) -> None:
    """Ask the node serving this data directory whether it is SERVING
    (grpc.health.v1 Check on server.listen): exit 0 if so, else 1. For
    container and orchestrator probes; needs no token."""
    from grpc_health.v1 import health_pb2

    config = _load_config(data_dir)
    target, server_name = _node_target(config)
    roots = None
    if not config.plaintext:
        try:
            roots = TlsFiles(config.tls_dir).ca_cert.read_bytes()
        except OSError as exc:
            fail(f"{exc.filename}: {exc.strerror} (the node's CA certificate)")
    name = f"service {service}" if service else "the node"
    with Client(target, None, timeout, roots, server_name=server_name) as client:
        try:
            res = client.call(client.health.Check, health_pb2.HealthCheckRequest(service=service))
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "RPC"
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            if code == "NOT_FOUND":
                details = "the node has no such service"
            if as_json:
                _emit(True, {"service": service, "target": target, "error": code}, "")
            fail(f"health of {name} at {target}: {code}: {details or 'no details'}")
    status_name = health_pb2.HealthCheckResponse.ServingStatus.Name(res.status)
    _emit(
        as_json,
        {"service": service, "target": target, "status": status_name},
        f"{name} at {target}: {status_name}",
    )
    if res.status != health_pb2.HealthCheckResponse.SERVING:
        fail(f"health of {name} at {target}: {status_name}")


def _node_target(config: cfg.Config) -> tuple[str, str | None]:
    """Where this machine reaches the node's main port, and the name its
    certificate must carry when that address is not one of its names (a
    node listening on 0.0.0.0 is called on loopback)."""
    try:
        host, port = cfg.split_host_port(config.listen)
    except CredfedError as exc:
        fail(str(exc))
    if port == 0:
        fail(f"server.listen: {config.listen} has no fixed port to check")
    # A wildcard bind is reached on loopback, of the same address family.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - compared
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if config.plaintext or host in config.tls_hostnames or not config.tls_hostnames:
        return target, None
    return target, config.tls_hostnames[0]


@main.command()
@_node_dir
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The backup directory to create (must not exist).",
)
@click.option("--json", "as_json", is_flag=True)
def backup(data_dir: Path, out: Path, as_json: bool) -> None:
    """Copy the node (database, configuration, keys, TLS, partners, admin
    token) to a new directory, consistently, while it serves; then check
    the copy. The backup holds secrets: it is created mode 0700."""
    from credfed import backup as bk
    from credfed.clock import utc_now

    config = _load_config(data_dir)
    try:
        done = bk.create_backup(data_dir, out, utc_now())
    except CredfedError as exc:
        _audit_local(config, "backup", [], exc)
        fail(str(exc))
    # A copy of every credential and secret left the node: on the record.
    _audit_local(config, "backup", [])
    _emit(
        as_json,
        {**done.to_dict(), "integrity": "ok"},
        f"backup of {done.country} ({done.node_id}) written to {out}: {done.files} files, "
        f"{done.bytes} bytes\nlog size {done.log.size}, root {done.log.root.hex()}; "
        "integrity ok, log matches its signed checkpoint",
    )


@main.command()
@click.argument("backup_dir", metavar="BACKUP", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The new data directory (absent or empty).",
)
@click.option("--json", "as_json", is_flag=True)
def restore(backup_dir: Path, data_dir: Path, as_json: bool) -> None:
    """Verify a backup and restore it into a new data directory. The next
    'credfed serve' asks the linked partners about the log before signing."""
    from credfed import backup as bk

    try:
        done = bk.restore_backup(backup_dir, data_dir)
    except CredfedError as exc:
        fail(str(exc))
    # The restored trail continues the backup's chain with this record.
    _audit_local(_load_config(data_dir), "restore", [])
    _emit(
        as_json,
        {**done.to_dict(), "data_dir": str(data_dir), "restore_pending": True},
        f"restored {done.country} ({done.node_id}) from the backup of {done.created_at} "
        f"into {data_dir}\nlog size {done.log.size}, root {done.log.root.hex()}\n"
        "'credfed serve' will check the partners' copies of the log before signing",
    )


async def _check_restored(config: cfg.Config, allow_unverified: bool) -> None:
    from credfed import backup as bk

    if bk.restore_pending(config.data_dir) is None:
        return
    from credfed.node import Node
    from credfed.rpc.restored import check_restored

    node = await Node.open(config)
    try:
        await check_restored(node, allow_unverified=allow_unverified)
    finally:
        await node.close()


@main.command()
@_node_dir
@click.option("--json", "as_json", is_flag=True)
def recover(data_dir: Path, as_json: bool) -> None:
    """A stopped (restored) node: take back from its linked partners the
    entries of its own log signed after the backup, so that status changes
    made since (a revocation) are not undone. Credentials issued after the
    backup are listed: their records are lost and must be issued again."""
    import time

    config = _load_config(data_dir)
    started = time.monotonic()
    try:
        done, pending = asyncio.run(_recover(config))
    except CredfedError as exc:
        _audit_local(config, "recover", [], exc)
        fail(str(exc))
    seconds = round(time.monotonic() - started, 3)
    _audit_local(config, "recover", [done.partner] if done.partner else [])
    if done.partner is None:
        lines = [
            f"nothing to recover: no linked partner holds more of {config.country}'s log "
            f"than this node (size {done.size_before})"
        ]
    else:
        applied = ", ".join(f"{status} {n}" for status, n in sorted(done.applied.items()))
        lines = [
            f"recovered {config.country}'s log from partner {done.partner}: size "
            f"{done.size_before} -> {done.size_after} "
            f"({done.size_after - done.size_before} entries) in {seconds}s",
            f"status changes applied: {applied or 'none'}",
        ]
        if done.lost:
            lines.append(
                f"{len(done.lost)} credential records lost (issued after the backup; "
                f"issue them again): {' '.join(done.lost)}"
            )
    if pending:
        first = done.unchecked[0] if done.unchecked else None
        why = f": partner {first.partner} ({first.problem})" if first else ""
        lines.append(f"restore marker kept{why}; 'credfed serve' asks the partners again")
    else:
        lines.append("the partners hold no more of the log: 'credfed serve' may start")
    _emit(
        as_json,
        {**done.to_dict(), "restore_pending": pending, "seconds": seconds},
        "\n".join(lines),
    )


async def _recover(config: cfg.Config) -> tuple[Any, bool]:
    from credfed.node import Node
    from credfed.rpc.restored import recover as recover_node

    node = await Node.open(config)
    try:
        return await recover_node(node)
    finally:
        await node.close()


@main.command()
@_remote
def purge(**kw: Any) -> None:
    """Forget the cached signed records of other countries now (admin). They
    are held in memory only and expire after federation.record_cache_ttl."""
    with _connect(kw) as client:
        res = _call(client, client.registry.PurgeCachedRecords, r.PurgeCachedRecordsRequest())
    _emit(kw["as_json"], _msg(res), f"purged {res.purged} cached records of other countries")


def _age(seconds: object) -> str:
    return f"{seconds:.0f}s" if isinstance(seconds, int | float) else "-"


@main.group("client-cert")
def client_cert() -> None:
    """Clients that authenticate with a certificate instead of a token."""


@client_cert.command("create")
@_node_dir
@click.option("--role", required=True, help="admin, verifier or issuer:<issuer-id>")
@click.option("--name", required=True, help="Who the certificate is for.")
@click.option(
    "--out-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Write client.key (0600), client.pem and the node's ca.pem here.",
)
@click.option("--expires-in", callback=_duration_option, metavar="DURATION")
@click.option("--json", "as_json", is_flag=True)
def client_cert_create(  # noqa: PLR0917 - click passes each option as an argument
    data_dir: Path,
    role: str,
    name: str,
    out_dir: Path,
    expires_in: timedelta | None,
    as_json: bool,
) -> None:
    """Issue a client certificate from this node's CA and register it; the
    holder calls the node's client-certificate port (server.client_cert_listen)
    with it instead of a token. Revoke it with `credfed token revoke ID`."""
    from credfed.bootstrap import create_certificate_client
    from credfed.files import write_private

    config = _load_config(data_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        fail(f"{out_dir} is not empty")
    try:
        client, key_pem, cert_pem = asyncio.run(
            create_certificate_client(config, role, name, expires_in)
        )
    except CredfedError as exc:
        fail(str(exc))
    _audit_local(config, "client-cert create", [client.client_id])
    write_private(out_dir / "client.key", key_pem)
    (out_dir / "client.pem").write_bytes(cert_pem)
    (out_dir / "ca.pem").write_bytes(TlsFiles(config.tls_dir).ca_cert.read_bytes())
    _emit(
        as_json,
        {"client_id": client.client_id, "role": str(client.role), "out_dir": str(out_dir)},
        f"client {client.client_id} ({client.role}): certificate in {out_dir}",
    )


@main.group()
def tls() -> None:
    """The node's TLS certificates."""


@tls.command("rotate")
@_node_dir
@click.option("--json", "as_json", is_flag=True)
def tls_rotate(data_dir: Path, as_json: bool) -> None:
    """New server and client certificates from the node's CA. A serving node
    uses them for new connections at once, without a restart; partners
    need nothing (they trust the CA from the descriptor)."""
    from credfed.clock import utc_now
    from credfed.crypto.tls import rotate_leaves, serial_of

    config = _load_config(data_dir)
    if config.plaintext:
        fail("this node runs in plaintext development mode: it has no certificates")
    files = TlsFiles(config.tls_dir)
    try:
        rotate_leaves(files, config.node_id, config.country, list(config.tls_hostnames), utc_now())
        serial = serial_of(files.read(files.server_cert))
    except CredfedError as exc:
        fail(str(exc))
    _emit(
        as_json,
        {"server_certificate_serial": f"{serial:x}"},
        f"new certificates; server serial {serial:x}",
    )


@main.group()
def key() -> None:
    """The node's signing keys."""


@key.command("rotate")
@_node_dir
@click.option("--json", "as_json", is_flag=True)
def key_rotate(data_dir: Path, as_json: bool) -> None:
    """Make a new signing key; partners accept the new descriptor because the
    old key signs it. Restart the node to sign with the new key."""
    from credfed.clock import utc_now
    from credfed.federation.descriptor import decode_descriptor, fingerprint
    from credfed.federation.local import rotate_key

    config = _load_config(data_dir)
    try:
        rotated, envelope = rotate_key(config, utc_now())
    except CredfedError as exc:
        _audit_local(config, "key rotate", [], exc)
        fail(str(exc))
    d = decode_descriptor(envelope.payload)
    new_key = d.keys[-1].key_id
    _audit_local(config, "key rotate", [new_key])
    _emit(
        as_json,
        {
            "key_id": new_key,
            "version": d.version,
            "fingerprint": fingerprint(envelope),
            "signing_key": rotated.signing_key,
        },
        f"new signing key {new_key}; descriptor version {d.version}\n"
        "restart the node (credfed serve) to sign with it",
    )


# -- issuers ------------------------------------------------------------------------------
@main.group()
def issuer() -> None:
    """Accredited issuing bodies (admin)."""


@issuer.command("add")
@click.argument("issuer_id")
@click.option("--name", required=True)
@click.option("--sector", "sectors", multiple=True, required=True, help="Repeat for each sector.")
@_remote
def issuer_add(issuer_id: str, name: str, sectors: tuple[str, ...], **kw: Any) -> None:
    """Register an issuer accredited for the given sectors."""
    with _connect(kw) as client:
        resp = _call(
            client,
            client.registry.RegisterIssuer,
            r.RegisterIssuerRequest(issuer_id=issuer_id, name=name, sectors=sectors),
        )
    _emit(kw["as_json"], _msg(resp.issuer), f"registered issuer {resp.issuer.issuer_id}")


@issuer.command("list")
@_remote
def issuer_list(**kw: Any) -> None:
    with _connect(kw) as client:
        resp = _call(client, client.registry.ListIssuers, r.ListIssuersRequest())
    rows = [
        f"{i.issuer_id}\t{r.IssuerStatus.Name(i.status).removeprefix('ISSUER_STATUS_').lower()}"
        f"\t{', '.join(i.sectors)}\t{i.name}"
        for i in resp.issuers
    ]
    _emit(kw["as_json"], [_msg(i) for i in resp.issuers], "\n".join(rows) or "no issuers")


@issuer.command("suspend")
@click.argument("issuer_id")
@_remote
def issuer_suspend(issuer_id: str, **kw: Any) -> None:
    with _connect(kw) as client:
        resp = _call(
            client, client.registry.SuspendIssuer, r.SuspendIssuerRequest(issuer_id=issuer_id)
        )
    _emit(kw["as_json"], _msg(resp.issuer), f"suspended issuer {issuer_id}")


# -- credentials --------------------------------------------------------------------------
def _draft_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option("--issuer", "issuer_id", required=True),
            click.option("--given-names", required=True),
            click.option("--family-name", required=True),
            click.option("--birth-date", required=True, help="YYYY-MM-DD"),
            click.option("--national-code", required=True),
            click.option("--title", required=True),
            click.option("--eqf-level", type=int, required=True),
            click.option("--isco", "isco_code", required=True, help="ISCO-08 unit group, 4 digits"),
            click.option("--sector", required=True),
            click.option("--issued-on", required=True, help="YYYY-MM-DD"),
            click.option("--valid-until", default="", help="YYYY-MM-DD; empty: no expiry"),
        ]
    ):
        fn = option(fn)
    return fn


def _draft_pb(kw: dict[str, Any]) -> c.CredentialDraft:
    return c.CredentialDraft(
        issuer_id=kw["issuer_id"],
        holder=c.Holder(
            given_names=kw["given_names"],
            family_name=kw["family_name"],
            birth_date=kw["birth_date"],
        ),
        qualification=c.Qualification(
            national_code=kw["national_code"],
            title=kw["title"],
            eqf_level=kw["eqf_level"],
            isco_code=kw["isco_code"],
            sector=kw["sector"],
        ),
        issued_on=kw["issued_on"],
        valid_until=kw["valid_until"],
    )


def _status_name(value: int) -> str:
    return c.CredentialStatus.Name(value).removeprefix("CREDENTIAL_STATUS_").lower()


def _receipt_text(verb: str, receipt: r.ChangeReceipt) -> str:
    cred = receipt.credential
    return (
        f"{verb} {cred.credential_id}: {_status_name(cred.status.status)}\n"
        f"log entry {receipt.entry.index}, checkpoint size {receipt.checkpoint.tree_size}"
    )


@main.command()
@_draft_options
@_remote
def issue(**kw: Any) -> None:
    """Issue one credential; prints its id."""
    with _connect(kw) as client:
        resp = _call(
            client, client.registry.IssueCredential, r.IssueCredentialRequest(draft=_draft_pb(kw))
        )
    receipt = resp.receipt
    if kw["as_json"]:
        _emit(True, _msg(receipt), "")
    else:
        click.echo(receipt.credential.credential_id)


@main.command("get")
@click.argument("credential_id")
@_remote
def get_credential(credential_id: str, **kw: Any) -> None:
    """Show a credential of this node (admin, or its issuer)."""
    with _connect(kw) as client:
        resp = _call(
            client,
            client.registry.GetCredential,
            r.GetCredentialRequest(credential_id=credential_id),
        )
    cred = resp.credential
    _emit(
        kw["as_json"],
        _msg(cred),
        f"{cred.credential_id}: {_status_name(cred.status.status)} — {cred.qualification.title}"
        f" (EQF {cred.qualification.eqf_level}, ISCO {cred.qualification.isco_code})",
    )


@main.command()
@click.argument("credential_id")
@click.option("--reason", required=True)
@click.option("--until", default="", help="YYYY-MM-DD: the suspension lapses after this day.")
@click.option("--appeal-ref", default="", help="Appeal case reference.")
@_remote
def suspend(credential_id: str, reason: str, until: str, appeal_ref: str, **kw: Any) -> None:
    """Suspend a credential."""
    req = r.SuspendCredentialRequest(
        credential_id=credential_id, reason=reason, until=until, appeal_case_ref=appeal_ref
    )
    with _connect(kw) as client:
        resp = _call(client, client.registry.SuspendCredential, req)
    _emit(kw["as_json"], _msg(resp.receipt), _receipt_text("suspended", resp.receipt))


@main.command()
@click.argument("credential_id")
@click.option("--reason", required=True)
@click.option("--appeal-ref", default="")
@_remote
def reinstate(credential_id: str, reason: str, appeal_ref: str, **kw: Any) -> None:
    """Reinstate a suspended credential (e.g. after an appeal)."""
    req = r.ReinstateCredentialRequest(
        credential_id=credential_id, reason=reason, appeal_case_ref=appeal_ref
    )
    with _connect(kw) as client:
        resp = _call(client, client.registry.ReinstateCredential, req)
    _emit(kw["as_json"], _msg(resp.receipt), _receipt_text("reinstated", resp.receipt))


@main.command()
@click.argument("credential_id")
@click.option("--reason", required=True)
@_remote
def revoke(credential_id: str, reason: str, **kw: Any) -> None:
    """Revoke a credential (terminal)."""
    req = r.RevokeCredentialRequest(credential_id=credential_id, reason=reason)
    with _connect(kw) as client:
        resp = _call(client, client.registry.RevokeCredential, req)
    _emit(kw["as_json"], _msg(resp.receipt), _receipt_text("revoked", resp.receipt))


@main.command()
@click.argument("credential_id")
@click.option("--reason", required=True, help="upgrade, specialisation_added, renewal, correction")
@_draft_options
@_remote
def supersede(credential_id: str, reason: str, **kw: Any) -> None:
    """Replace a credential by a new one (upgrade, added specialisation, renewal)."""
    req = r.SupersedeCredentialRequest(
        credential_id=credential_id, reason=reason, replacement=_draft_pb(kw)
    )
    with _connect(kw) as client:
        resp = _call(client, client.registry.SupersedeCredential, req)
    _emit(
        kw["as_json"],
        _msg(resp),
        f"{credential_id} superseded by {resp.replacement.credential_id}\n"
        f"log entry {resp.superseded.entry.index}, checkpoint size "
        f"{resp.superseded.checkpoint.tree_size}",
    )


# -- bulk import ------------------------------------------------------------------------------
def read_csv(path: Path) -> tuple[list[CredentialDraft], list[tuple[int, str]]]:
    """Validate every row; returns the drafts and the (line, error) rejections."""
    drafts: list[CredentialDraft] = []
    rejected: list[tuple[int, str]] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [col for col in CSV_COLUMNS if col not in (reader.fieldnames or [])]
        if missing:
            raise ValidationError("header", f"missing column(s): {', '.join(missing)}")
        for row in reader:
            line = reader.line_num
            try:
                level_text = (row["eqf_level"] or "").strip()
                if not level_text.isdigit():
                    raise ValidationError("eqf_level", "must be a number from 1 to 8")
                drafts.append(
                    validation.draft(
                        issuer=row["issuer_id"] or "",
                        given_names=row["given_names"] or "",
                        family_name=row["family_name"] or "",
                        birth_date=row["birth_date"] or "",
                        national_code=row["national_code"] or "",
                        title=row["title"] or "",
                        eqf_level=int(level_text),
                        isco_code=row["isco_code"] or "",
                        sector_name=row["sector"] or "",
                        issued_on=row["issued_on"] or "",
                        valid_until=row["valid_until"] or "",
                        prefix="row",
                    )
                )
            except ValidationError as exc:
                # The last part of the field path is the CSV column name.
                rejected.append((line, f"{exc.field.rsplit('.', 1)[-1]}: {exc.message}"))
    return drafts, rejected


def draft_to_pb(d: CredentialDraft) -> c.CredentialDraft:
    q = d.qualification
    return c.CredentialDraft(
        issuer_id=d.issuer_id,
        holder=c.Holder(
            given_names=d.holder.given_names,
            family_name=d.holder.family_name,
            birth_date=d.holder.birth_date.isoformat(),
        ),
        qualification=c.Qualification(
            national_code=q.national_code,
            title=q.title,
            eqf_level=q.eqf_level,
            isco_code=q.isco_code,
            sector=q.sector,
        ),
        issued_on=d.issued_on.isoformat(),
        valid_until=d.valid_until.isoformat() if d.valid_until else "",
    )


@main.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--batch-size", default=IMPORT_BATCH, show_default=True, type=click.IntRange(1, 1000))
@_remote
def import_csv(file: Path, batch_size: int, **kw: Any) -> None:
    """Issue every row of a CSV file, all or nothing.

    Every row is checked before anything is sent; any rejected row is
    reported and nothing is imported. The node commits the whole file in one
    transaction, so an interrupted import leaves nothing behind either.
    """
    try:
        drafts, rejected = read_csv(file)
    except ValidationError as exc:
        fail(f"{file}: {exc}")
    except (UnicodeDecodeError, csv.Error) as exc:
        fail(f"{file}: not a UTF-8 CSV file ({exc})")
    if rejected:
        for line, message in rejected[:50]:
            click.echo(f"{file}:{line}: {message}", err=True)
        if len(rejected) > 50:
            click.echo(f"… and {len(rejected) - 50} more", err=True)
        fail(f"{len(rejected)} of {len(rejected) + len(drafts)} rows rejected; nothing imported")
    if not drafts:
        fail(f"{file}: no rows")
    if len(drafts) > MAX_BULK_TOTAL:
        fail(
            f"{file}: {len(drafts)} rows; one import is at most {MAX_BULK_TOTAL} rows "
            "(one all-or-nothing transaction): split the file"
        )

    def batches(bar: Any) -> Iterator[r.BulkIssueCredentialsRequest]:
        for start in range(0, len(drafts), batch_size):
            chunk = drafts[start : start + batch_size]
            yield r.BulkIssueCredentialsRequest(drafts=[draft_to_pb(d) for d in chunk])
            bar.update(len(chunk))

    timeout = max(kw["timeout"], 60 + len(drafts) / 500)
    with (
        _connect(kw) as client,
        click.progressbar(length=len(drafts), label="importing", file=sys.stderr) as bar,
    ):
        try:
            resp = client.stream(client.registry.BulkIssueCredentials, batches(bar), timeout)
        except grpc.RpcError as exc:
            _import_failure(exc, file)
    _emit(
        kw["as_json"],
        {
            "imported": len(resp.credential_ids),
            "credential_ids": list(resp.credential_ids),
            "checkpoint": _msg(resp.checkpoint),
        },
        f"imported {len(resp.credential_ids)} credentials; checkpoint size "
        f"{resp.checkpoint.tree_size}",
    )


def _import_failure(exc: grpc.RpcError, file: Path) -> NoReturn:
    """Name the CSV line of a draft the node refused (drafts[i] is line i + 2)."""
    details = exc.details() if isinstance(exc, grpc.Call) else ""
    match = re.match(r"drafts\[(\d+)\]", details or "")
    if match and isinstance(exc, grpc.Call):
        line = int(match.group(1)) + 2
        fail(f"{exc.code().name}: {file}:{line}{details[match.end() :]}; nothing imported")
    _rpc_failure(exc)


# -- verification -----------------------------------------------------------------------------
def _public_keys(
    data_dir: Path | None, key_files: tuple[Path, ...], country: str | None = None
) -> dict[str, VerifyingKey] | None:
    """Keys to check an answer with: the files given, else those of the
    node's own data directory, or its pinned partner for a foreign ``country``."""
    files = list(key_files)
    if data_dir is not None and not files:
        config = _load_config(data_dir)
        if country is not None and country != config.country:
            return _pinned_keys(data_dir, config.country, country)
        files = sorted((data_dir / cfg.KEY_DIR).glob("*.pub"))
    if not files:
        return None
    keys = {}
    for path in files:
        try:
            key = VerifyingKey.from_raw(bytes.fromhex(path.read_text().strip()))
        except (OSError, ValueError, CredfedError) as exc:
            fail(f"{path}: not an Ed25519 public key in hex ({exc})")
        keys[key.key_id] = key
    return keys


def _pinned_keys(data_dir: Path, own: str, country: str) -> dict[str, VerifyingKey] | None:
    """Every key of the partner descriptor this node pinned for ``country``."""
    from credfed.federation.descriptor import all_keys
    from credfed.federation.peers import PeerDirectory

    try:
        peers = PeerDirectory(data_dir, own).list()
    except CredfedError as exc:
        fail(str(exc))
    for p in peers:
        if p.descriptor.country == country:
            return all_keys(p.descriptor)
    return None


@main.command()
@click.argument("credential_id")
@click.option("--birth-date", help="The holder's birth date, YYYY-MM-DD.")
@click.option("--family-name", help="The holder's family name.")
@click.option(
    "--public-key",
    "key_files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The origin's public key (hex file) to check signatures with.",
)
@_remote
def verify(
    credential_id: str,
    birth_date: str | None,
    family_name: str | None,
    key_files: tuple[Path, ...],
    **kw: Any,
) -> None:
    """Verify a credential with one holder attribute, and check the answer's
    proof independently of the node."""
    from credfed.independent import check_answer

    if (birth_date is None) == (family_name is None):
        raise click.UsageError("give exactly one of --birth-date or --family-name")
    req = v.VerifyRequest(credential_id=credential_id)
    if birth_date is not None:
        req.birth_date = birth_date
    else:
        req.family_name = family_name or ""
    keys = _public_keys(kw["data_dir"], key_files, credential_id.strip()[:2].upper())
    with _connect(kw) as client:
        res = _call(client, client.verification.Verify, req).result
    try:
        checked = check_answer(
            credential_id=res.credential_id,
            record=_envelope(res.signed_record),
            leaf=res.status_entry.leaf,
            leaf_index=res.status_entry.index,
            proof=list(res.inclusion_proof.hashes),
            checkpoint=_envelope(res.checkpoint.envelope),
            origin=res.provenance.origin,
            keys=keys,
        )
    except CredfedError as exc:
        fail(f"the node's answer does not check out: {exc}")
    sigs = "checked" if checked.signatures_checked else "not checked (no --public-key)"
    data = _msg(res) | {"independent_check": {"inclusion_proof": "verified", "signatures": sigs}}
    q = res.qualification
    _emit(
        kw["as_json"],
        data,
        f"{res.credential_id}: {_status_name(res.status).upper()}\n"
        f"holder:        {res.holder.given_names} {res.holder.family_name}\n"
        f"qualification: {q.title} [{q.national_code}] EQF {q.eqf_level}, ISCO-08 {q.isco_code}"
        f" ({res.labels.isco_label}), {res.labels.sector_label}\n"
        f"issuer:        {res.issuer_name} ({res.issuer_id})\n"
        f"valid:         {res.issued_on} – {res.valid_until or 'no expiry'}\n"
        f"status as of:  {res.provenance.status_as_of.ToDatetime():%Y-%m-%d %H:%M:%S} UTC "
        f"(origin {res.provenance.origin}, log size {checked.tree_size})\n"
        f"provenance:    {_provenance(res.provenance)}\n"
        f"recognition:   {_decision_text(res.recognition)}\n"
        f"proof:         inclusion verified; signatures {sigs}",
    )


def _provenance(p: v.Provenance) -> str:
    source = v.StatusSource.Name(p.source).removeprefix("STATUS_SOURCE_").lower()
    parts = [
        f"status from {source.replace('_', ' ')}",
        f"data age {p.data_age_seconds}s",
        "origin signature checked by the node" if p.signature_checked else "signed by this node",
    ]
    if p.record_cached:
        parts.append("record from the node's cache")
    return ", ".join(parts)


def _envelope(pb: c.Envelope) -> Any:
    from credfed.models import Envelope

    return Envelope(pb.payload, pb.payload_type, pb.key_id, pb.signature)


# -- recognition rules ---------------------------------------------------------------------------
@main.group()
def recognition() -> None:
    """This node's recognition rules, and where a credential is recognised."""


_OUTCOMES = {
    "full": rc.RECOGNITION_OUTCOME_FULL,
    "conditional": rc.RECOGNITION_OUTCOME_CONDITIONAL,
    "not_recognised": rc.RECOGNITION_OUTCOME_NOT_RECOGNISED,
}
#: Keys of a rule in an import file (TOML ``[[rule]]`` tables).
_RULE_KEYS = {
    "rule_id": str, "origin": str, "national_code": str, "eqf_min": int, "eqf_max": int,
    "isco_prefix": str, "sector": str, "outcome": str, "local_occupation": str,
    "local_code": str, "aptitude_test": bool, "adaptation_period_months": int,
    "language_level": str, "supervised_practice_months": int, "legal_basis": str,
    "valid_from": str, "valid_until": str,
}  # fmt: skip
_KIND_NAMES = {str: "text", int: "a whole number", bool: "true or false"}
_CONDITION_KEYS = (
    "aptitude_test",
    "adaptation_period_months",
    "language_level",
    "supervised_practice_months",
)


def _rule_pb(values: dict[str, Any], where: str) -> rc.RecognitionRule:
    """A rule message from plain values (CLI options or a file's table)."""
    for name, value in values.items():
        kind = _RULE_KEYS.get(name)
        if kind is None:
            fail(f"{where}: unknown key {name!r}")
        if value is not None and (type(value) is not kind):
            fail(f"{where}: {name} must be {_KIND_NAMES[kind]}")
    outcome = str(values.get("outcome") or "")
    if outcome not in _OUTCOMES:
        fail(f"{where}: outcome must be one of {', '.join(_OUTCOMES)}")
    plain = {
        k: v
        for k, v in values.items()
        if v is not None and k not in _CONDITION_KEYS and k != "outcome"
    }
    rule = rc.RecognitionRule(outcome=_OUTCOMES[outcome], **plain)
    for k in _CONDITION_KEYS:
        if values.get(k) is not None:
            setattr(rule.conditions, k, values[k])
    return rule


def _rule_line(rule: rc.RecognitionRule) -> str:
    match = (
        f"national code {rule.national_code}"
        if rule.national_code
        else f"EQF {rule.eqf_min}-{rule.eqf_max}"
        + (f", ISCO {rule.isco_prefix}" if rule.isco_prefix else "")
        + (f", {rule.sector}" if rule.sector else "")
    )
    outcome = rc.RecognitionOutcome.Name(rule.outcome).removeprefix("RECOGNITION_OUTCOME_")
    until = rule.valid_until or "open-ended"
    return (
        f"{rule.rule_id} v{rule.version}  {rule.origin}: {match} -> {outcome.lower()}"
        f" {rule.local_occupation!r} ({rule.valid_from} – {until})"
    )


@recognition.command("add")
@click.option("--rule-id", required=True, help="A slug; an existing id gets a new version.")
@click.option("--origin", required=True, help="Country whose qualifications the rule covers.")
@click.option("--national-code", help="Match the origin's national qualification code...")
@click.option("--eqf-min", type=int, help="...or criteria: EQF level range,")
@click.option("--eqf-max", type=int)
@click.option("--isco", "isco_prefix", help="ISCO-08 code or prefix (1-4 digits),")
@click.option("--sector", help="and sector.")
@click.option("--outcome", required=True, type=click.Choice(sorted(_OUTCOMES)))
@click.option("--local-occupation", default="", help="The local occupation or licence.")
@click.option("--local-code")
@click.option("--aptitude-test", is_flag=True, default=None)
@click.option("--adaptation-months", "adaptation_period_months", type=int)
@click.option("--language-level", help="CEFR, e.g. B1.")
@click.option("--supervised-months", "supervised_practice_months", type=int)
@click.option("--legal-basis", required=True)
@click.option("--valid-from", required=True, help="YYYY-MM-DD")
@click.option("--valid-until", help="YYYY-MM-DD")
@_remote
def recognition_add(**kw: Any) -> None:
    """Add a recognition rule (or its next version), signed by this node."""
    values = {k: kw.pop(k) for k in list(kw) if k in _RULE_KEYS}
    rule = _rule_pb(values, "options")
    with _connect(kw) as client:
        res = _call(
            client, client.registry.AddRecognitionRule, r.AddRecognitionRuleRequest(rule=rule)
        )
    _emit(kw["as_json"], _msg(res.rule), "added " + _rule_line(res.rule))


@recognition.command("list")
@_remote
def recognition_list(**kw: Any) -> None:
    """This node's current recognition rules."""
    with _connect(kw) as client:
        res = _call(client, client.registry.ListRecognitionRules, r.ListRecognitionRulesRequest())
    lines = [_rule_line(rule) for rule in res.rules]
    _emit(kw["as_json"], [_msg(x) for x in res.rules], "\n".join(lines) or "no rules")


@recognition.command("remove")
@click.argument("rule_id")
@_remote
def recognition_remove(rule_id: str, **kw: Any) -> None:
    """Withdraw a rule (a signed tombstone; the history is kept)."""
    with _connect(kw) as client:
        res = _call(
            client,
            client.registry.RemoveRecognitionRule,
            r.RemoveRecognitionRuleRequest(rule_id=rule_id),
        )
    _emit(kw["as_json"], _msg(res.rule), f"withdrew {rule_id} (version {res.rule.version})")


@recognition.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_remote
def recognition_import(file: Path, **kw: Any) -> None:
    """Add the rules of a TOML file of [[rule]] tables, all or nothing."""
    import tomllib

    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        fail(f"{file}: {exc}")
    tables = data.get("rule")
    if (
        set(data) != {"rule"}
        or not isinstance(tables, list)
        or not tables
        or not all(isinstance(t, dict) for t in tables)
    ):
        fail(f"{file}: expected [[rule]] tables and nothing else")
    rules = [_rule_pb(t, f"{file}: rule {n + 1}") for n, t in enumerate(tables)]
    with _connect(kw) as client:
        res = _call(
            client,
            client.registry.ImportRecognitionRules,
            r.ImportRecognitionRulesRequest(rules=rules),
        )
    lines = [_rule_line(rule) for rule in res.rules]
    _emit(
        kw["as_json"],
        [_msg(x) for x in res.rules],
        f"imported {len(lines)} rules\n" + "\n".join(lines),
    )


@recognition.command("where")
@click.argument("credential_id")
@click.option("--birth-date", help="The holder's birth date, YYYY-MM-DD.")
@click.option("--family-name", help="The holder's family name.")
@_remote
def recognition_where(
    credential_id: str, birth_date: str | None, family_name: str | None, **kw: Any
) -> None:
    """Where is this credential recognised, and as what? This node's decision
    and every partner's whose rules it holds."""
    if (birth_date is None) == (family_name is None):
        raise click.UsageError("give exactly one of --birth-date or --family-name")
    req = v.WhereRecognisedRequest(credential_id=credential_id)
    if birth_date is not None:
        req.birth_date = birth_date
    else:
        req.family_name = family_name or ""
    with _connect(kw) as client:
        res = _call(client, client.verification.WhereRecognised, req)
    lines = [f"{res.credential_id}:"] + [f"  {_decision_text(d)}" for d in res.decisions]
    _emit(kw["as_json"], _msg(res), "\n".join(lines))


def _decision_text(d: rc.RecognitionDecision) -> str:
    outcome = rc.RecognitionOutcome.Name(d.outcome).removeprefix("RECOGNITION_OUTCOME_").lower()
    text = f"{d.country}: {outcome.replace('_', ' ')}"
    if d.local_occupation:
        text += f" as {d.local_occupation!r}"
    c = d.conditions
    measures = [
        *(["aptitude test"] if c.aptitude_test else []),
        *(
            [f"{c.adaptation_period_months}-month adaptation period"]
            if c.adaptation_period_months
            else []
        ),
        *([f"language level {c.language_level}"] if c.language_level else []),
        *(
            [f"{c.supervised_practice_months} months supervised practice"]
            if c.supervised_practice_months
            else []
        ),
    ]
    if measures:
        text += " — " + ", ".join(measures)
    if d.rule_id:
        text += f" [rule {d.rule_id} v{d.rule_version}; {d.legal_basis}]"
    return text


# -- the audit trail ----------------------------------------------------------------------------
#: Records read per page by audit verify and export (the trail can be long).
AUDIT_PAGE = 1000


def _audit_local(
    config: cfg.Config, action: str, subject: list[str], error: CredfedError | None = None
) -> None:
    """Record a local change (pairing, keys) in the node's audit trail, in
    its own transaction: a serving node's batches queue behind it on the
    database lock. A record that cannot be written is reported, never silent."""
    from credfed import audit
    from credfed.rpc.errors import status_for

    # Keys and clients are named by their ids; pairings by the partner's country.
    by_id = action.startswith(("key", "token", "client-cert"))
    clean = audit.key_subject if by_id else audit.country_subject
    entry = audit.local_entry(
        action,
        [clean(s) for s in subject],
        "OK" if error is None else status_for(error).name,
        config.country,
    )
    try:
        asyncio.run(_append_audit(config, entry))
    except CredfedError as exc:
        message = f"{action}: the audit record could not be written: {exc}"
        if error is None:
            fail(message + " (the change itself was made)")
        click.echo(f"error: {message}", err=True)


async def _append_audit(config: cfg.Config, entry: Any) -> None:
    from credfed.storage.sqlite import SqliteStore

    store = await SqliteStore.open(config.db_path)
    try:
        await store.append_audit([entry])
    finally:
        await store.close()


@main.group("audit")
def audit_group() -> None:
    """The node's audit trail: who verified, looked up, issued or changed
    what, and when (local: reads the data directory; works while serving)."""


@audit_group.command("verify")
@_node_dir
@click.option("--json", "as_json", is_flag=True)
def audit_verify(data_dir: Path, as_json: bool) -> None:
    """Check the hash chain of every record, and that the subject index
    `credfed access-log` reads matches them. Exit 1 naming the first broken
    record. Records cut off the end leave no break: compare the head hash
    printed here with one noted earlier."""
    config = _load_config(data_dir)
    try:
        checker, index_problem = asyncio.run(_audit_check(config))
    except CredfedError as exc:
        fail(str(exc))
    broken = checker.broken
    data = {
        "records": checker.count,
        "head": checker.head.hex(),
        "intact": broken is None and index_problem is None,
        "broken_seq": None if broken is None else broken.seq,
        "problem": broken.problem if broken is not None else index_problem,
    }
    if as_json and not data["intact"]:
        _emit(True, data, "")
        raise click.exceptions.Exit(1)
    if broken is not None:
        fail(
            f"audit chain broken at record {broken.seq}: {broken.problem}"
            f" ({checker.count} records before it verified)"
        )
    if index_problem is not None:
        fail(f"audit chain intact, but {index_problem}")
    _emit(
        as_json,
        data,
        f"{checker.count} records, chain intact\nhead {checker.head.hex()}",
    )


async def _audit_check(config: cfg.Config) -> tuple[Any, str | None]:
    from credfed.audit import ChainChecker
    from credfed.storage.sqlite import SqliteStore

    store = await SqliteStore.open(config.db_path)
    try:
        checker = ChainChecker()
        after = 0
        while checker.broken is None:
            page = await store.audit_records(after, AUDIT_PAGE)
            if not page:
                break
            for record in page:
                if checker.check(record) is not None:
                    break
            after = page[-1].seq
        problem = None if checker.broken else await store.audit_index_problem()
        return checker, problem
    finally:
        await store.close()


@audit_group.command("export")
@_node_dir
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the records here, mode 0600 (default: stdout).",
)
def audit_export(data_dir: Path, out: Path | None) -> None:
    """Every record as JSON lines: one record a line, in seq order, the
    hashed fields plus prev_hash and hash in hex."""
    config = _load_config(data_dir)
    try:
        if out is None:
            count = asyncio.run(_audit_export(config, click.echo))
        else:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                count = asyncio.run(_audit_export(config, lambda line: f.write(line + "\n")))
    except BrokenPipeError:
        raise  # stdout's reader left (`| head`): click ends quietly
    except OSError as exc:
        fail(f"{out}: {exc.strerror}")
    except CredfedError as exc:
        fail(str(exc))
    if out is not None:
        click.echo(f"exported {count} records to {out}", err=True)


async def _audit_export(config: cfg.Config, write: Callable[[str], object]) -> int:
    from credfed.audit import record_to_json
    from credfed.storage.sqlite import SqliteStore

    store = await SqliteStore.open(config.db_path)
    try:
        count, after = 0, 0
        while page := await store.audit_records(after, AUDIT_PAGE):
            for record in page:
                write(json.dumps(record_to_json(record), sort_keys=True, ensure_ascii=False))
            count += len(page)
            after = page[-1].seq
        return count
    finally:
        await store.close()


@main.command("access-log")
@click.argument("credential_id")
@_node_dir
@click.option("--json", "as_json", is_flag=True)
def access_log(credential_id: str, data_dir: Path, as_json: bool) -> None:
    """Who checked CREDENTIAL_ID at this node, and when: the organisation
    (client name), its role and country (for a partner's lookup, the partner
    country), the action and its outcome; also its issuance and status
    changes. What the holder is entitled to see (local: reads the data
    directory; works while serving)."""
    from credfed import ids
    from credfed.audit import format_time, record_hash

    try:
        cid = ids.parse_credential_id(credential_id)
    except ValidationError as exc:
        raise click.BadParameter(exc.message, param_hint="CREDENTIAL_ID") from None
    config = _load_config(data_dir)
    try:
        records = asyncio.run(_audit_about(config, cid))
    except CredfedError as exc:
        fail(str(exc))
    for rec in records:
        if rec.hash != record_hash(rec.prev_hash, rec.seq, rec):
            fail(f"audit record {rec.seq} does not match its hash: run `credfed audit verify`")
    rows = [
        {
            "seq": rec.seq,
            "at": format_time(rec.at),
            "action": rec.action,
            "organisation": rec.client_name,
            "client_id": rec.client_id,
            "role": rec.role,
            "country": rec.country,
            "outcome": rec.outcome,
        }
        for rec in records
    ]
    lines = [f"{cid}: {len(rows)} record(s) at this node ({config.country})"]
    for row in rows:
        who = row["organisation"] or "(unknown caller)"
        where = ", ".join(str(x) for x in (row["role"], row["country"]) if x)
        lines.append(
            f"{str(row['at'])[:19].replace('T', ' ')} UTC  {row['action']:<22} "
            f"{who} ({where})  {row['outcome']}"
        )
    _emit(as_json, {"credential_id": cid, "records": rows}, "\n".join(lines))


async def _audit_about(config: cfg.Config, subject: str) -> list[Any]:
    from credfed.storage.sqlite import SqliteStore

    store = await SqliteStore.open(config.db_path)
    try:
        return await store.audit_records_about(subject)
    finally:
        await store.close()


# -- the status log -----------------------------------------------------------------------------
@main.group("log")
def log_group() -> None:
    """The node's signed status log."""


@log_group.command("checkpoint")
@_remote
def log_checkpoint(**kw: Any) -> None:
    """Print the latest signed checkpoint."""
    with _connect(kw) as client:
        cp = _call(client, client.verification.GetCheckpoint, v.GetCheckpointRequest()).checkpoint
    _emit(
        kw["as_json"],
        _msg(cp),
        f"origin {cp.origin}, size {cp.tree_size}, root {cp.root_hash.hex()}, "
        f"time {cp.timestamp.ToDatetime():%Y-%m-%dT%H:%M:%S.%f}Z\n"
        f"signed by key {cp.envelope.key_id}\n" + cp.envelope.payload.decode(),
    )


@log_group.command("proof")
@click.option("--old-size", type=click.IntRange(min=1), required=True)
@click.option("--new-size", type=click.IntRange(min=0), default=0, help="0: the latest.")
@click.option(
    "--public-key",
    "key_files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
)
@_remote
def log_proof(old_size: int, new_size: int, key_files: tuple[Path, ...], **kw: Any) -> None:
    """Fetch and verify a consistency proof: the log of old size is a prefix
    of the log of new size (nothing was rewritten)."""
    keys = _public_keys(kw["data_dir"], key_files)
    with _connect(kw) as client:
        old = _call(
            client,
            client.verification.GetConsistencyProof,
            v.GetConsistencyProofRequest(old_size=old_size, new_size=old_size),
        )
        resp = _call(
            client,
            client.verification.GetConsistencyProof,
            v.GetConsistencyProofRequest(old_size=old_size, new_size=new_size),
        )
    if not old.HasField("checkpoint") or not resp.HasField("checkpoint"):
        fail("no signed checkpoint was published at one of these sizes")
    try:
        olds = _checkpoint(old.checkpoint, keys)
        news = _checkpoint(resp.checkpoint, keys)
        merkle.verify_consistency(
            olds.tree_size, news.tree_size, olds.root_hash, news.root_hash, list(resp.proof.hashes)
        )
    except CredfedError as exc:
        fail(f"consistency proof does not verify: {exc}")
    _emit(
        kw["as_json"],
        {
            "old_size": olds.tree_size,
            "new_size": news.tree_size,
            "hashes": [h.hex() for h in resp.proof.hashes],
            "verified": True,
            "signatures_checked": keys is not None,
        },
        f"consistent: size {olds.tree_size} -> {news.tree_size} "
        f"({len(resp.proof.hashes)} hashes), proof verified",
    )


def _checkpoint(pb: c.SignedCheckpoint, keys: dict[str, VerifyingKey] | None) -> Any:
    env = _envelope(pb.envelope)
    if keys is None:
        return decode_checkpoint(env.payload)
    return verify_checkpoint(env, keys, pb.origin).checkpoint


if __name__ == "__main__":  # pragma: no cover
    main()
