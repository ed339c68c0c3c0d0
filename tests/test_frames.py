"""The pipe's frames, as a hostile sandbox would write them: the host refuses what is not
strict JSON, and reads what is, in any chunking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services_ai_plugins.calling.sandbox.protocol import (
    HEADER,
    FrameError,
    FrameReader,
    TooLarge,
    decode,
    dumps,
    encode,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"ok": NaN}', "not JSON"),
        (b'{"ok": Infinity}', "not JSON"),
        (b'{"ok": 1e999}', "not JSON"),
        (b'{"ok": "\xff"}', "not JSON"),
        (b'{"ok": "\\ud800"}', "not JSON"),
        (b'{"ok": 1', "not JSON"),
        (b"[1, 2]", "an object, not list"),
        (b'"text"', "an object, not str"),
        (b"[" * 2000 + b"]" * 2000, "not JSON"),
    ],
)
def test_a_frame_that_is_not_strict_json_is_refused(body: bytes, named: str) -> None:
    with pytest.raises(FrameError, match=named):
        decode(body)


def test_a_frame_over_the_cap_is_refused_before_its_body_is_read() -> None:
    reader = FrameReader(max_bytes=100)
    with pytest.raises(TooLarge, match="a reply of 101 bytes; the limit is 100"):
        reader.feed(HEADER.pack(101))


def test_a_key_given_twice_counts_once_the_last() -> None:
    assert decode(b'{"id": 1, "id": 2}') == {"id": 2}


def test_integers_past_64_bits_still_encode() -> None:
    message = {"big": 2**80}
    assert decode(encode(message)[HEADER.size :]) == {"big": float(2**80)}


@given(st.lists(st.dictionaries(st.text(), json_values, max_size=4), max_size=4), st.integers(1, 9))
def test_frames_come_through_any_chunking_unchanged(messages: list[dict[str, object]], step: int) -> None:
    stream = b"".join(encode(message) for message in messages)
    reader = FrameReader(max_bytes=1 << 20)
    read = []
    for start in range(0, len(stream), step):
        read += reader.feed(stream[start : start + step])
    assert read == messages
    assert [dumps(message) for message in read] == [dumps(message) for message in messages]
