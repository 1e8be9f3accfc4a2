"""Flow limits: rate, concurrency and per-key limits, held across every worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from redrelay import ConfigurationError, Message, Relay
from redrelay.worker.runner import Runner

from ..processes import Worker, wait_for


@pytest.fixture
def start_limited(redrelay_url: str, relay: Relay) -> Iterator[Callable[..., Worker]]:
    """Workers of ``tests/apps/limits_app.py`` on the test relay's namespace."""
    started: list[Worker] = []

    def start(**env: str) -> Worker:
        env = {"TEST_NAMESPACE": relay.namespace, **env}
        worker = Worker("tests.apps.limits_app:relay", redrelay_url, env=env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


def _log(relay: Relay) -> list[tuple[str, int, float, int]]:
    """(id, pid, start time, running at start) of every handler run, in order."""
    raw = relay.connection.call("LRANGE", f"{relay.namespace}:test:log", 0, -1)
    out = []
    for item in raw:
        msg_id, pid, started, running = item.decode().split()
        out.append((msg_id, int(pid), float(started), int(running)))
    return out


def _most_in_one_second(times: list[float]) -> int:
    """The most start times in any window of one second, ``(t - 1, t]``."""
    times = sorted(times)
    most, j = 0, 0
    for i, start in enumerate(times):
        while times[j] <= start - 1.0:
            j += 1
        most = max(most, i - j + 1)
    return most


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param(10, id="10s"),
        pytest.param(30, id="30s", marks=[pytest.mark.soak, pytest.mark.timeout(300)]),
    ],
)
def test_rate_is_held_across_four_worker_processes(
    relay: Relay, start_limited: Callable[..., Worker], seconds: int
) -> None:
    """100/s, four processes of two threads: on average at most 2% over (and at most 5%
    under), and never above rate + burst (100 + 20) in any one-second window.

    The CI size runs 10 s, the soak size 30 s. The same 2% holds for both: the limit is
    one token bucket on the server's clock, so the count in a window is off by a few
    messages at its two edges (a handler starts a few ms after its hand-out), whatever
    its length; 2% of 9 s is 18 messages, several times that edge error."""
    q = relay.queue("limited")
    rate, burst = 100, 20
    q.put_many([{} for _ in range(rate * seconds + 600)])
    for _ in range(4):
        # one message per fetch: a handler starts when its message is handed out, so
        # the start times the handlers record are the hand-out times the limit bounds
        start_limited(TEST_RATE_LIMIT=f"{rate}/s", TEST_PREFETCH="1")
    wait_for(
        lambda: len(_log(relay)) >= rate * seconds + burst + 200,
        timeout=seconds + 40,
        interval=0.5,
        what=f"the limited queue ran for {seconds + 2} s",
    )
    times = sorted(t for _, _, t, _ in _log(relay))
    first = times[0]
    pids = {pid for _, pid, _, _ in _log(relay)}
    assert len(pids) == 4, "all four workers took part"
    # The steady rate, once the initial burst is spent: a window that starts one second
    # after the first hand-out, not at it, has the same few ms of start-up lag at both
    # of its edges (a window that opens on a recorded start loses the late starts at
    # its end only, up to 2% of 10 s on a loaded machine).
    start, end = first + 1.0, first + seconds
    in_window = sum(1 for t in times if start <= t < end)
    measured = in_window / (end - start)
    most = _most_in_one_second(times)
    print(f"rate {measured:.2f}/s over {end - start:g} s; at most {most} in one second")
    # Held: never more than 2% over. Used: at most 5% under, the lower side being the
    # workers' own pace on a loaded machine (a handler starved for a few hundred ms at an
    # edge of the window), which is not what the limit decides.
    assert rate * 0.95 <= measured <= rate * 1.02, measured
    # The times are handler starts, a few ms after the hand-outs the limit counts (thread
    # scheduling on a busy machine): one handed out just before a window may start inside
    # it. Two messages of slack for that; the limit itself allows rate + burst.
    assert most <= rate + burst + 2
    counters = q.stats().counters
    assert counters["held_rate"] > 0
    assert counters.get("dead", 0) == counters.get("retried", 0) == 0


