from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from credfed.crypto.envelope import CHECKPOINT_TYPE, CREDENTIAL_TYPE, sign_envelope
from credfed.crypto.keys import SigningKey, VerifyingKey
from credfed.errors import CheckpointFormatError, SignatureError
from credfed.models import Checkpoint
from credfed.statuslog.checkpoint import (
    MAX_TREE_SIZE,
    decode_checkpoint,
    encode_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)

ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT).decode()
CP = Checkpoint(
    origin="DE",
    tree_size=1234,
    root_hash=ROOT,
    timestamp=datetime(2025, 3, 1, 12, 30, 45, 123000, tzinfo=UTC),
)
BODY = f"credfed-checkpoint/v1\nDE\n1234\n{ROOT_B64}\n1740832245123\n".encode()
DE_KEY = SigningKey.from_seed(b"\x01" * 32)
FR_KEY = SigningKey.from_seed(b"\x02" * 32)
DE_KEYS: dict[str, VerifyingKey] = {DE_KEY.key_id: DE_KEY.verifying_key()}


def test_encode_is_the_documented_text() -> None:
    assert encode_checkpoint(CP) == BODY
    assert decode_checkpoint(BODY) == CP


def test_timestamp_is_truncated_to_milliseconds_and_normalised_to_utc() -> None:
    cest = timezone(timedelta(hours=2))
    local = datetime(2025, 3, 1, 14, 30, 45, 123999, tzinfo=cest)
    cp = dataclasses.replace(CP, timestamp=local)
    assert encode_checkpoint(cp) == BODY
    decoded = decode_checkpoint(encode_checkpoint(cp))
    assert decoded.timestamp.tzinfo is UTC
    assert decoded.timestamp == CP.timestamp


@pytest.mark.parametrize(
    "cp",
    [
        dataclasses.replace(CP, origin="de"),
        dataclasses.replace(CP, origin="DEU"),
        dataclasses.replace(CP, tree_size=-1),
        dataclasses.replace(CP, tree_size=MAX_TREE_SIZE + 1),
        dataclasses.replace(CP, root_hash=ROOT[:31]),
        dataclasses.replace(CP, timestamp=datetime(2025, 3, 1)),  # naive
        dataclasses.replace(CP, timestamp=datetime(1969, 12, 31, tzinfo=UTC)),
    ],
)
def test_encode_refuses_what_could_not_be_decoded(cp: Checkpoint) -> None:
    with pytest.raises(CheckpointFormatError):
        encode_checkpoint(cp)


def _body(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


_OK = ("credfed-checkpoint/v1", "DE", "1234", ROOT_B64, "1740832245123")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "newline"),
        (BODY[:-1], "newline"),
        (BODY + b"\n", "lines"),
        (BODY.replace(b"\n", b"\r\n"), "header"),
        (_body(*_OK[:4]), "lines"),
        (_body(*_OK, "extra"), "lines"),
        (_body("credfed-checkpoint/v2", *_OK[1:]), "header"),
        (_body(_OK[0], "de", *_OK[2:]), "origin"),
        (_body(_OK[0], "D1", *_OK[2:]), "origin"),
        (_body(*_OK[:2], "01234", *_OK[3:]), "leading zeros"),
        (_body(*_OK[:2], "+1234", *_OK[3:]), "tree size"),
        (_body(*_OK[:2], " 1234", *_OK[3:]), "tree size"),
        (_body(*_OK[:2], "١٢٣", *_OK[3:]), "ASCII"),
        (_body(*_OK[:2], "9" * 19, *_OK[3:]), "out of range"),
        (_body(*_OK[:2], "9" * 20, *_OK[3:]), "tree size"),
        (_body(*_OK[:3], ROOT_B64.rstrip("="), _OK[4]), "base64"),
        (_body(*_OK[:3], base64.urlsafe_b64encode(b"\xff" * 32).decode(), _OK[4]), "base64"),
        (_body(*_OK[:3], base64.b64encode(ROOT[:31]).decode(), _OK[4]), "32 bytes"),
        (_body(*_OK[:3], ROOT_B64[:-2] + "9=", _OK[4]), "canonical"),  # padding bits set
        (_body(*_OK[:3], ROOT_B64 + " ", _OK[4]), "base64"),
        (_body(*_OK[:4], "01740832245123"), "leading zeros"),
        (_body(*_OK[:4], "-1"), "timestamp"),
        (_body(*_OK[:4], "1740832245.123"), "timestamp"),
        (_body(*_OK[:4], "9" * 19), "out of range"),
        (BODY.replace(b"DE", b"D\xc3\x89"), "ASCII"),
        (BODY + b" " * 1024, "exceeds"),
    ],
)
def test_decode_is_strict(body: bytes, fragment: str) -> None:
    with pytest.raises(CheckpointFormatError, match=fragment):
        decode_checkpoint(body)


