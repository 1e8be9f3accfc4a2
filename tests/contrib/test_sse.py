"""The server-sent-events hub against a real redis-server: fan-out, frames, keep-alive,
disconnects that leave nothing behind, slow clients, gaps and the async stream."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import orjson
import pytest
import redis
from werkzeug.serving import make_server

from redrelay import InvalidName, Relay
from redrelay.contrib.sse import EventHub, hub_for
from redrelay.protocol.keys import channel_key

from ..channel_helpers import wait_for

KEEPALIVE_FRAME = b": keep-alive\n\n"


@pytest.fixture
def hub(relay: Relay) -> Iterator[EventHub]:
    hub = hub_for(relay)
    yield hub
    hub.close()


@pytest.fixture
def redis_client(redrelay_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redrelay_url)
    yield client
    client.close()


def parse(frame: bytes) -> list[dict[str, Any]]:
    """The events of a chunk of frames: fields, with ``data`` JSON-decoded when it can be."""
    events = []
    for block in frame.decode().split("\n\n"):
        if not block or block.startswith(":"):
            continue
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            event[name] = event[name] + "\n" + value if name in event else value
        if "data" in event:
            try:
                event["json"] = orjson.loads(event["data"])
            except orjson.JSONDecodeError:
                pass
        if event.keys() - {"retry"}:
            events.append(event)
    return events


def read_events(
    stream: Generator[bytes, None, None], count: int
) -> list[dict[str, Any]]:
    """Read frames until ``count`` events came (keep-alives are skipped)."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(events) < count:
        assert time.monotonic() < deadline, f"only {events} within 10 s"
        events.extend(parse(next(stream)))
    return events


def opened(hub: EventHub, channel: str, **options: Any) -> Generator[bytes, None, None]:
    """A stream whose opening frame has been read: it is subscribed from now on."""
    options.setdefault("keepalive", 0.1)
    stream = hub.stream(channel, **options)
    first = next(stream)
    assert first.startswith(b": redrelay channel"), first
    return stream