def test_concurrency_cap_holds_and_a_killed_worker_gives_its_slots_back(
    relay: Relay, start_limited: Callable[..., Worker]
) -> None:
    q = relay.queue("limited")
    q.put_many([{"s": 0.3} for _ in range(200)])
    env = {"TEST_CONCURRENCY_LIMIT": "3", "TEST_CONCURRENCY": "4", "TEST_LEASE": "1"}
    a = start_limited(**env)
    wait_for(
        lambda: sum(1 for _, pid, _, _ in _log(relay) if pid == a.proc.pid) >= 3,
        what="worker a busy",
    )
    b = start_limited(**env)
    # b has joined, and its fetches are held: a holds every slot (a thread that frees
    # one takes it again with the fetch that carries its ack)
    wait_for(lambda: q.stats().consumers == 2, what="worker b joined")
    wait_for(
        lambda: q.stats().counters.get("held_concurrency", 0) > 10,
        what="fetches held back",
    )
    assert relay.connection.call("ZCOUNT", f"{relay.namespace}:test:running",
                                 a.proc.pid, a.proc.pid) > 0  # fmt: skip
    a.proc.kill()
    a.proc.wait(10)
    killed = time.time()
    # what the killed handlers held is no longer running: take it off the gauge
    relay.connection.call("ZREMRANGEBYSCORE", f"{relay.namespace}:test:running",
                          a.proc.pid, a.proc.pid)  # fmt: skip

    def restored() -> bool:
        return any(
            pid == b.proc.pid and started > killed and running == 3
            for _, pid, started, running in _log(relay)
        )

    wait_for(restored, timeout=10, what="b runs three at once")
    back = min(
        started
        for _, pid, started, running in _log(relay)
        if pid == b.proc.pid and started > killed and running == 3
    )
    assert back - killed <= 1.0 + 1.0  # lease + 1 s
    assert max(running for *_, running in _log(relay)) <= 3


def test_tight_rate_never_uses_up_retries(relay: Relay) -> None:
    """retries=0 and a limit far below the backlog: every message still succeeds, held
    back in the queue rather than failed."""
    done: list[int] = []

    @relay.consumer("q", rate_limit="200/s", burst=5, retries=0, concurrency=3)
    def handle(message: Message) -> None:
        done.append(message.body)

    q = relay.queue("q")
    q.put_many(range(300))
    relay.drain(timeout=30)
    assert sorted(done) == list(range(300))
    stats = q.stats()
    assert (stats.dead, stats.counters.get("retried", 0)) == (0, 0)
    assert stats.counters["held_rate"] > 0
    assert stats.limits == "rate=200/1s+5 concurrency=- key_rate=-"


def test_concurrency_cap_in_one_process(relay: Relay) -> None:
    running, most, lock = 0, 0, threading.Lock()

    @relay.consumer("q", concurrency=6, concurrency_limit=2)
    def handle(message: Message) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.01)
        with lock:
            running -= 1

    relay.queue("q").put_many(range(60))
    relay.drain(timeout=30)
    assert most == 2
    assert relay.queue("q").stats().counters["acked"] == 60


