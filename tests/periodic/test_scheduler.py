"""The scheduler against a real Redis: a simulated week on a fake clock with restarts and
outages (each misfire policy), racing claims, deploys, pause/resume/trigger, shards."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone

import pytest

from redrelay import Relay
from redrelay.protocol.schedule import plan_fire
from redrelay.protocol.schedule_time import iso_utc
from redrelay.worker.periodic import Scheduler

MakeRelay = Callable[..., Relay]
HOUR = 3_600_000
MINUTE = 60_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


class Clock:
    """A fake clock in UTC ms, moved by the test (no sleeping)."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def scheduled_for(relay: Relay, queue: str) -> list[str]:
    """The ``scheduled_for`` header of every message in ``queue``, oldest first."""
    return [m.headers["scheduled_for"] for m in relay.queue(queue).peek(100_000)]


# -- a simulated week ----------------------------------------------------------------------

WEEK_START = ms("2026-03-25T00:03:00Z")  # Berlin's spring-forward is on the 29th
#: (from, to) of each outage: no scheduler runs in between.
OUTAGES = [
    (ms("2026-03-25T10:10:00Z"), ms("2026-03-25T16:20:00Z")),  # six ticks missed
    (ms("2026-03-27T00:05:00Z"), ms("2026-03-27T00:50:00Z")),  # no tick inside
    (ms("2026-03-28T22:10:00Z"), ms("2026-03-29T03:30:00Z")),  # across the DST jump
    (ms("2026-03-30T11:59:00Z"), ms("2026-03-30T12:01:00Z")),  # one tick, just late
    (ms("2026-03-31T05:00:00Z"), ms("2026-04-01T06:30:00Z")),  # a day: over catchup
]


