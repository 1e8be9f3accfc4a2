"""What ``signing_key=`` protects, and what it does not (docs/security.md, "Signing").

The refusal of unsigned and forged envelopes is tested in tests/test_queue.py and
tests/test_channel.py; these tests pin down the limits the docs promise.
"""

from __future__ import annotations

from collections.abc import Callable

from redrelay import Message, Relay
from redrelay.protocol.envelope import decode_entry, rewrite_header

KEY = b"k" * 32


def _consume(relay: Relay, queue: str) -> list[Message]:
    seen: list[Message] = []
    relay.consumer(queue, retries=0)(seen.append)
    return seen


def test_the_signature_is_checked_before_the_payload_is_decoded(
    make_relay: Callable[..., Relay],
) -> None:
    relay = make_relay(signing_key=KEY)
    seen = _consume(relay, "q")
    # a signed-looking entry whose payload would not even decode
    forged = b"\x1frr1:0:0:J" + b"\x00" * 32 + b"{not json"
    relay.connection.call("LPUSH", relay.queue("q").keys.ready, forged)
    relay.drain(raise_on_failure=False)
    assert seen == []
    (dead,) = relay.queue("q").dead_letters()
    assert "bad signature" in dead.reason


def test_the_counters_in_the_header_are_not_signed(
    make_relay: Callable[..., Relay],
) -> None:
    """Rewriting ``deliveries``/``failures`` keeps the signature valid (retries do it)."""
    relay = make_relay(signing_key=KEY)
    entry = relay.queue("q").encode("body")
    bumped = rewrite_header(entry, 5, 7)
    decoded = decode_entry(bumped, KEY)
    assert (decoded.deliveries, decoded.failures) == (5, 7)
    assert decoded.envelope is not None and decoded.envelope["b"] == "body"


def test_a_signed_entry_can_be_replayed(make_relay: Callable[..., Relay]) -> None:
    """Signing proves who wrote a message, not that it is new: a copy runs again."""
    relay = make_relay(signing_key=KEY)
    seen = _consume(relay, "q")
    queue = relay.queue("q")
    queue.put("pay invoice 7")
    (entry,) = relay.connection.call("LRANGE", queue.keys.ready, 0, -1)
    relay.connection.call("LPUSH", queue.keys.ready, entry)
    relay.drain()
    assert [m.body for m in seen] == ["pay invoice 7", "pay invoice 7"]
    assert seen[0].id == seen[1].id  # handlers can dedup on the id


def test_bodies_are_signed_not_encrypted(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay(signing_key=KEY)
    queue = relay.queue("q")
    queue.put({"card": "4111 1111 1111 1111"})
    (entry,) = relay.connection.call("LRANGE", queue.keys.ready, 0, -1)
    assert b"4111 1111 1111 1111" in entry


def test_peek_shows_entries_without_checking_signatures(
    make_relay: Callable[..., Relay],
) -> None:
    relay = make_relay(signing_key=KEY)
    stranger = make_relay(namespace=relay.namespace, signing_key=b"x" * 32)
    stranger.queue("q").put("forged")
    assert [m.body for m in relay.queue("q").peek()] == ["forged"]
    seen = _consume(relay, "q")
    relay.drain(raise_on_failure=False)
    assert seen == [] and relay.queue("q").stats().dead == 1