def test_sign_and_verify() -> None:
    signed = sign_checkpoint(DE_KEY, CP)
    assert signed.checkpoint == CP
    assert signed.envelope.payload == BODY
    verified = verify_checkpoint(signed.envelope, DE_KEYS, "DE")
    assert verified == signed


def test_sign_returns_the_checkpoint_the_body_states() -> None:
    precise = dataclasses.replace(CP, timestamp=CP.timestamp + timedelta(microseconds=999))
    assert sign_checkpoint(DE_KEY, precise).checkpoint == CP


def test_verify_rejects_other_origin() -> None:
    signed = sign_checkpoint(DE_KEY, CP)
    with pytest.raises(SignatureError, match="origin DE, expected FR"):
        verify_checkpoint(signed.envelope, DE_KEYS, "FR")


def test_verify_rejects_other_key() -> None:
    signed = sign_checkpoint(FR_KEY, CP)
    with pytest.raises(SignatureError, match="unknown key"):
        verify_checkpoint(signed.envelope, DE_KEYS, "DE")
    forged = dataclasses.replace(signed.envelope, key_id=DE_KEY.key_id)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_checkpoint(forged, DE_KEYS, "DE")


def test_verify_rejects_tampered_body() -> None:
    signed = sign_checkpoint(DE_KEY, CP)
    tampered = dataclasses.replace(signed.envelope, payload=BODY.replace(b"1234", b"1235"))
    with pytest.raises(SignatureError):
        verify_checkpoint(tampered, DE_KEYS, "DE")


def test_verify_rejects_other_payload_types() -> None:
    envelope = sign_envelope(DE_KEY, CREDENTIAL_TYPE, BODY)
    with pytest.raises(SignatureError, match="payload type"):
        verify_checkpoint(envelope, DE_KEYS, "DE")


def test_signed_garbage_is_a_format_error_after_the_signature_check() -> None:
    junk = sign_envelope(DE_KEY, CHECKPOINT_TYPE, b"not a checkpoint")
    with pytest.raises(CheckpointFormatError):
        verify_checkpoint(junk, DE_KEYS, "DE")


# -- properties -------------------------------------------------------------

_checkpoints = st.builds(
    Checkpoint,
    origin=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2),
    tree_size=st.integers(0, MAX_TREE_SIZE),
    root_hash=st.binary(min_size=32, max_size=32),
    timestamp=st.integers(0, 253402300799999).map(
        lambda ms: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    ),
)


@given(_checkpoints)
def test_decode_encode_round_trip(cp: Checkpoint) -> None:
    assert decode_checkpoint(encode_checkpoint(cp)) == cp


def _mostly(
    valid: st.SearchStrategy[str], invalid: st.SearchStrategy[str]
) -> st.SearchStrategy[str]:
    # Each line is valid 3 times in 4, so about a quarter of bodies decode.
    return st.one_of(valid, valid, valid, invalid)


_numbers = _mostly(
    st.integers(0, 2**62).map(str),
    st.one_of(
        st.integers(2**63 - 2, 10**20).map(str), st.from_regex(r"[0-9+\- ]{0,21}", fullmatch=True)
    ),
)
_near_bodies = st.builds(
    lambda header, origin, size, root, ts, sep: sep.join([header, origin, size, root, ts, ""]),
    _mostly(st.just("credfed-checkpoint/v1"), st.sampled_from(["credfed-checkpoint/v2", ""])),
    _mostly(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2),
        st.text(alphabet="ABCabc1 ", max_size=3),
    ),
    _numbers,
    _mostly(
        st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode()),
        st.one_of(
            st.binary(min_size=30, max_size=34).map(lambda b: base64.b64encode(b).decode()),
            st.binary(min_size=32, max_size=32).map(lambda b: base64.urlsafe_b64encode(b).decode()),
            st.from_regex(r"[A-Za-z0-9+/=]{42,46}", fullmatch=True),
        ),
    ),
    _numbers,
    _mostly(st.just("\n"), st.sampled_from(["\r\n", "\n\n"])),
).map(str.encode)


@settings(max_examples=400)
@example(BODY)
@given(st.one_of(st.binary(max_size=300), _near_bodies))
def test_decode_only_raises_format_errors_and_is_canonical(body: bytes) -> None:
    try:
        cp = decode_checkpoint(body)
    except CheckpointFormatError:
        return
    assert encode_checkpoint(cp) == body
