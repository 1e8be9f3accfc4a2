"""Tick timing without Redis: crontab forms, declaration errors, DST in three zones, and a
Hypothesis property against croniter."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from redrelay import ConfigurationError, Relay
from redrelay.protocol.schedule import build_spec, plan_fire
from redrelay.protocol.schedule_time import (
    CronTiming,
    IntervalTiming,
    iso_utc,
    local_to_utc_ms,
)


def ms(text: str) -> int:
    """``2026-03-29T01:00:00Z`` -> UTC ms."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1000)


def ticks(timing: CronTiming | IntervalTiming, start: str, count: int) -> list[str]:
    out, at = [], ms(start)
    for _ in range(count):
        at = timing.next_after(at)
        out.append(iso_utc(at))
    return out


def test_five_six_fields_and_aliases() -> None:
    assert ticks(CronTiming("*/20 * * * *"), "2026-01-01T00:00:00Z", 3) == [
        "2026-01-01T00:20:00Z",
        "2026-01-01T00:40:00Z",
        "2026-01-01T01:00:00Z",
    ]
    # Six fields: seconds first.
    assert ticks(CronTiming("*/15 * * * * *"), "2026-01-01T00:00:50Z", 2) == [
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:01:15Z",
    ]
    assert ticks(CronTiming("@hourly"), "2026-01-01T00:30:00Z", 1) == [
        "2026-01-01T01:00:00Z"
    ]
    assert ticks(CronTiming("@weekly"), "2026-01-01T00:00:00Z", 1) == [
        "2026-01-04T00:00:00Z"  # a Sunday
    ]
    assert ticks(IntervalTiming(90_000), "2026-01-01T00:00:00Z", 2) == [
        "2026-01-01T00:01:30Z",
        "2026-01-01T00:03:00Z",
    ]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"cron": "61 * * * *"}, "not a valid crontab"),
        ({"cron": "* * * *"}, "has 4 fields"),
        ({"cron": "@reboot"}, "alias '@reboot' is not known"),
        ({"cron": "0 0 31 2 *"}, "never fires"),
        ({"cron": 5}, "cron must be a crontab string"),
        ({"cron": "0 * * * *", "tz": "Mars/Olympus"}, "not a known IANA time zone"),
        ({"cron": None}, "exactly one of cron= (a crontab) and every="),
        ({"cron": "0 * * * *", "every": 60}, "exactly one of"),
        ({"cron": None, "every": 0.5}, "at least 1 second"),
        ({"cron": None, "every": 60, "tz": "Europe/Berlin"}, "tz= applies to cron="),
        ({"cron": "0 * * * *", "misfire": "later"}, "misfire='later' is not a policy"),
        ({"cron": "0 * * * *", "catchup": 0}, "catchup= must be an int"),
        ({"cron": "0 * * * *", "body": {1, 2}}, "body= must be JSON-compatible"),
        ({"cron": "0 * * * *", "jitter": -1}, "jitter= must be 0 or more seconds"),
    ],
)
def test_bad_declarations_fail_at_once(
    kwargs: dict[str, object], fragment: str
) -> None:
    cron = kwargs.pop("cron")
    with pytest.raises(ConfigurationError) as info:
        build_spec("job", cron, queue="q", **kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_same_name_twice() -> None:
    relay = Relay("redis://localhost:1")
    relay.schedule("nightly", "0 3 * * *", queue="reports")
    relay.schedule("nightly", "0 3 * * *", queue="reports")  # the same: fine
    with pytest.raises(ConfigurationError, match="already declared with another"):
        relay.schedule("nightly", "0 4 * * *", queue="reports")
    with pytest.raises(ConfigurationError, match="already declared with another"):
        relay.schedule("nightly", "0 3 * * *", queue="reports", body={"v": 2})


def test_periodic_declares_consumer_and_schedule() -> None:
    relay = Relay("redis://localhost:1")

    @relay.periodic("*/5 * * * *", tz="Europe/Berlin", retries=3)
    def sync_prices(message: object) -> None: ...

    [spec] = list(relay.schedules)
    assert spec.queue == spec.name
    assert spec.queue.startswith("periodic.") and spec.queue.endswith("sync_prices")
    assert relay.consumers[spec.queue].options.retries == 3
    with pytest.raises(ConfigurationError, match="not a known IANA"):
        relay.periodic("0 * * * *", tz="Nowhere/Land")(sync_prices)


# -- DST -----------------------------------------------------------------------------------


def test_berlin_spring_forward_and_fall_back() -> None:
    daily = CronTiming("30 2 * * *", "Europe/Berlin")
    # 2026-03-29: 02:00 CET -> 03:00 CEST; 02:30 does not exist: fire at 03:00 CEST.
    assert ticks(daily, "2026-03-27T12:00:00Z", 3) == [
        "2026-03-28T01:30:00Z",  # 02:30 CET
        "2026-03-29T01:00:00Z",  # 03:00 CEST, the first valid instant
        "2026-03-30T00:30:00Z",  # 02:30 CEST
    ]
    # 2026-10-25: 03:00 CEST -> 02:00 CET; 02:30 occurs twice: fire once, the first.
    assert ticks(daily, "2026-10-23T12:00:00Z", 3) == [
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",  # 02:30 CEST (not 01:30Z as well)
        "2026-10-26T01:30:00Z",
    ]
    # Several ticks in the gap fire once, merged with 03:00's own tick.
    quarter = CronTiming("*/30 2-3 * * *", "Europe/Berlin")
    assert ticks(quarter, "2026-03-29T00:00:00Z", 3) == [
        "2026-03-29T01:00:00Z",  # 02:00, 02:30 (gap) and 03:00: once
        "2026-03-29T01:30:00Z",  # 03:30 CEST
        "2026-03-30T00:00:00Z",  # 02:00 CEST next day
    ]
    # In the repeated hour each local time fires once.
    assert ticks(quarter, "2026-10-24T23:00:00Z", 5) == [
        "2026-10-25T00:00:00Z",  # 02:00 CEST
        "2026-10-25T00:30:00Z",  # 02:30 CEST (02:00/02:30 CET are skipped)
        "2026-10-25T02:00:00Z",  # 03:00 CET
        "2026-10-25T02:30:00Z",  # 03:30 CET
        "2026-10-26T01:00:00Z",
    ]


def test_new_york() -> None:
    daily = CronTiming("30 2 * * *", "America/New_York")
    # 2026-03-08: 02:00 EST -> 03:00 EDT.
    assert ticks(daily, "2026-03-07T12:00:00Z", 3) == [
        "2026-03-08T07:00:00Z",  # 03:00 EDT
        "2026-03-09T06:30:00Z",
        "2026-03-10T06:30:00Z",
    ]
    one_thirty = CronTiming("30 1 * * *", "America/New_York")
    # 2026-11-01: 02:00 EDT -> 01:00 EST; 01:30 twice, fired once (EDT).
    assert ticks(one_thirty, "2026-10-31T12:00:00Z", 3) == [
        "2026-11-01T05:30:00Z",
        "2026-11-02T06:30:00Z",
        "2026-11-03T06:30:00Z",
    ]


def test_lord_howe_half_hour_shift() -> None:
    """Lord Howe moves by 30 minutes: 02:00 -> 02:30 in October, 02:00 -> 01:30 in April."""
    zone = "Australia/Lord_Howe"
    every_15 = CronTiming("*/15 1-2 * * *", zone)
    got = ticks(every_15, "2026-10-03T13:00:00Z", 7)
    local = [
        datetime.fromisoformat(t.replace("Z", "+00:00"))
        .astimezone(ZoneInfo(zone))
        .strftime("%H:%M%z")
        for t in got
    ]
    # 02:00 and 02:15 do not exist on 2026-10-04: once, at 02:30.
    assert local == [
        "01:00+1030",
        "01:15+1030",
        "01:30+1030",
        "01:45+1030",
        "02:30+1100",
        "02:45+1100",
        "01:00+1100",
    ]
    got = ticks(every_15, "2026-04-04T13:00:00Z", 9)
    local = [
        datetime.fromisoformat(t.replace("Z", "+00:00"))
        .astimezone(ZoneInfo(zone))
        .strftime("%H:%M%z")
        for t in got
    ]
    # 2026-04-05 02:00 LHDT -> 01:30 LHST: 01:30 and 01:45 occur twice, fired once.
    assert local == [
        "01:00+1100",
        "01:15+1100",
        "01:30+1100",
        "01:45+1100",
        "02:00+1030",
        "02:15+1030",
        "02:30+1030",
        "02:45+1030",
        "01:00+1030",
    ]


def test_local_to_utc_rules() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert iso_utc(local_to_utc_ms(datetime(2026, 3, 29, 2, 59), berlin)) == (
        "2026-03-29T01:00:00Z"
    )
    assert iso_utc(local_to_utc_ms(datetime(2026, 10, 25, 2, 0), berlin)) == (
        "2026-10-25T00:00:00Z"
    )
    assert iso_utc(local_to_utc_ms(datetime(2026, 7, 1, 12, 0), berlin)) == (
        "2026-07-01T10:00:00Z"
    )


# -- the property --------------------------------------------------------------------------

_field = st.sampled_from(["*", "*/2", "*/7", "0", "5", "1-3", "10,20,30", "*/15"])
_hour = st.sampled_from(["*", "0", "2", "1-3", "*/6", "23"])
_dom = st.sampled_from(["*", "1", "15", "28", "*/10"])
_month = st.sampled_from(["*", "3", "10", "3,10", "*/4"])
_dow = st.sampled_from(["*", "0", "1-5", "6"])
_zones = st.sampled_from(
    ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
)
_starts = st.integers(
    min_value=ms("2024-01-01T00:00:00Z"), max_value=ms("2030-01-01T00:00:00Z")
)


@settings(max_examples=150, deadline=None)
@given(
    minute=_field,
    hour=_hour,
    dom=_dom,
    month=_month,
    dow=_dow,
    seconds=st.one_of(st.none(), _field),
    start=_starts,
)
def test_agrees_with_croniter_in_utc(
    minute: str,
    hour: str,
    dom: str,
    month: str,
    dow: str,
    seconds: str | None,
    start: int,
) -> None:
    expr = f"{minute} {hour} {dom} {month} {dow}"
    if seconds is not None:
        expr = f"{seconds} {expr}"
    timing = CronTiming(expr, "UTC")
    it = croniter(
        expr,
        datetime.fromtimestamp(start / 1000, timezone.utc),
        ret_type=datetime,
        second_at_beginning=seconds is not None,
    )
    at = start
    for _ in range(5):
        at = timing.next_after(at)
        assert at == int(it.get_next(datetime).timestamp() * 1000)


@settings(max_examples=150, deadline=None)
@given(minute=_field, hour=_hour, dom=_dom, month=_month, zone=_zones, start=_starts)
def test_strictly_increasing_in_every_zone(
    minute: str, hour: str, dom: str, month: str, zone: str, start: int
) -> None:
    """Ticks increase strictly, each is at a local time the crontab matches (or at the
    end of a DST gap), and none is skipped between two of them."""
    expr = f"{minute} {hour} {dom} {month} *"
    timing = CronTiming(expr, zone)
    tz = ZoneInfo(zone)
    at = start
    for _ in range(6):
        nxt = timing.next_after(at)
        assert nxt > at
        wall = datetime.fromtimestamp(nxt / 1000, tz).replace(tzinfo=None)
        before = datetime.fromtimestamp((nxt - 1) / 1000, tz)
        in_gap_end = (
            before.utcoffset() != datetime.fromtimestamp(nxt / 1000, tz).utcoffset()
        )
        assert croniter.match(expr, wall) or in_gap_end
        at = nxt


def test_plan_fire_policies() -> None:
    hourly = dict(queue="q")
    start = ms("2026-01-01T00:00:00Z")
    hour = 3_600_000
    now = start + 5 * hour + 10_000  # ticks 00:00 .. 05:00 are due: six of them

    coalesce = build_spec("c", "0 * * * *", **hourly)  # type: ignore[arg-type]
    plan = plan_fire(coalesce, start, now)
    assert plan is not None
    assert plan.ticks == [start + 5 * hour] and plan.missed == 5
    assert plan.next == start + 6 * hour

    every = build_spec("a", "0 * * * *", misfire="all", catchup=4, **hourly)  # type: ignore[arg-type]
    plan = plan_fire(every, start, now)
    assert plan is not None
    assert plan.ticks == [start + h * hour for h in range(2, 6)] and plan.missed == 2

    skip = build_spec("s", "0 * * * *", misfire="skip", grace=60, **hourly)  # type: ignore[arg-type]
    plan = plan_fire(skip, start, now)
    assert plan is not None
    assert plan.ticks == [start + 5 * hour] and plan.missed == 5
    plan = plan_fire(skip, start, start + 5 * hour + 61_000)
    assert plan is not None and plan.ticks == [] and plan.missed == 6

    assert plan_fire(coalesce, start, start - 1) is None
    jittered = build_spec("j", "0 * * * *", jitter=timedelta(minutes=5), **hourly)  # type: ignore[arg-type]
    delay = jittered.jitter(start)
    assert 0 <= delay <= 300_000 and delay == jittered.jitter(start)
    assert plan_fire(jittered, start, start + delay - 1) is None if delay else True
    assert plan_fire(jittered, start, start + delay) is not None
    # Under misfire="skip", a tick fired late by its own jitter is not skipped.
    late = build_spec(
        "k",
        "0 * * * *",
        misfire="skip",
        grace=1,
        jitter=3000,
        **hourly,  # type: ignore[arg-type]
    )
    tick = next(
        t for t in range(start, start + 100 * hour, hour) if late.jitter(t) > 1000
    )
    plan = plan_fire(late, tick, tick + late.jitter(tick))
    assert plan is not None and plan.ticks == [tick] and plan.missed == 0


def test_too_large_body_fails_at_declaration() -> None:
    from redrelay import MessageTooLarge

    relay = Relay("redis://localhost:1", max_message_size=1024)
    with pytest.raises(MessageTooLarge):
        relay.schedule("big", "0 * * * *", queue="q", body="x" * 2000)
    assert "big" not in relay.schedules
    relay.schedule("small", "0 * * * *", queue="q", body="x" * 100)


@pytest.mark.parametrize("policy", ["coalesce", "all", "skip"])
def test_long_backlog_over_several_firings(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog longer than one scan is worked off over several firings, with the same
    messages and the same missed count as one unbounded firing."""
    from redrelay.protocol import schedule

    spec = build_spec(
        "b", "* * * * * *", queue="q", misfire=policy, catchup=7, grace=20
    )
    start = ms("2026-01-01T00:00:00Z")
    now = start + 1000 * 1000  # 1001 ticks due

    def firings() -> tuple[list[int], int, int]:
        ticks, missed, at = [], 0, start
        for _ in range(1000):
            plan = plan_fire(spec, at, now)
            assert plan is not None
            ticks += plan.ticks
            missed += plan.missed
            at = plan.next
            if at > now:
                return ticks, missed, at
        raise AssertionError("no progress")

    whole = firings()
    monkeypatch.setattr(schedule, "MAX_SCAN", 50)
    assert firings() == whole
    assert len(whole[0]) + whole[1] == 1001


def test_without_croniter_crontabs_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "croniter", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'redrelay\[cron\]'"):
        build_spec("c", "0 * * * *", queue="q")
    assert build_spec("i", None, every=60, queue="q").every_ms == 60_000