class Opened:
    """The Redis connections and threads opened since it was made, and still open.

    Compared by identity, not counted: a connection or thread of an earlier test that
    ends meanwhile (an unclosed Relay's socket, closed by whichever garbage collection
    finds it) is not this test's doing, and would throw a count off.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.before_clients = self._client_ids()
        self.before_threads = set(threading.enumerate())

    def _client_ids(self) -> set[int]:
        return {int(c["id"]) for c in self.client.client_list()}

    def clients(self) -> set[int]:
        return self._client_ids() - self.before_clients

    def threads(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in self.before_threads]


def test_streams_get_the_messages_of_their_channel_only(
    relay: Relay, hub: EventHub
) -> None:
    a1, a2, b = opened(hub, "a"), opened(hub, "a"), opened(hub, "b")
    assert hub.clients == 3
    relay.publish("a", {"n": 1})
    relay.publish("b", {"n": 2})
    assert [e["json"] for e in read_events(a1, 1)] == [{"n": 1}]
    assert [e["json"] for e in read_events(a2, 1)] == [{"n": 1}]
    assert [e["json"] for e in read_events(b, 1)] == [{"n": 2}]
    for stream in (a1, a2, b):
        stream.close()
    assert hub.clients == 0


def test_frames_carry_id_event_and_json_data(relay: Relay, hub: EventHub) -> None:
    stream = opened(hub, "jobs")
    relay.publish(
        "jobs", {"done": 3, "text": "two\nlines"}, headers={"event": "progress"}
    )
    relay.publish("jobs", "plain")
    relay.publish("jobs", 1, headers={"event": "bad\ninjected: yes"})
    first, second, third = read_events(stream, 3)
    assert first["event"] == "progress"
    assert first["json"] == {"done": 3, "text": "two\nlines"}
    assert len(first["id"]) > 10 and "\n" not in first["data"]
    assert "event" not in second and second["json"] == "plain"
    assert (
        "event" not in third and "injected" not in third
    )  # a header cannot add fields
    assert first["id"] != second["id"]


def test_raw_bodies_become_text_one_data_line_per_line(
    relay: Relay, hub: EventHub, redis_client: redis.Redis
) -> None:
    stream = opened(hub, "raw")
    redis_client.publish(channel_key(relay.namespace, "raw"), b"hello\nworld\r\n!")
    (event,) = read_events(stream, 1)
    assert event["data"] == "hello\nworld\n!"
    assert "json" not in event


def test_keepalive_comments_when_idle(hub: EventHub) -> None:
    stream = opened(hub, "quiet", keepalive=0.15)
    started = time.monotonic()
    assert next(stream) == KEEPALIVE_FRAME
    assert next(stream) == KEEPALIVE_FRAME
    assert time.monotonic() - started >= 0.28
    stream.close()


def test_opening_frame_sets_retry_and_reports_a_reconnect(hub: EventHub) -> None:
    stream = hub.stream("x", retry_ms=1234, last_event_id="abc")
    opening = next(stream)
    assert b"retry: 1234\n" in opening
    (gap,) = parse(opening)
    assert gap["event"] == "gap" and gap["json"]["channel"] == "x"
    assert "lost" in gap["json"]["reason"]
    stream.close()
    assert b"retry" not in next(hub.stream("x", retry_ms=None))


def test_invalid_channel_names_fail_at_the_call(hub: EventHub) -> None:
    for name in ["", "a b", "x*", "{tag}", "é"]:
        with pytest.raises(InvalidName):
            hub.stream(name)
        with pytest.raises(InvalidName):
            hub.astream(name)
    assert hub.clients == 0


def test_one_subscription_for_every_client(
    relay: Relay, hub: EventHub, redis_client: redis.Redis
) -> None:
    first = opened(hub, "news")
    relay.publish("warm", 0)  # the relay's own connection, for publishing
    since = Opened(redis_client)
    streams = [opened(hub, f"news{i % 5}") for i in range(50)]
    assert since.clients() == set()
    assert since.threads() == []
    relay.publish("news3", "hi")
    assert all(
        read_events(s, 1)[0]["json"] == "hi" for s in streams[3::5]
    )  # 10 clients, one read from Redis
    for stream in [first, *streams]:
        stream.close()
    assert hub.clients == 0


def test_hundreds_of_connects_and_disconnects_leave_nothing_behind(
    relay: Relay, hub: EventHub, redis_client: redis.Redis
) -> None:
    opened(hub, "warm").close()
    relay.publish("warm", 0)  # the relay's own connection, for publishing
    since = Opened(redis_client)
    for i in range(300):
        stream = opened(hub, f"c{i % 7}")
        if i % 10 == 0:
            relay.publish(f"c{i % 7}", i)
            assert read_events(stream, 1)[0]["json"] == i
        stream.close()
        assert since.threads() == []
    assert hub.clients == 0
    assert since.threads() == []
    assert since.clients() == set()
    # The hub keeps its one subscription for the next client.
    assert hub.listening


def test_wsgi_disconnects_release_everything(
    relay: Relay, hub: EventHub, redis_client: redis.Redis
) -> None:
    """Real HTTP clients on a threaded WSGI server that hang up mid-stream."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        channel = environ["PATH_INFO"].strip("/")
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return hub.stream(channel, keepalive=0.05)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        get(server.port, "warm")
        wait_for(lambda: hub.clients == 0)
        since = Opened(redis_client)
        for i in range(200):
            get(server.port, f"w{i % 3}")
        # A WSGI server learns that a client left when a write fails: the next
        # keep-alive or two.
        wait_for(lambda: hub.clients == 0)
        wait_for(lambda: since.threads() == [])
        assert since.clients() == set()
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


