"""Liveness (issue 18): a dead or stuck consumer thread's lease runs out, and a new
thread takes its place; failure logs and hooks (issue 16, item 4)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import redrelay.worker.fastpath as fastpath
import redrelay.worker.liveness as liveness
import redrelay.worker.runner as runner_mod
from redrelay import Failure, Message, Relay
from redrelay.worker.fetcher import Fetcher
from redrelay.worker.runner import Runner
from redrelay.worker.supervisor import Worker

from .helpers import wait_for


def _threads(queue: str) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith(f"redrelay-{queue}-") and t.is_alive()
    ]


def _recorded(
    make_relay: Callable[..., Relay], queue: str, **options: Any
) -> tuple[Relay, list[tuple[int, int]]]:
    """A relay on a 1 s lease whose one consumer thread of ``queue`` (prefetch 5, and
    ``options``) records the ``(n, attempt)`` of every message it handles."""
    relay = make_relay(lease=1.0, heartbeat=0.2)
    done: list[tuple[int, int]] = []

    @relay.consumer(queue, prefetch=5, concurrency=1, **options)
    def handler(message: Message) -> None:
        done.append((message.body["n"], message.attempt))

    return relay, done


def _die_once(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, entry_arg: int
) -> tuple[threading.Event, list[threading.Thread]]:
    """Make the worker's own ``module.name`` end its thread (SystemExit) the first time
    its argument ``entry_arg`` is an entry whose body has ``"kill"``. Returns the event
    set then and the list of the threads it killed."""
    original, killed = getattr(module, name), threading.Event()
    victims: list[threading.Thread] = []

    def dying(*args: Any) -> Any:
        if b'"kill"' in args[entry_arg] and not killed.is_set():
            victims.append(threading.current_thread())
            killed.set()
            raise SystemExit("killed from the inside")
        return original(*args)

    monkeypatch.setattr(module, name, dying)
    return killed, victims


def _died_logged(
    caplog: pytest.LogCaptureFixture, where: str = ""
) -> logging.LogRecord:
    """The first "died" log line (about ``where``): an ERROR with the traceback."""
    died = [r for r in caplog.records if "died" in r.getMessage()]
    assert died and died[0].levelno == logging.ERROR
    assert where in died[0].getMessage()
    return died[0]


@pytest.mark.parametrize("path", ["fast", "general"])
def test_a_consumer_thread_killed_from_the_inside_comes_back(
    make_relay: Callable[..., Relay],
    run: Callable[..., Runner],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    # A time limit takes the consumer off the fast path (worker/fastpath.py).
    limit = {"time_limit": 30.0} if path == "general" else {}
    relay, done = _recorded(make_relay, "kill", **limit)
    # The worker's own code (not a handler) dies on this thread, mid-batch: in the
    # decoding of an entry on the fast path, in handle_entry on the general one.
    if path == "fast":
        killed, victims = _die_once(monkeypatch, fastpath, "fresh_envelope", 0)
    else:
        killed, victims = _die_once(monkeypatch, runner_mod, "handle_entry", 4)
    queue = relay.queue("kill")
    queue.put_many([{"n": 0, "kill": True}, *({"n": n} for n in range(1, 5))])
    caplog.set_level(logging.INFO, "redrelay")
    run(relay)
    wait_for(killed.is_set, what="the kill")
    (first,) = victims
    wait_for(lambda: len(done) == 5, timeout=20, what=lambda: done)
    # Nothing ran before the dead thread's lease ran out: every message came back under
    # the lease rule, delivered a second time, to the new thread.
    assert sorted(done) == [(n, 2) for n in range(5)]
    stats = wait_for(lambda: (s := queue.stats()).in_flight == 0 and s, what="acks")
    assert stats.counters.get("recovered") == 5
    assert (stats.ready, stats.dead, stats.consumers, stats.expired) == (0, 0, 1, 0)
    (second,) = _threads("kill")
    assert second is not first and not first.is_alive()
    died = _died_logged(caplog, "SystemExit: killed from the inside")
    assert died.exc_info is not None  # the traceback of what ended the thread


def test_a_stuck_consumer_thread_is_replaced(
    make_relay: Callable[..., Relay],
    run: Callable[..., Runner],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay, done = _recorded(make_relay, "stuck")

    # The first thread hangs in the worker's own code (a fetch that never returns)
    # after its first batch, before it could ack it: no handler is running.
    original, release, hung = Fetcher.next, threading.Event(), threading.Event()
    calls: dict[int, int] = {}

    def hanging(self: Fetcher, acks: list[str]) -> Any:
        me = threading.get_ident()
        calls[me] = calls.get(me, 0) + 1
        if calls[me] == 2 and not hung.is_set():
            hung.set()
            release.wait(30)
        return original(self, acks)

    monkeypatch.setattr(Fetcher, "next", hanging)
    queue = relay.queue("stuck")
    queue.put_many([{"n": n} for n in range(3)])
    caplog.set_level(logging.INFO, "redrelay")
    try:
        run(relay)
        wait_for(hung.is_set, what="the hang")
        # Handled once, never acked; the keeper stops renewing the stuck thread's lease.
        wait_for(lambda: len(done) == 6, timeout=20, what=lambda: done)
        assert sorted(done) == [(n, a) for n in range(3) for a in (1, 2)]
        assert any(
            r.levelno == logging.ERROR and "stuck" in r.getMessage()
            for r in caplog.records
        )
        wait_for(lambda: queue.stats().in_flight == 0, what="acks")
        assert queue.stats().counters.get("recovered") == 3
    finally:
        release.set()


def test_a_worker_that_cannot_keep_its_threads_alive_exits_3(
    make_relay: Callable[..., Relay],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay = make_relay(lease=1.0, heartbeat=0.2)

    @relay.consumer("doomed")
    def handler(message: Message) -> None:
        pass

    def dead(self: Fetcher, acks: list[str]) -> Any:
        raise SystemExit("every consumer thread dies at once")

    monkeypatch.setattr(Fetcher, "next", dead)
    monkeypatch.setattr(liveness, "MAX_REVIVALS", 2)
    caplog.set_level(logging.INFO, "redrelay")
    assert Worker(relay, subscribers=False, grace=2).run() == liveness.EXIT_UNHEALTHY
    assert sum("died" in r.getMessage() for r in caplog.records) == 3
    assert any(r.levelno == logging.CRITICAL for r in caplog.records)


@pytest.mark.parametrize("raised", [GeneratorExit, KeyboardInterrupt, SystemExit])
def test_failures_are_logged_and_hooked(
    make_relay: Callable[..., Relay],
    run: Callable[..., Runner],
    caplog: pytest.LogCaptureFixture,
    raised: type[BaseException],
) -> None:
    failures: list[Failure] = []
    dead: list[Failure] = []
    relay = make_relay(on_failure=failures.append, on_dead=dead.append)

    @relay.consumer("hooks", retries=1, backoff=0.01)
    def handler(message: Message) -> None:
        raise raised("from the handler")

    caplog.set_level(logging.INFO, "redrelay")
    message_id = relay.queue("hooks").put({"x": 1})
    run(relay)
    wait_for(lambda: relay.queue("hooks").stats().dead == 1, what="the dead letter")
    assert [(f.kind, f.name, f.attempt, type(f.error)) for f in failures] == [
        ("queue", "hooks", 1, raised),
        ("queue", "hooks", 2, raised),
    ]
    assert failures[0].retry_in is not None and failures[1].retry_in is None
    assert failures[0].message is not None and failures[0].message.id == message_id
    (final,) = dead
    assert final.dead and final.error is failures[1].error
    assert final.reason is not None and raised.__name__ in final.reason
    lines = [r for r in caplog.records if r.name == "redrelay.worker"]
    retry = [r for r in lines if "retrying in" in r.getMessage()]
    assert [r.levelno for r in retry] == [logging.WARNING]
    assert retry[0].exc_info is not None  # with the traceback
    buried = [r for r in lines if "dead-lettered" in r.getMessage()]
    assert [r.levelno for r in buried] == [logging.ERROR]
    assert buried[0].exc_info is not None


def test_a_hook_that_raises_is_logged_not_fatal(
    make_relay: Callable[..., Relay],
    run: Callable[..., Runner],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(failure: Failure) -> None:
        raise ValueError("the hook is broken")

    relay = make_relay(on_failure=broken, on_dead=broken)

    @relay.consumer("broken-hook", retries=0)
    def handler(message: Message) -> None:
        raise RuntimeError("fails")

    relay.queue("broken-hook").put_many([1, 2])
    run(relay)
    wait_for(lambda: relay.queue("broken-hook").stats().dead == 2, what="dead")
    assert sum("hook raised" in r.getMessage() for r in caplog.records) == 4


@pytest.mark.parametrize("path", ["fast", "general"])
def test_a_topic_consumer_thread_killed_from_the_inside_comes_back(
    make_relay: Callable[..., Relay],
    run: Callable[..., Runner],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    import redrelay.worker.topic_batch as topic_batch

    # A signing key takes first deliveries off the short way (worker/topic_batch.py).
    signed = {"signing_key": "k" * 32} if path == "general" else {}
    relay = make_relay(lease=1.0, heartbeat=0.2, **signed)
    done: list[tuple[int, int]] = []

    @relay.subscriber("events", group="g", start="beginning", prefetch=5)
    def handler(message: Message) -> None:
        done.append((message.body["n"], message.attempt))

    if path == "fast":
        killed, _ = _die_once(monkeypatch, topic_batch, "fresh_envelope", 0)
    else:
        killed, _ = _die_once(monkeypatch, topic_batch, "begin", 3)
    topic = relay.topic("events")
    topic.publish_many([{"n": 0, "kill": True}, *({"n": n} for n in range(1, 5))])
    caplog.set_level(logging.INFO, "redrelay")
    runner = run(relay)
    assert runner.topics is not None
    wait_for(killed.is_set, what="the kill")
    wait_for(lambda: len(done) == 5, timeout=20, what=lambda: done)
    assert sorted(done) == [(n, 2) for n in range(5)]  # back after the lease ran out
    assert runner.topics.idle()
    _died_logged(caplog, "topic events/g")
    assert all(t.is_alive() for t in runner.topics._threads)


def test_a_late_keeper_judges_no_thread(make_relay: Callable[..., Relay]) -> None:
    """After SIGSTOP/SIGCONT (or a paused VM) every thread looks late, the keeper too:
    that gap is the lease rule's business, not a stuck thread. (A gap the keeper ran
    through on time is: test_a_stuck_consumer_thread_is_replaced.)"""
    import time
    from types import SimpleNamespace

    from redrelay.worker.timelimit import Slot

    relay = make_relay(lease=1.0)

    @relay.consumer("late")
    def handler(message: Message) -> None:
        pass

    frozen = threading.Event()
    slot = Slot(relay.consumers["late"], None)  # type: ignore[arg-type]
    slot.pulse.thread = threading.Thread(target=frozen.wait, daemon=True)
    slot.pulse.thread.start()
    try:
        now = time.monotonic()
        runner = SimpleNamespace(
            _stopping=threading.Event(),
            _slots=[slot],
            poll=0.05,
            _last_check=now - 10,  # the keeper stood still with the whole process
            _reachable_since=now - 10,
        )
        slot.pulse.beat = now - 10
        liveness.check_threads(runner)  # type: ignore[arg-type]
        assert runner._slots == [slot] and not slot.abandoned
        assert runner._reachable_since >= now  # the window starts again
        assert slot.pulse.verdict(now + 5, 1.1, runner._reachable_since) == "stuck"
    finally:
        frozen.set()


def test_an_uncounted_retry_is_no_failure(
    make_relay: Callable[..., Relay],
    run: Callable[..., Runner],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from redrelay import Retry

    failures: list[Failure] = []
    relay = make_relay(on_failure=failures.append)
    calls: list[int] = []

    @relay.consumer("later")
    def handler(message: Message) -> None:
        calls.append(message.attempt)
        if len(calls) == 1:
            raise Retry(delay=0.01, count=False)

    caplog.set_level(logging.INFO, "redrelay")
    relay.queue("later").put(1)
    run(relay)
    wait_for(lambda: relay.queue("later").stats().counters.get("acked"), what="ack")
    assert calls == [1, 2] and failures == []
    asked = [r for r in caplog.records if "asked for a retry" in r.getMessage()]
    assert [r.levelno for r in asked] == [logging.INFO]


def test_a_dead_subscriber_thread_comes_back(
    make_relay: Callable[..., Relay],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from redrelay._subscriber import _Worker
    from redrelay.handlers import Subscriber
    from redrelay.listener import Listener

    relay = make_relay()
    got: list[Message] = []
    original, killed = _Worker._handle, threading.Event()

    def dying(self: _Worker, message: Message) -> None:
        if message.body == "kill" and not killed.is_set():
            killed.set()
            raise SystemExit("killed from the inside")  # outside the handler
        original(self, message)

    monkeypatch.setattr(_Worker, "_handle", dying)
    caplog.set_level(logging.INFO, "redrelay")
    news = Subscriber(channel="news", pattern=False, handler=got.append)
    listener = Listener(relay, [news], poll_interval=0.05)
    listener.start()
    try:
        wait_for(listener.connected.is_set, what="subscribed")
        relay.publish("news", "kill")
        wait_for(killed.is_set, what="the kill")
        relay.publish("news", "after")
        wait_for(lambda: [m.body for m in got] == ["after"], what=lambda: got)
    finally:
        listener.stop()
    died = [r for r in caplog.records if "subscriber thread" in r.getMessage()]
    assert died and died[0].levelno == logging.ERROR
    assert "SystemExit: killed from the inside" in died[0].getMessage()