def observations() -> list[int]:
    """When some scheduler runs a pass: every 7 minutes (and a few odd seconds), except
    during the outages."""
    out, at = [], WEEK_START
    while at < WEEK_START + 7 * 24 * HOUR:
        if not any(a <= at < b for a, b in OUTAGES):
            out.append(at)
        at += 7 * MINUTE + (at // MINUTE) % 3 * 1000
    return out


def reference(policy: str, catchup: int, grace: int) -> list[str]:
    """The expected ticks, from an independent model: Berlin's offsets are whole hours,
    so its ``0 * * * *`` ticks are the UTC hours (the skipped 02:00 merges into 03:00)."""
    obs = observations()
    first = (obs[0] // HOUR + 1) * HOUR
    expected: list[int] = []
    pending = first
    for at in obs:
        due = list(range(pending, at + 1, HOUR)) if pending <= at else []
        if not due:
            continue
        if policy == "coalesce":
            expected += due[-1:]
        elif policy == "all":
            expected += due[-catchup:]
        else:
            expected += [t for t in due if at - t <= grace][-catchup:]
        pending = (at // HOUR + 1) * HOUR
    return [iso_utc(t) for t in expected]


@pytest.mark.parametrize("policy", ["coalesce", "all", "skip"])
def test_simulated_week_with_restarts_and_outages(
    make_relay: MakeRelay, policy: str
) -> None:
    namespace = make_relay().namespace
    clock = Clock(WEEK_START)

    def worker() -> Scheduler:  # a fresh process: a new relay and a new scheduler
        relay = make_relay(namespace=namespace)
        relay.schedule(
            "hourly",
            "0 * * * *",
            queue="reports",
            tz="Europe/Berlin",
            misfire=policy,
            catchup=10,
            grace=600,
        )
        return Scheduler(relay, clock=clock)

    workers = [worker(), worker()]
    for n, at in enumerate(observations()):
        clock.now = at
        if n % 40 == 0:  # restarts: one of the two workers is replaced
            workers[n // 40 % 2] = worker()
        for w in workers if n % 3 == 0 else workers[:1]:  # sometimes both race
            w.run_once()
    got = scheduled_for(workers[0].relay, "reports")
    want = reference(policy, catchup=10, grace=600_000)
    assert got == want
    assert len(got) == len(set(got))
    # Sanity of the model itself: the outages did cost ticks under coalesce and skip.
    assert 100 < len(want) < 7 * 24
    [info] = workers[0].relay.schedules.info()
    day_of_ticks = 7 * 24 - 1  # the 02:00 of the 29th does not exist
    assert info.fired == len(want)
    assert info.missed >= 0 and info.fired + info.missed <= day_of_ticks


# -- racing claims -------------------------------------------------------------------------


def test_many_concurrent_claims_of_one_tick_have_one_winner(
    make_relay: MakeRelay,
) -> None:
    relay = make_relay()
    spec = relay.schedule("race", every=60, queue="ticks")
    schedules = relay.schedules
    conn = relay.connection
    where = conn.drive(schedules.where_plan(spec))
    state = conn.drive(schedules.read_plan(where.state))
    conn.drive(schedules.upsert_plan(spec, where, state))
    contenders = 16
    outcomes: list[int] = []
    lock = threading.Lock()
    for _ in range(10):  # ten ticks, each claimed by 16 threads at once
        state = conn.drive(schedules.read_plan(where.state))
        assert state.next is not None
        plan = plan_fire(spec, state.next, state.next)
        assert plan is not None
        barrier = threading.Barrier(contenders)

        def claim(state=state, plan=plan, barrier=barrier) -> None:  # type: ignore[no-untyped-def]
            own = relay.new_connection()
            try:
                barrier.wait(10)
                won = own.drive(schedules.fire_plan(spec, where, state, plan))
                with lock:
                    outcomes.append(won)
            finally:
                own.close()

        threads = [threading.Thread(target=claim) for _ in range(contenders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert sorted(outcomes) == [0] * (10 * (contenders - 1)) + [1] * 10
    got = scheduled_for(relay, "ticks")
    assert len(got) == 10 == len(set(got))


# -- deploys, pause, resume, trigger -------------------------------------------------------


def test_deploys_upsert_by_content(make_relay: MakeRelay) -> None:
    namespace = make_relay().namespace
    clock = Clock(ms("2026-06-01T10:20:00Z"))

    def deploy(cron: str, body: object = None) -> Scheduler:
        relay = make_relay(namespace=namespace)
        relay.schedule("job", cron, queue="jobs", body=body)
        scheduler = Scheduler(relay, clock=clock)
        scheduler.run_once()
        return scheduler

    first = deploy("0 * * * *")
    [info] = first.relay.schedules.info()
    assert iso_utc(info.next or 0) == "2026-06-01T11:00:00Z"
    assert info.current is True
    clock.now = ms("2026-06-01T10:40:00Z")
    same = deploy("0 * * * *")  # unchanged: keeps its next tick
    [info] = same.relay.schedules.info()
    assert iso_utc(info.next or 0) == "2026-06-01T11:00:00Z"
    assert first.relay.schedules.info()[0].current is True
    changed = deploy("45 * * * *")  # changed: rescheduled from now
    [info] = changed.relay.schedules.info()
    assert iso_utc(info.next or 0) == "2026-06-01T10:45:00Z"
    assert first.relay.schedules.info()[0].current is False  # the old code sees it
    # The old definition's workers cannot fire the new one's ticks.
    clock.now = ms("2026-06-01T10:46:00Z")
    first.specs = list(first.relay.schedules)
    first._one(
        first.specs[0]
    )  # it redefines it back (an old worker in a rolling deploy)
    changed.run_once()  # and the new one takes it again
    got = scheduled_for(changed.relay, "jobs")
    assert len(got) == len(set(got))
    # A schedule no longer in code is reported, and removed on request.
    other = make_relay(namespace=namespace)
    other.schedule("else", every=60, queue="jobs")
    assert other.schedules.orphans() == ["job"]
    assert other.schedules.remove("job") is True
    assert other.schedules.info() == []


def test_pause_resume_and_trigger(make_relay: MakeRelay) -> None:
    relay = make_relay()
    relay.schedule("beat", every=60, queue="beats", body={"n": 1})
    clock = Clock(ms("2026-06-01T10:00:30Z"))
    scheduler = Scheduler(relay, clock=clock)
    scheduler.run_once()  # registers; next is 10:01
    clock.now = ms("2026-06-01T10:01:00Z")
    scheduler.run_once()
    assert scheduled_for(relay, "beats") == ["2026-06-01T10:01:00Z"]

    # The CLI's relay knows no code: it goes through the registry.
    cli_relay = make_relay(namespace=relay.namespace)
    cli_relay.schedules.pause("beat")
    clock.now = ms("2026-06-01T10:03:10Z")
    scheduler.run_once()
    [info] = cli_relay.schedules.info()
    assert info.paused and info.paused_skipped == 2
    cli_relay.schedules.resume("beat")
    clock.now = ms("2026-06-01T10:04:00Z")
    scheduler.run_once()
    assert scheduled_for(relay, "beats")[-1] == "2026-06-01T10:04:00Z"
    assert len(scheduled_for(relay, "beats")) == 2

    # A trigger request from the CLI: a scheduler serves it, the tick is not consumed.
    assert cli_relay.schedules.trigger("beat") is None
    twin = make_relay(namespace=relay.namespace)
    twin.schedule("beat", every=60, queue="beats", body={"n": 1})
    other = Scheduler(twin, clock=clock)
    next_before = cli_relay.schedules.info()[0].next
    scheduler.run_once()
    other.run_once()  # a second worker finds the request already served
    [info] = cli_relay.schedules.info()
    assert (
        info.next == next_before and info.triggered == 1 and info.pending_triggers == 0
    )
    messages = relay.queue("beats").peek(10)
    assert len(messages) == 3
    assert messages[-1].headers["triggered"] == "1" and messages[-1].body == {"n": 1}
    # Declared here: enqueued at once, with its id.
    msg_id = relay.schedules.trigger("beat")
    assert msg_id == relay.queue("beats").peek(10)[-1].id
    assert relay.queue("beats").stats().ready == 4


def test_sharded_target_queue(make_relay: MakeRelay) -> None:
    relay = make_relay()
    relay.queue("fanout", shards=4)
    relay.schedule("s", every=60, queue="fanout")
    clock = Clock(ms("2026-06-01T10:00:30Z"))
    scheduler = Scheduler(relay, clock=clock)
    scheduler.run_once()
    for minute in range(1, 4):
        clock.now = ms(f"2026-06-01T10:0{minute}:00Z")
        scheduler.run_once()
    assert relay.queue("fanout").stats().ready == 3
    assert len(set(scheduled_for(relay, "fanout"))) == 3


def test_real_clock_in_a_started_relay(make_relay: MakeRelay) -> None:
    """relay.start() runs the scheduler on the server's clock; the handler sees
    scheduled_for and the schedule name."""
    relay = make_relay()
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    @relay.periodic("* * * * * *")  # every second
    def tick(message) -> None:  # type: ignore[no-untyped-def]
        seen.append((message.headers["scheduled_for"], message.headers["schedule"]))
        if len(seen) >= 2:
            done.set()

    relay.start()
    try:
        assert done.wait(20)
    finally:
        relay.stop()
    first, second = seen[0][0], seen[1][0]
    assert first < second and seen[0][1] == relay.schedules.get(seen[0][1]).name  # type: ignore[union-attr]
    parsed = datetime.fromisoformat(first.replace("Z", "+00:00"))
    assert parsed.tzinfo == timezone.utc and parsed.microsecond == 0


def test_async_twins(make_relay: MakeRelay) -> None:
    """ainfo/apause/aresume/atrigger/aremove drive the same plans on redis.asyncio."""
    import asyncio

    relay = make_relay()
    relay.schedule("a", every=60, queue="aq", body="x")
    Scheduler(relay, clock=Clock(ms("2026-06-01T10:00:30Z"))).run_once()
    remote = make_relay(namespace=relay.namespace)  # declares nothing: by name

    async def steer() -> tuple[list[bool], str | None, str | None, bool, list[str]]:
        await remote.schedules.apause("a")
        paused = [(await remote.schedules.ainfo())[0].paused]
        await remote.schedules.aresume("a")
        paused.append((await remote.schedules.ainfo())[0].paused)
        requested = await remote.schedules.atrigger("a")
        direct = await relay.schedules.atrigger("a")
        removed = await remote.schedules.aremove("a")
        ids = [m.id for m in (relay.queue("aq").peek(5))]
        await relay.aclose()
        await remote.aclose()
        return paused, requested, direct, removed, ids

    paused, requested, direct, removed, ids = asyncio.run(steer())
    assert paused == [True, False] and requested is None and removed
    assert direct is not None and ids == [direct]


@pytest.mark.parametrize("policy", ["coalesce", "skip"])
def test_missed_ticks_are_counted_and_logged(
    make_relay: MakeRelay, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    relay = make_relay()
    relay.schedule("m", every=60, queue="mq", misfire=policy, grace=1)
    clock = Clock(ms("2026-06-01T10:00:30Z"))
    scheduler = Scheduler(relay, clock=clock)
    scheduler.run_once()
    clock.now = ms("2026-06-01T10:05:30Z")  # 10:01 .. 10:05 due, all late by 30 s
    with caplog.at_level("WARNING", logger="redrelay.scheduler"):
        scheduler.run_once()
    [info] = relay.schedules.info()
    enqueued = 1 if policy == "coalesce" else 0
    assert (info.fired, info.missed) == (enqueued, 5 - enqueued)
    assert f"{5 - enqueued} tick(s) missed (misfire={policy})" in caplog.text


@pytest.mark.parametrize(
    ("cron", "tz", "start", "want"),
    [
        (  # spring forward: 02:30 does not exist, fires at 03:00 CEST
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-27T12:00:00Z",
            ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        ),
        (  # fall back: 02:30 occurs twice, fires once
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-23T12:00:00Z",
            ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
        ),
        (
            "30 2 * * *",
            "America/New_York",
            "2026-03-07T12:00:00Z",
            ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"],
        ),
        (
            "30 1 * * *",
            "America/New_York",
            "2026-10-31T12:00:00Z",
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z", "2026-11-03T06:30:00Z"],
        ),
        (  # a 30-minute jump: 02:00 and 02:15 do not exist, once at 02:30 (+11)
            "*/15 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-03T13:00:00Z",
            [
                "2026-10-03T15:30:00Z",
                "2026-10-03T15:45:00Z",
                "2026-10-04T15:00:00Z",
                "2026-10-04T15:15:00Z",
                "2026-10-04T15:30:00Z",
                "2026-10-04T15:45:00Z",
            ],
        ),
    ],
)
def test_dst_days_through_the_scheduler(
    make_relay: MakeRelay, cron: str, tz: str, start: str, want: list[str]
) -> None:
    """The DST rules end to end: a fake clock walks the days in 5-minute steps."""
    relay = make_relay()
    relay.schedule("dst", cron, queue="dst", tz=tz)
    clock = Clock(ms(start))
    scheduler = Scheduler(relay, clock=clock)
    end = ms(want[-1]) + 5 * MINUTE
    while clock.now <= end:
        scheduler.run_once()
        clock.now += 5 * MINUTE
    assert scheduled_for(relay, "dst") == want
    assert relay.schedules.info()[0].missed == 0
