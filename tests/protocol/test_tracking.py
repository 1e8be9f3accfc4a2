"""Which entries are tracked (put with a record, docs/results.md): the envelope field
``"r": 1`` and the worker's two ways of reading it, without Redis."""

from __future__ import annotations

import pytest

from redrelay import Relay
from redrelay.protocol.envelope import (
    TRACKED,
    decode_entry,
    entry_tracking,
    rewrite_header,
    untracked_batch,
)
from redrelay.protocol.flow import mark_for

URL = "redis://127.0.0.1:1/0"  # never connected: encoding needs no server


def _entries(**relay_options: object) -> tuple[bytes, bytes, bytes]:
    relay = Relay(URL, **relay_options)  # type: ignore[arg-type]
    tracked = relay.queue("t", results=True).encode({"n": 1})
    plain = relay.queue("p").encode({"n": 1})
    # A body that holds the field itself must not make its message tracked.
    lookalike = relay.queue("p").encode({"r": 1, "i": "x"})
    return tracked, plain, lookalike


def test_a_tracking_queue_puts_the_field_right_after_the_id() -> None:
    tracked, plain, lookalike = _entries()
    env = decode_entry(tracked).envelope
    assert env is not None and list(env) == ["i", TRACKED, "b", "t"]
    assert env[TRACKED] == 1
    assert tracked.startswith(b'\x1frr1:0:0:j{"i":"' + env["i"].encode() + b'","r":1,')
    for entry in (plain, lookalike):
        env = decode_entry(entry).envelope
        assert env is not None and TRACKED not in env


def test_entry_tracking_reads_the_id_and_the_field() -> None:
    tracked, plain, lookalike = _entries()
    for entry, expected in ((tracked, True), (plain, False), (lookalike, False)):
        msg_id, is_tracked = entry_tracking(entry, "tag")
        env = decode_entry(entry).envelope
        assert env is not None
        assert (str(msg_id, "ascii") if isinstance(msg_id, bytes) else msg_id) == env[
            "i"
        ]
        assert is_tracked is expected


@pytest.mark.parametrize(
    "options",
    [{"codec": "msgpack"}, {"signing_key": b"k" * 32}],
    ids=["msgpack", "signed"],
)
def test_other_codecs_and_signed_entries_are_decoded(
    options: dict[str, object],
) -> None:
    tracked, plain, lookalike = _entries(**options)
    assert entry_tracking(tracked, "tag")[1] is True
    assert entry_tracking(plain, "tag")[1] is False
    assert entry_tracking(lookalike, "tag")[1] is False
    assert not untracked_batch([plain])  # not plain JSON: looked at one by one


def test_redelivered_and_marked_entries_keep_the_field() -> None:
    tracked, plain, _ = _entries()
    again = rewrite_header(tracked, 2, 1)
    assert entry_tracking(again, "tag")[1] is True
    assert entry_tracking(rewrite_header(plain, 2, 1), "tag")[1] is False
    relay = Relay(URL)
    q = relay.queue("t", results=True)
    marked = mark_for(q, q.encode({"n": 1}), 5, {"n": 1}, None)
    assert marked != tracked and entry_tracking(marked, "tag")[1] is True
    assert not untracked_batch([marked])


def test_raw_and_malformed_entries_are_never_tracked() -> None:
    assert entry_tracking(b"hello", "tag-1") == ("tag-1", False)
    assert entry_tracking(b'\x1frr1:0:0:j{"i":', "tag-2") == ("tag-2", False)
    raw = rewrite_header(b"hello", 1, 0, raw_id="raw-1")
    assert entry_tracking(raw, "tag-3") == ("raw-1", False)


def test_untracked_batch_is_sure_or_says_look() -> None:
    tracked, plain, lookalike = _entries()
    assert untracked_batch([plain, plain])
    assert untracked_batch([])
    assert not untracked_batch([plain, tracked])
    # The field in a body: not sure from the batch alone (each entry then says no).
    assert not untracked_batch([plain, lookalike])
    assert not untracked_batch([plain, b"hello"])