def get(port: int, channel: str) -> None:
    """Open an event stream, read its opening frame, hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET /{channel} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        while b"retry:" not in received:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk


def test_a_slow_client_loses_the_oldest_and_is_told(
    relay: Relay, hub: EventHub
) -> None:
    slow = opened(hub, "fast", buffer=3)
    other = opened(hub, "fast")
    for n in range(10):
        relay.publish("fast", n)
    assert [e["json"] for e in read_events(other, 10)] == list(range(10))
    events = read_events(slow, 4)
    assert events[0]["event"] == "gap"
    assert events[0]["json"]["missed"] == 7
    assert "too slow" in events[0]["json"]["reason"]
    assert [e["json"] for e in events[1:]] == [7, 8, 9]


def test_listener_reconnects_are_reported_to_every_client(
    relay: Relay, hub: EventHub, redis_client: redis.Redis
) -> None:
    a, b = opened(hub, "a"), opened(hub, "b")
    redis_client.client_kill_filter(_type="pubsub")
    for stream in (a, b):
        (gap,) = read_events(stream, 1)
        assert gap["event"] == "gap"
        assert "reconnected" in gap["json"]["reason"]
    wait_for(lambda: hub.listening)
    relay.publish("a", "after")
    assert read_events(a, 1)[0]["json"] == "after"


def test_sequence_gaps_are_reported_on_their_channel(
    relay: Relay, hub: EventHub
) -> None:
    stream = opened(hub, "seq")
    relay.publish("seq", 1)
    # Skip five sequence numbers, as if five publishes never reached this subscriber.
    relay.channel("seq")._stream().seqs[channel_key(relay.namespace, "seq")] += 5
    relay.publish("seq", 2)
    events = read_events(stream, 3)
    # The gap is seen by the reading thread, so it may overtake message 1, which is
    # still on its way through the fan-out thread.
    assert [e["json"] for e in events if "event" not in e] == [1, 2]
    gap = next(e for e in events if e.get("event") == "gap")
    assert gap["json"] == {
        "channel": "seq",
        "missed": 5,
        "reason": "sequence gap",
    }


def test_close_ends_open_streams_and_stops_the_listener(relay: Relay) -> None:
    hub = hub_for(relay)
    stream = opened(hub, "bye")
    threads = {t.name for t in threading.enumerate()}
    assert "redrelay-channel-listener" in threads
    hub.close()
    assert list(stream) == []  # ended, no more frames
    assert hub.clients == 0
    assert hub_for(relay) is not hub
    hub_for(relay).close()
    assert not any(
        t.name == "redrelay-channel-listener" and t.is_alive()
        for t in threading.enumerate()
    )


# -- async ----------------------------------------------------------------------------------


async def anext_frame(stream: Any) -> bytes:
    frame = await asyncio.wait_for(stream.__anext__(), 10)
    assert isinstance(frame, bytes)
    return frame


async def aread_events(stream: Any, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while len(events) < count:
        events.extend(parse(await anext_frame(stream)))
    return events


def test_async_stream_delivers_keeps_alive_and_unregisters(
    relay: Relay, hub: EventHub
) -> None:
    async def main() -> None:
        stream = hub.astream("live", keepalive=0.1)
        assert (await anext_frame(stream)).startswith(b": redrelay channel live")
        assert hub.clients == 1
        await asyncio.to_thread(relay.publish, "live", {"n": 1}, headers={"event": "e"})
        (event,) = await aread_events(stream, 1)
        assert event["json"] == {"n": 1} and event["event"] == "e"
        assert await anext_frame(stream) == KEEPALIVE_FRAME
        await stream.aclose()
        assert hub.clients == 0

    asyncio.run(main())


def test_async_stream_cancelled_by_the_server_unregisters(hub: EventHub) -> None:
    async def main() -> None:
        async def consume() -> None:
            async for _ in hub.astream("c", keepalive=10):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        for _ in range(500):
            if hub.clients:
                break
            await asyncio.sleep(0.01)
        assert hub.clients == 1
        task.cancel()  # what an ASGI server does when the client disconnects
        with pytest.raises(asyncio.CancelledError):
            await task
        assert hub.clients == 0

    asyncio.run(main())


def test_async_slow_client_and_close(relay: Relay, hub: EventHub) -> None:
    async def main() -> None:
        stream = hub.astream("s", buffer=2, keepalive=5)
        await anext_frame(stream)
        listener = hub._listener
        assert listener is not None
        before = listener.handled
        for n in range(6):
            relay.publish("s", n)
        for _ in range(500):
            if listener.handled >= before + 6:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(
            0.05
        )  # let the loop run the queued call_soon_threadsafe puts
        events = await aread_events(stream, 3)
        assert events[0]["event"] == "gap" and events[0]["json"]["missed"] == 4
        assert [e["json"] for e in events[1:]] == [4, 5]
        await asyncio.to_thread(hub.close)
        with pytest.raises(StopAsyncIteration):
            await anext_frame(stream)

    asyncio.run(main())


def test_many_async_cycles_leave_nothing_behind(
    relay: Relay, hub: EventHub, redis_client: redis.Redis
) -> None:
    async def main() -> None:
        for i in range(200):
            stream = hub.astream(f"a{i % 5}", keepalive=5)
            await anext_frame(stream)
            await stream.aclose()

    asyncio.run(main())  # starts the listener
    relay.publish("warm", 0)  # the relay's own connection, for publishing
    since = Opened(redis_client)
    asyncio.run(main())
    assert hub.clients == 0
    assert since.threads() == []
    assert since.clients() == set()
