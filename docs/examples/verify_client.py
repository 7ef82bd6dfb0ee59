"""Verify credentials at a credfed node: an example for employers' HR systems.

Needs only grpcio, protobuf and stubs generated from the node's proto files
(see docs/integration-guide.md, "Python")::

    python -m grpc_tools.protoc -Iproto --python_out=stubs --grpc_python_out=stubs \
        proto/credfed/v1/*.proto
    PYTHONPATH=stubs python verify_client.py --birth-date 1994-03-17 DE-4BZZ-DGV4-VNTW-6

Settings (an argument wins over the environment variable):

    --node HOST:PORT         CREDFED_NODE         the node's client port
    --ca-file FILE           CREDFED_CA_FILE      the node's CA certificate
    --token-file FILE        CREDFED_TOKEN_FILE   a verifier token (or CREDFED_TOKEN)
    --client-cert/--client-key FILE               a client certificate instead of a
                                                  token (the node's client-cert port)

Every call has a deadline (--timeout). UNAVAILABLE and RESOURCE_EXHAUSTED are
retried (--attempts in all), after the server's ``retry-after-ms`` trailer
when it sends one; every other status is final. Only what the caller passed
(the id) and what the credential certifies are printed: never the holder's
name or birth date from the answer.

Exit status: 0 every credential is valid now (ACTIVE or REINSTATED), 1 at
least one is not (or was not found), 2 a call failed or the input is bad.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from credfed.v1 import common_pb2, recognition_pb2, verification_pb2, verification_pb2_grpc

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
RETRY_AFTER = "retry-after-ms"
#: Statuses under which the worker may work as the credential says.
VALID = ("ACTIVE", "REINSTATED")


class Failed(Exception):
    """A call that ended with a status other than OK or NOT_FOUND."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Verify credentials at a credfed node.")
    parser.add_argument("credential_ids", nargs="+", metavar="CREDENTIAL_ID")
    holder = parser.add_mutually_exclusive_group(required=True)
    holder.add_argument("--birth-date", help="the holder's birth date, YYYY-MM-DD")
    holder.add_argument("--family-name", help="the holder's family name")
    parser.add_argument("--node", default=env("CREDFED_NODE"), help="HOST:PORT")
    parser.add_argument("--ca-file", default=env("CREDFED_CA_FILE"), type=Path)
    parser.add_argument("--token-file", default=env("CREDFED_TOKEN_FILE"), type=Path)
    parser.add_argument("--client-cert", type=Path, help="PEM client certificate")
    parser.add_argument("--client-key", type=Path, help="PEM private key of --client-cert")
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline per call, s")
    parser.add_argument("--attempts", type=int, default=4, help="tries per credential")
    args = parser.parse_args(argv)
    if not args.node:
        parser.error("--node (or CREDFED_NODE) is required: the node's HOST:PORT")
    if args.ca_file is None:
        parser.error("--ca-file (or CREDFED_CA_FILE) is required: the node's CA certificate")
    if (args.client_cert is None) != (args.client_key is None):
        parser.error("--client-cert and --client-key go together")
    if not 0 < args.timeout <= 300:
        parser.error("--timeout must be between 0 and 300 seconds")
    if not 1 <= args.attempts <= 20:
        parser.error("--attempts must be between 1 and 20")
    return args


def _token(args: argparse.Namespace) -> str | None:
    if args.client_cert is not None:
        return None  # the certificate is the credential
    if args.token_file is not None:
        return str(args.token_file.read_text(encoding="utf-8").strip())
    token = os.environ.get("CREDFED_TOKEN", "").strip()
    if not token:
        raise ValueError("no token: set --token-file, CREDFED_TOKEN_FILE or CREDFED_TOKEN")
    return token


def _channel(args: argparse.Namespace) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=args.ca_file.read_bytes(),
        private_key=args.client_key.read_bytes() if args.client_key else None,
        certificate_chain=args.client_cert.read_bytes() if args.client_cert else None,
    )
    return grpc.secure_channel(args.node, credentials)