def test_hot_key_does_not_hold_back_cold_keys(relay: Relay) -> None:
    """One tenant with 2,000 queued messages, 1,000 tenants with one each, behind it:
    the hot key is parked at its rate, and the cold keys run at once."""
    done: dict[str, int] = {}
    lock = threading.Lock()

    @relay.consumer("q", limit_key="tenant", key_rate_limit="20/s", concurrency=2)
    def handle(message: Message) -> None:
        with lock:
            tenant = message.headers["tenant"]
            done[tenant] = done.get(tenant, 0) + 1

    q = relay.queue("q")
    q.put_many(range(2000), headers={"tenant": "hot"})
    for n in range(1000):
        q.put(n, headers={"tenant": f"cold-{n}"})
    runner = Runner(relay, subscribers=False, poll=0.05)
    runner.start()
    try:
        wait_for(
            lambda: sum(1 for k in list(done) if k.startswith("cold-")) == 1000,
            timeout=60,
            what="every cold key ran",
        )
        hot = done.get("hot", 0)
        stats = q.stats()
    finally:
        runner.stop()
    # the cold keys were not served behind the hot backlog (2,000 at 20/s: 100 s)
    assert hot < 400, hot
    assert stats.parked > 1000 and stats.parked_keys == ["hot"]
    assert stats.counters["parked"] >= stats.parked


def test_workers_that_disagree_on_limits_are_refused(
    relay: Relay, make_relay: Callable[..., Relay]
) -> None:
    @relay.consumer("q", rate_limit="10/s")
    def handle(message: Message) -> None:
        pass

    first = Runner(relay, subscribers=False)
    first.start()
    try:
        other = make_relay(namespace=relay.namespace)

        @other.consumer("q", rate_limit="20/s")
        def handle_too(message: Message) -> None:
            pass

        with pytest.raises(ConfigurationError, match="live workers run it with other"):
            Runner(other, subscribers=False).start()
    finally:
        first.stop()


def test_limits_on_a_sharded_queue_are_refused(relay: Relay) -> None:
    @relay.consumer("q", shards=2, concurrency_limit=2)
    def handle(message: Message) -> None:
        pass

    with pytest.raises(ConfigurationError, match="not supported on sharded"):
        Runner(relay, subscribers=False).start()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"rate_limit": "fast"}, r"rate_limit= must look like '100/s'"),
        ({"rate_limit": "0/s"}, "rate_limit= must look like"),
        ({"rate_limit": 100}, "rate_limit= must look like"),
        ({"rate_limit": "10/s", "burst": 0}, r"burst= must be an int >= 1"),
        ({"burst": 3}, "burst= needs rate_limit="),
        ({"concurrency_limit": 0}, r"concurrency_limit= must be an int from 1"),
        ({"key_rate_limit": "5/s"}, "key_rate_limit= needs limit_key="),
        ({"limit_key": 3}, "limit_key= must be a header name"),
    ],
)
def test_bad_limits_are_refused_at_registration(
    relay: Relay, options: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        relay.consumer("q", **options)


def test_rate_spellings(relay: Relay) -> None:
    from redrelay.protocol.flow import RateLimit

    assert RateLimit.parse("100/s") == RateLimit(100, 1, 20)
    assert RateLimit.parse("30/m").per_second == 0.5
    assert RateLimit.parse("30/m").burst == 1
    assert RateLimit.parse("5/10s") == RateLimit(5, 10, 1)
    assert RateLimit.parse("7200/h", 9).per_second == 2
    assert RateLimit.parse("7200/h", 9).burst == 9


def test_redis_holds_the_limits(relay: Relay) -> None:
    """Stats name the limits; the buckets live in Redis (no per-process state)."""

    @relay.consumer("q", rate_limit="1000/s", concurrency_limit=5)
    def handle(message: Message) -> None:
        pass

    relay.queue("q").put_many(range(10))
    relay.drain(timeout=10)
    stats = relay.queue("q").stats()
    assert stats.limits == "rate=1000/1s+200 concurrency=5 key_rate=-"
    spec = relay.connection.call("HGET", relay.queue("q").keys.limits, "spec")
    assert spec == stats.limits.encode()


def test_flow_limits_are_refused_on_topic_subscribers(relay: Relay) -> None:
    with pytest.raises(
        ConfigurationError, match="rate_limit: flow limits apply to queues"
    ):
        relay.subscriber("events", group="g", rate_limit="5/s")
