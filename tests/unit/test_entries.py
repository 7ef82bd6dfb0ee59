"""Status-log entries: the fast position read agrees with the full decoder
on every encoded entry, and refuses what the decoder refuses unless the
canonical prefix matches (property tests)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credfed.errors import ValidationError
from credfed.ids import new_credential_id
from credfed.models import Status, StatusState
from credfed.statuslog.entries import LogEntryData, decode_entry, encode_entry, entry_position

LOGGED = [s for s in Status if s is not Status.EXPIRED]


@st.composite
def entries(draw: st.DrawFn) -> LogEntryData:
    country = draw(st.sampled_from(["DE", "FR", "PL", "AT"]))
    status = draw(st.sampled_from(LOGGED))
    millis = draw(st.integers(0, 4_102_444_800_000))
    return LogEntryData(
        origin=country,
        index=draw(st.integers(0, 2**53)),
        credential_id=new_credential_id(country),
        state=StatusState(
            status=status,
            reason=draw(st.sampled_from(["fraud", "disciplinary", "appeal_upheld"])),
            effective_at=datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis),
            suspended_until=draw(st.none() | st.dates(date(2000, 1, 1), date(2100, 1, 1)))
            if status is Status.SUSPENDED
            else None,
        ),
    )


@given(entries())
def test_position_agrees_with_the_decoder(entry: LogEntryData) -> None:
    leaf = encode_entry(entry)
    decoded = decode_entry(leaf)
    assert entry_position(leaf) == (decoded.credential_id, decoded.index, decoded.origin)
    assert (decoded.credential_id, decoded.index, decoded.origin) == (
        entry.credential_id,
        entry.index,
        entry.origin,
    )


@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_or_agree(data: bytes) -> None:
    try:
        position = entry_position(data)
    except ValidationError:
        with pytest.raises(ValidationError):
            decode_entry(data)
        return
    try:
        decoded = decode_entry(data)
    except ValidationError:
        return  # a canonical prefix on garbage: placed, but refused when read
    assert position == (decoded.credential_id, decoded.index, decoded.origin)