def _wait_ms(error: grpc.Call, attempt: int) -> int | None:
    """Milliseconds to wait before the next try, or None: do not retry."""
    code = error.code()
    if code not in RETRYABLE:
        return None
    for key, value in error.trailing_metadata() or ():
        if key == RETRY_AFTER:
            return max(1, int(value))
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None  # e.g. a batch above the burst: waiting does not help
    # UNAVAILABLE without a hint: exponential backoff with jitter.
    return int(min(8000, 250 * 2**attempt) * random.uniform(0.5, 1.0))  # noqa: S311


def verify(
    stub: Any,
    request: verification_pb2.VerifyRequest,
    metadata: tuple[tuple[str, str], ...],
    timeout: float,
    attempts: int,
) -> verification_pb2.VerificationResult | None:
    """The answer, or None for NOT_FOUND. Retries as described above."""
    for attempt in range(attempts):
        try:
            response = stub.Verify(request, metadata=metadata, timeout=timeout)
        except grpc.RpcError as exc:
            error: grpc.Call = exc  # the sync stubs raise RpcErrors that are Calls
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            wait = _wait_ms(error, attempt)
            if wait is None or attempt + 1 == attempts:
                raise Failed(error.code(), str(error.details())) from None
            print(f"  {error.code().name}; retrying in {wait} ms", file=sys.stderr)
            time.sleep(wait / 1000)
        else:
            result: verification_pb2.VerificationResult = response.result
            return result
    raise AssertionError("unreachable")  # the loop returns or raises


def _name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix)


def status_name(result: verification_pb2.VerificationResult) -> str:
    return _name(common_pb2.CredentialStatus, result.status, "CREDENTIAL_STATUS_")


def describe(result: verification_pb2.VerificationResult) -> list[str]:
    status = status_name(result)
    p = result.provenance
    q = result.qualification
    r = result.recognition
    lines = [
        f"{result.credential_id}: {status}",
        f"  qualification: {q.title} (EQF {q.eqf_level}, ISCO-08 {q.isco_code}),"
        f" issued by {result.issuer_name}",
        f"  provenance: origin {p.origin}, source"
        f" {_name(verification_pb2.StatusSource, p.source, 'STATUS_SOURCE_')},"
        f" status as of {p.status_as_of.ToJsonString()} (age {p.data_age_seconds} s),"
        f" signature checked by this node: {'yes' if p.signature_checked else 'no'},"
        f" record from cache: {'yes' if p.record_cached else 'no'}",
        f"  recognition in {r.country}: "
        + _name(recognition_pb2.RecognitionOutcome, r.outcome, "RECOGNITION_OUTCOME_")
        + (f" as {r.local_occupation!r} (rule {r.rule_id} v{r.rule_version})" if r.rule_id else ""),
    ]
    if status == "UNKNOWN":
        lines.append("  status unknown: the data is too old to vouch for; not valid, ask again")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    try:
        token = _token(args)
        channel = _channel(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    valid = True
    with channel:
        stub = verification_pb2_grpc.VerificationServiceStub(channel)
        for credential_id in args.credential_ids:
            request = verification_pb2.VerifyRequest(credential_id=credential_id)
            if args.birth_date is not None:
                request.birth_date = args.birth_date
            else:
                request.family_name = args.family_name
            try:
                result = verify(stub, request, metadata, args.timeout, args.attempts)
            except Failed as exc:
                print(f"{credential_id}: error {exc}", file=sys.stderr)
                return 2
            if result is None:
                # An unknown id and a wrong holder attribute look the same.
                print(f"{credential_id}: NOT_FOUND (no credential matches this id and attribute)")
                valid = False
                continue
            print("\n".join(describe(result)))
            valid = valid and status_name(result) in VALID
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
