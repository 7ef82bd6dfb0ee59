"""Signed envelopes: DSSE v1 pre-authentication encoding over exact bytes.

The signature covers the payload type as well as the payload, so a signed
credential can never be replayed as a checkpoint or a descriptor. Verifiers
return the signed bytes themselves; callers parse those and never
re-serialise them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from credfed.canonical import canonical_json, load_json_object
from credfed.crypto.keys import SigningKey, VerifyingKey
from credfed.errors import SignatureError, ValidationError
from credfed.models import Envelope

CREDENTIAL_TYPE = "application/vnd.credfed.credential+json;v=1"
CHECKPOINT_TYPE = "application/vnd.credfed.checkpoint;v=1"
DESCRIPTOR_TYPE = "application/vnd.credfed.descriptor+json;v=1"

# Every payload we sign is small (a record, a checkpoint, a descriptor); the
# cap bounds what a peer can make us hash and parse.
MAX_PAYLOAD = 64 * 1024


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSEv1 SP LEN(type) SP type SP LEN(payload) SP payload.

    The lengths make the encoding injective: no (type, payload) pair can be
    shifted into another with the same bytes.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def sign_envelope(key: SigningKey, payload_type: str, payload: bytes) -> Envelope:
    if len(payload) > MAX_PAYLOAD:
        raise ValidationError(
            "payload", f"{len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte limit"
        )
    payload = bytes(payload)
    return Envelope(
        payload=payload,
        payload_type=payload_type,
        key_id=key.key_id,
        signature=key.sign(pae(payload_type, payload)),
    )


def verify_envelope(
    envelope: Envelope, keys: Mapping[str, VerifyingKey], expected_type: str
) -> bytes:
    """Check ``envelope`` and return its payload bytes, exactly as signed.

    ``keys`` maps key id to the keys trusted for this purpose; an envelope
    naming any other key is rejected.
    """
    if len(envelope.payload) > MAX_PAYLOAD:
        raise SignatureError(
            f"payload of {len(envelope.payload)} bytes exceeds the {MAX_PAYLOAD}-byte limit"
        )
    if envelope.payload_type != expected_type:
        raise SignatureError(
            f"payload type {envelope.payload_type!r} is not the expected {expected_type!r}"
        )
    key = keys.get(envelope.key_id)
    if key is None:
        raise SignatureError(f"envelope is signed by unknown key {envelope.key_id!r}")
    payload = bytes(envelope.payload)
    key.verify(envelope.signature, pae(envelope.payload_type, payload))
    return payload


def envelope_to_json(envelope: Envelope) -> bytes:
    """The file form of an envelope (``credfed peer export``): JSON with the
    exact payload and signature in base64."""
    return canonical_json(
        {
            "payload": base64.b64encode(envelope.payload).decode(),
            "payload_type": envelope.payload_type,
            "key_id": envelope.key_id,
            "signature": base64.b64encode(envelope.signature).decode(),
        }
    )


def envelope_from_json(data: bytes) -> Envelope:
    """Parse :func:`envelope_to_json` output; ValidationError on anything else.
    The signature is not checked here."""
    try:
        obj = load_json_object(data)
        fields = {k: obj[k] for k in ("payload", "payload_type", "key_id", "signature")}
        if set(obj) != set(fields) or not all(isinstance(v, str) for v in fields.values()):
            raise ValueError("expected exactly payload, payload_type, key_id, signature strings")
        return Envelope(
            payload=base64.b64decode(str(fields["payload"]), validate=True),
            payload_type=str(fields["payload_type"]),
            key_id=str(fields["key_id"]),
            signature=base64.b64decode(str(fields["signature"]), validate=True),
        )
    except (KeyError, ValueError, binascii.Error) as exc:
        raise ValidationError("envelope", f"not a credfed envelope file: {exc}") from None
