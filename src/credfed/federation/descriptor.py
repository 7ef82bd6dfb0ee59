"""Node descriptors: who a partner node is and which keys speak for it.

A descriptor names a country's node, where to reach it, the TLS CA its
certificates chain to, and its Ed25519 signing keys, each valid for a period.
The first descriptor of a partner arrives out of band and is pinned by a
fingerprint the two operators compare; later ones arrive in band and are
accepted only if signed by a key the partner already trusts and only with a
higher version (:func:`accept_update`).

The payload is canonical JSON, and decoding insists on the canonical form, so
a descriptor has exactly one spelling: its fingerprint names its meaning.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, replace
from datetime import datetime

from credfed.canonical import EPOCH, MAX_MILLIS, ONE_MS, Strict, canonical_json
from credfed.crypto.envelope import DESCRIPTOR_TYPE, MAX_PAYLOAD, sign_envelope, verify_envelope
from credfed.crypto.keys import RAW_KEY_SIZE, SigningKey, VerifyingKey, key_id_for
from credfed.errors import (
    DescriptorMismatchError,
    DescriptorRollbackError,
    FingerprintMismatchError,
    PreconditionError,
    SignatureError,
    UntrustedSignerError,
)
from credfed.ids import is_country_code
from credfed.models import Envelope

MAX_ENDPOINTS = 16
MAX_KEYS = 16
MAX_TLS_CA_CERT = 16 * 1024
MAX_VERSION = 2**63 - 1  # stored as an SQLite integer

_D = Strict("descriptor")

_TOP_FIELDS = frozenset(
    {"country", "node_id", "endpoints", "keys", "tls_ca_cert", "version", "issued_at"}
)
_KEY_FIELDS = frozenset({"key_id", "public_key", "not_before", "not_after"})
_NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
_KEY_ID_RE = re.compile(r"[0-9a-f]{32}", re.ASCII)
_PUBLIC_KEY_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
# A DNS name or IPv4 address, or a bracketed IPv6 address; then a port.
_ENDPOINT_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r":([1-9][0-9]{0,4})",
    re.ASCII,
)
# The shape of a PEM bundle only; the TLS layer parses the certificates.
_PEM_RE = re.compile(
    r"(?:-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?)+",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """A signing key of a node. It may sign statements timestamped within
    ``[not_before, not_after]`` (both inclusive; ``None``: open-ended)."""

    key_id: str
    public_key: VerifyingKey
    not_before: datetime
    not_after: datetime | None

    def valid_at(self, moment: datetime) -> bool:
        return self.not_before <= moment and (self.not_after is None or moment <= self.not_after)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """What a partner needs to know about a node, as the node signed it."""

    country: str
    node_id: str
    endpoints: tuple[str, ...]
    keys: tuple[KeyEntry, ...]
    tls_ca_cert: str
    version: int
    issued_at: datetime


# -- encoding -----------------------------------------------------------------


def encode_descriptor(d: Descriptor) -> bytes:
    """The exact bytes to sign. Times are truncated to milliseconds.

    Validates everything :func:`decode_descriptor` checks, so a node can never
    sign a descriptor its partners would refuse to parse.
    """
    _check_identity(d)
    _check_endpoints(d.endpoints)
    _check_tls_ca_cert(d.tls_ca_cert)
    if not 1 <= d.version <= MAX_VERSION:
        _D.fail(f"version {d.version} is out of range (1..{MAX_VERSION})")
    return canonical_json(
        {
            "country": d.country,
            "node_id": d.node_id,
            "endpoints": list(d.endpoints),
            "keys": _encode_keys(d.keys),
            "tls_ca_cert": d.tls_ca_cert,
            "version": d.version,
            "issued_at": _to_millis("issued_at", d.issued_at),
        }
    )


def decode_descriptor(payload: bytes) -> Descriptor:
    """Parse ``payload`` strictly; any flaw is a ValidationError("descriptor")."""
    obj = _D.load(payload, MAX_PAYLOAD)
    _D.exact("the object", obj, _TOP_FIELDS)
    d = Descriptor(
        country=_D.string(obj["country"], "country"),
        node_id=_D.string(obj["node_id"], "node_id"),
        endpoints=tuple(
            _D.string_item(e, "endpoints")
            for e in _D.array(obj["endpoints"], "endpoints", MAX_ENDPOINTS)
        ),
        keys=tuple(_decode_key(k) for k in _D.array(obj["keys"], "keys", MAX_KEYS)),
        tls_ca_cert=_D.string(obj["tls_ca_cert"], "tls_ca_cert"),
        version=_D.integer(obj["version"], "version"),
        issued_at=_D.moment(obj["issued_at"], "issued_at"),
    )
    # One spelling per descriptor: anything the encoder would write differently
    # (escapes, key order, whitespace) is refused.
    if encode_descriptor(d) != payload:
        _D.fail("not in canonical form")
    return d


def sign_descriptor(key: SigningKey, d: Descriptor) -> Envelope:
    return sign_envelope(key, DESCRIPTOR_TYPE, encode_descriptor(d))


# -- fingerprints ---------------------------------------------------------------


def fingerprint(envelope: Envelope) -> str:
    """SHA-256 of the exact payload bytes, 64 lower-case hex characters.

    Only the payload: the signature is not part of what the operators compare,
    and the payload already names every key that may sign it.
    """
    return hashlib.sha256(bytes(envelope.payload)).hexdigest()


def fingerprints_match(expected: str, envelope: Envelope) -> bool:
    """Compare an operator-typed fingerprint, ignoring case, spaces and colons."""
    typed = "".join(expected.split()).replace(":", "").lower()
    if not _FINGERPRINT_RE.fullmatch(typed):
        return False
    return hmac.compare_digest(typed.encode("ascii"), fingerprint(envelope).encode("ascii"))


# -- trust decisions ------------------------------------------------------------


def all_keys(d: Descriptor) -> dict[str, VerifyingKey]:
    """Every key ``d`` lists, rotated-out ones included: what may have signed
    an undated statement (a credential record, a recognition rule)."""
    return {k.key_id: k.public_key for k in d.keys}


def keys_at(d: Descriptor, moment: datetime) -> dict[str, VerifyingKey]:
    """The keys of ``d`` that may sign a statement timestamped ``moment``."""
    return {k.key_id: k.public_key for k in d.keys if k.valid_at(moment)}


def pin_descriptor(envelope: Envelope, expected_fingerprint: str) -> Descriptor:
    """First pairing: accept a descriptor the operator confirmed out of band.

    The fingerprint is checked before anything is parsed. The descriptor must
    also be signed by one of its own keys valid at its ``issued_at``: that
    proves the sender holds the key it asks us to trust.
    """
    if not fingerprints_match(expected_fingerprint, envelope):
        raise FingerprintMismatchError(
            f"descriptor fingerprint {fingerprint(envelope)} is not the expected one"
        )
    if envelope.payload_type != DESCRIPTOR_TYPE:
        raise UntrustedSignerError(f"payload type {envelope.payload_type!r} is not a descriptor")
    d = decode_descriptor(envelope.payload)
    _verify(envelope, keys_at(d, d.issued_at), f"descriptor of {d.country}")
    return d


def accept_update(current: Descriptor, envelope: Envelope, now: datetime) -> Descriptor:
    """In-band rotation: the descriptor that replaces ``current``, or an error.

    Rules, in order: signed by a key of ``current`` valid at ``now``
    (UntrustedSignerError); well-formed (ValidationError); same country and
    node id (DescriptorMismatchError); a strictly higher version
    (DescriptorRollbackError). Receiving the exact bytes of ``current``
    again is not an update and returns ``current``.
    """
    if envelope.payload_type == DESCRIPTOR_TYPE and envelope.payload == encode_descriptor(current):
        # The bytes we already trust, fetched again: no trust is granted, and
        # its signer may by now be rotated out (a rotation is signed by the
        # key it retires), so the signature is not checked again.
        return current
    payload = _verify(envelope, keys_at(current, now), f"descriptor update of {current.country}")
    new = decode_descriptor(payload)
    if (new.country, new.node_id) != (current.country, current.node_id):
        raise DescriptorMismatchError(
            f"descriptor of {current.country}/{current.node_id} cannot become"
            f" {new.country}/{new.node_id}"
        )
    if new.version <= current.version:
        raise DescriptorRollbackError(
            f"descriptor version {new.version} of {current.country} is not higher"
            f" than {current.version}"
        )
    return new


def rotate(
    current: Descriptor, old_key: SigningKey, new_key: SigningKey, now: datetime
) -> tuple[Descriptor, Envelope]:
    """The next descriptor, where ``new_key`` takes over from ``old_key`` at ``now``.

    The old key stays listed, valid up to ``now``, so what it signed before
    still verifies. The descriptor is signed by the old key: partners trust
    only that one until they accept this update.
    """
    entries = {k.key_id: k for k in current.keys}
    old = entries.get(old_key.key_id)
    if old is None or not old.valid_at(now):
        raise PreconditionError(f"key {old_key.key_id} is not a current key of this node")
    if new_key.key_id in entries:
        raise PreconditionError(f"key {new_key.key_id} is already listed")
    keys = tuple(replace(k, not_after=now) if k is old else k for k in current.keys)
    keys += (KeyEntry(new_key.key_id, new_key.verifying_key(), now, None),)
    envelope = sign_descriptor(
        old_key, replace(current, keys=keys, version=current.version + 1, issued_at=now)
    )
    # Return what was signed (millisecond times), not what was asked for.
    return decode_descriptor(envelope.payload), envelope


# -- helpers --------------------------------------------------------------------


def _verify(envelope: Envelope, keys: dict[str, VerifyingKey], what: str) -> bytes:
    try:
        return verify_envelope(envelope, keys, DESCRIPTOR_TYPE)
    except SignatureError as exc:
        raise UntrustedSignerError(
            f"{what} is not validly signed by a trusted key (key {envelope.key_id[:64]!r}): {exc}"
        ) from None


def _check_identity(d: Descriptor) -> None:
    if not is_country_code(d.country):
        _D.fail(f"country {d.country[:40]!r} is not a two-letter upper-case country code")
    if not _NODE_ID_RE.fullmatch(d.node_id):
        _D.fail(f"node_id {d.node_id[:80]!r} is not 1-64 letters, digits, '.', '_' or '-'")


def _check_endpoints(endpoints: tuple[str, ...]) -> None:
    if len(endpoints) > MAX_ENDPOINTS:
        _D.fail(f"more than {MAX_ENDPOINTS} endpoints")
    for endpoint in endpoints:
        match = _ENDPOINT_RE.fullmatch(endpoint)
        if match is None or int(match.group(1)) > 65535:
            _D.fail(f"endpoint {endpoint[:80]!r} is not HOST:PORT")
    if len(set(endpoints)) != len(endpoints):
        _D.fail("endpoints are listed twice")


def _check_tls_ca_cert(pem: str) -> None:
    if len(pem) > MAX_TLS_CA_CERT:
        _D.fail(f"tls_ca_cert exceeds {MAX_TLS_CA_CERT} characters")
    # Empty until mutual TLS lands: a node then has no CA to publish yet.
    if pem and not _PEM_RE.fullmatch(pem):
        _D.fail("tls_ca_cert is not a PEM certificate bundle")


def _encode_keys(keys: tuple[KeyEntry, ...]) -> list[dict[str, object]]:
    # At least one key: a descriptor must be able to vouch for itself.
    if not 1 <= len(keys) <= MAX_KEYS:
        _D.fail(f"a descriptor lists 1 to {MAX_KEYS} keys, not {len(keys)}")
    if len({k.key_id for k in keys}) != len(keys):
        _D.fail("a key is listed twice")
    out: list[dict[str, object]] = []
    for k in keys:
        if k.key_id != key_id_for(k.public_key.raw):
            _D.fail(f"key id {k.key_id[:40]!r} is not the id of its public key")
        not_before = _to_millis("not_before", k.not_before)
        not_after = None if k.not_after is None else _to_millis("not_after", k.not_after)
        if not_after is not None and not_after < not_before:
            _D.fail(f"key {k.key_id} expires before it becomes valid")
        out.append(
            {
                "key_id": k.key_id,
                "public_key": k.public_key.raw.hex(),
                "not_before": not_before,
                "not_after": not_after,
            }
        )
    return out


def _decode_key(value: object) -> KeyEntry:
    if not isinstance(value, dict):
        _D.fail("keys[] must hold objects")
    _D.exact("keys[]", value, _KEY_FIELDS)
    key_id = _D.string(value["key_id"], "key_id")
    public_hex = _D.string(value["public_key"], "public_key")
    if not _KEY_ID_RE.fullmatch(key_id):
        _D.fail(f"key_id {key_id[:40]!r} is not 32 lower-case hex characters")
    if not _PUBLIC_KEY_RE.fullmatch(public_hex):
        _D.fail(f"public_key is not {2 * RAW_KEY_SIZE} lower-case hex characters")
    try:
        public_key = VerifyingKey.from_raw(bytes.fromhex(public_hex))
    except SignatureError as exc:
        _D.fail(f"public_key: {exc}")
    return KeyEntry(
        key_id=key_id,
        public_key=public_key,
        not_before=_D.moment(value["not_before"], "not_before"),
        not_after=_D.optional(value["not_after"], "not_after", _D.moment),
    )


def _to_millis(name: str, moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        # A naive time means a different instant on every machine.
        _D.fail(f"{name} must be timezone-aware")
    millis = (moment - EPOCH) // ONE_MS
    if not 0 <= millis <= MAX_MILLIS:
        _D.fail(f"{name} is out of range")
    return millis
