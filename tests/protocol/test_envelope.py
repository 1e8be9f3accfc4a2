"""The entry format, ids, names and backoff: pure logic, no Redis."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrelay import Backoff, ConfigurationError, DecodeError, InvalidName
from redrelay.codecs import JsonCodec
from redrelay.protocol.envelope import (
    MAGIC,
    decode_entry,
    encode_entry,
    fresh_envelope,
    new_id,
    rewrite_header,
)
from redrelay.protocol.keys import QueueKeys, validate_name
from redrelay.protocol.transitions import to_ms, to_seconds


def _entry(body: object, deliveries: int = 0, failures: int = 0) -> bytes:
    return encode_entry(
        JsonCodec().dumps({"i": "x1", "b": body, "t": 5}), b"j", deliveries, failures
    )


def test_round_trip() -> None:
    decoded = decode_entry(_entry({"a": [1, 2]}, 3, 1))
    assert (decoded.deliveries, decoded.failures) == (3, 1)
    assert decoded.envelope == {"i": "x1", "b": {"a": [1, 2]}, "t": 5}


def test_raw_bodies_are_anything_without_the_magic() -> None:
    decoded = decode_entry(b"hello")
    assert decoded.envelope is None and decoded.raw == b"hello"


def test_rewrite_header_keeps_payload_and_wraps_raw() -> None:
    entry = _entry("body", 1, 0)
    assert (
        decode_entry(rewrite_header(entry, 4, 2)).envelope
        == decode_entry(entry).envelope
    )
    assert (
        decode_entry(rewrite_header(entry, 4, 2)).deliveries,
        decode_entry(rewrite_header(entry, 4, 2)).failures,
    ) == (
        4,
        2,
    )
    wrapped = decode_entry(rewrite_header(b"raw|bytes", 1, 1, raw_id="r1"))
    assert (wrapped.raw, wrapped.raw_id, wrapped.deliveries) == (b"raw|bytes", "r1", 1)


@pytest.mark.parametrize(
    "entry",
    [
        MAGIC,
        MAGIC + b"x:0:j{}",
        MAGIC + b"0:0:z{}",
        MAGIC + b"0:0:j{not json",
        MAGIC + b"0:0:j[1]",
        MAGIC + b"0:0:rnoid",
    ],
)
def test_malformed_entries_raise_decode_error_with_the_bytes(entry: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_entry(entry)
    assert info.value.raw == entry


@given(st.binary(max_size=200))
def test_decoder_only_raises_decode_error(data: bytes) -> None:
    for entry in (data, MAGIC + data):
        try:
            decode_entry(entry)
        except DecodeError:
            pass


def test_ids_are_unique_and_time_sortable() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_a_forked_child_draws_its_own_process_part_of_ids() -> None:
    parent = new_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its id, exit at once
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    # 11 hex digits of ms, then 6 of process, then 6 of counter
    assert child[11:17] != parent[11:17]
    assert new_id()[11:17] == parent[11:17]


def test_keys_share_one_hash_tag() -> None:
    keys = QueueKeys.of("ns", "emails")
    for key in (
        keys.ready,
        keys.delayed,
        keys.leases,
        keys.dead,
        keys.inflight("c1"),
        keys.started("c1"),
    ):
        assert key.startswith("ns:{emails}:")


@pytest.mark.parametrize("name", ["", "a{b}", "a b", "-x", "é", "a*", "x" * 201, 5])
def test_invalid_names(name: object) -> None:
    with pytest.raises(InvalidName):
        validate_name("queue", name)


def test_patterns_allow_globs() -> None:
    assert validate_name("channel", "news.*", pattern=True) == "news.*"


def test_durations() -> None:
    assert to_seconds(timedelta(milliseconds=1500), "delay") == 1.5
    assert to_ms(0.0011) == 2  # rounded up: a delay is never shortened
    with pytest.raises(ConfigurationError, match="delay="):
        to_seconds(-1, "delay")
    with pytest.raises(ConfigurationError, match="lease="):
        to_seconds("5", "lease")  # type: ignore[arg-type]


def test_backoff_is_exponential_capped_and_jittered() -> None:
    fixed = Backoff(base=1, factor=2, max=5, jitter=False)
    assert [fixed.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    jittered = Backoff(base=1, factor=2, max=5)
    samples = {jittered.delay(3) for _ in range(100)}
    assert all(0 <= s <= 4 for s in samples) and len(samples) > 1


def test_fast_message_constructor_matches_the_dataclass() -> None:
    import dataclasses

    from redrelay import Message
    from redrelay.message import make_message

    # Every public field; ``_cancel`` (the worker's hook for results.md) starts unset.
    fields = [f.name for f in dataclasses.fields(Message) if not f.name.startswith("_")]
    values = {name: f"v-{name}" for name in fields}
    made = make_message(**values)
    assert made == Message(**values)
    assert made._cancel is None and made.cancelled() is False


_FRESH = MAGIC + b"0:0:j"


def _same_as_decode_entry(entry: bytes) -> None:
    """fresh_envelope (the worker's hot path) decodes exactly as decode_entry does: an
    entry it takes (every entry starting with ``_FRESH``) gives the same envelope or the
    same error; any other it leaves to decode_entry (None)."""
    try:
        expected = decode_entry(entry)
    except DecodeError as exc:
        try:
            got = fresh_envelope(entry)
        except DecodeError as error:
            assert (error.raw, error.reason) == (exc.raw, exc.reason)
            return
        assert got is None and not entry.startswith(_FRESH)
        return
    got = fresh_envelope(entry)
    if entry.startswith(_FRESH):
        assert got is not None
    if got is not None:
        assert (expected.deliveries, expected.failures) == (0, 0)
        assert got == expected.envelope


@pytest.mark.parametrize(
    "entry",
    [
        _entry({"a": 1}),
        _entry("x", 1, 0),
        _entry("x", 0, 1),
        b"raw",
        _FRESH + b'{"i":"x","b":1,"h":{"k":"v"}}',
        _FRESH + b'{"i":"x","b":1,"h":{"k":1}}',
        _FRESH + b'{"i":"x","b":1,"h":[]}',
        _FRESH + b'{"i":"x","b":1,"t":"soon"}',
        _FRESH + b'{"i":"x","b":1,"t":true}',
        _FRESH + b'{"i":"x","b":1,"t":1.5}',
        _FRESH + b'{"i":1,"b":1}',
        _FRESH + b'{"i":"x"}',
        _FRESH + b"[1]",
        _FRESH + b"{not json",
        _FRESH,
        MAGIC,  # a bad header: decode_entry raises, fresh_envelope leaves it to it
        MAGIC + b"0:",
    ],
)
def test_fresh_envelope_decodes_as_decode_entry(entry: bytes) -> None:
    _same_as_decode_entry(entry)


@given(st.binary(max_size=100))
def test_fresh_envelope_agrees_with_decode_entry_on_any_bytes(data: bytes) -> None:
    for entry in (data, _FRESH + data):
        _same_as_decode_entry(entry)
