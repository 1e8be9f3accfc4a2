"""Periodic jobs, sans I/O: a schedule's definition, its state in Redis, and the rule that
decides which ticks a firing enqueues.

Every worker runs the scheduler; none is the leader. A schedule's state is one hash on its
target queue's hash tag (:meth:`ScheduleSpec.state_key`), holding the next tick. A worker
that finds the next tick due (by the Redis server's clock) sends ``schedule_fire.lua``,
which compares-and-sets the next tick and pushes the tick's message in the same script: of
all the workers that race for a tick, exactly one moves ``next`` and so exactly one
message is enqueued. A worker that dies before or after the script changes nothing:
another one finds the tick still due, or already moved.

Missed ticks (every worker down, or the schedule paused) follow the schedule's ``misfire``
policy (:func:`plan_fire`) and are counted in the state hash.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from ..errors import ConfigurationError
from .keys import QueueKeys, validate_name
from .schedule_time import CronTiming, IntervalTiming, Timing
from .transitions import check_headers, to_seconds

__all__ = [
    "MAX_CATCHUP",
    "MISFIRE_POLICIES",
    "FirePlan",
    "ScheduleSpec",
    "ScheduleState",
    "build_spec",
    "plan_fire",
    "schedules_key",
]

#: The misfire policies: what a firing does with ticks that passed unseen.
MISFIRE_POLICIES = ("coalesce", "all", "skip")
#: Largest ``catchup=``: messages one late firing may enqueue.
MAX_CATCHUP = 10_000
#: Due ticks looked at in one firing (a longer backlog takes several, see plan_fire).
MAX_SCAN = 20_000

#: Fields of the state hash (short: one hash per schedule, read on every wake-up).
F_DIGEST, F_NEXT, F_PAUSED, F_LAST, F_LAST_ID = "d", "n", "p", "l", "i"
F_LAG, F_ENQUEUED_AT, F_MISSED, F_FIRED = "g", "a", "x", "f"
F_TRIGGER, F_TRIGGERED, F_PAUSED_SKIPPED = "t", "tf", "ps"


def schedules_key(namespace: str) -> str:
    """Hash: schedule name -> its definition (JSON), written by every worker that runs it.

    Read by ``redrelay schedules`` (it names each schedule's state key). Written with its
    own command, never from a script: on a Cluster it lives in another slot.
    """
    return f"{namespace}:schedules"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleSpec:
    """One declared schedule. Build with :func:`build_spec` (it validates everything)."""

    name: str
    queue: str
    #: The crontab as written, or None for an interval.
    cron: str | None
    #: The interval in ms, or None for a crontab.
    every_ms: int | None
    tz: str
    misfire: str
    grace_ms: int
    catchup: int
    jitter_ms: int
    body: Any
    headers: dict[str, str]
    timing: Timing = field(compare=False, repr=False)

    def definition(self) -> dict[str, Any]:
        """What the schedule is, as JSON-able data (the digest is taken over it)."""
        return {
            "name": self.name,
            "queue": self.queue,
            "cron": self.cron,
            "every_ms": self.every_ms,
            "tz": self.tz,
            "misfire": self.misfire,
            "grace_ms": self.grace_ms,
            "catchup": self.catchup,
            "jitter_ms": self.jitter_ms,
            "body": self.body,
            "headers": self.headers,
        }

    @property
    def digest(self) -> str:
        """A hash of the definition: a deploy that changes it reschedules the schedule."""
        data = orjson.dumps(self.definition(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(data).hexdigest()[:32]

    def state_key(self, keys: QueueKeys) -> str:
        """The state hash, under the hash tag of ``keys`` (the queue shard it fills)."""
        return f"{keys.prefix}:schedule:{self.name}"

    def jitter(self, tick: int) -> int:
        """The delay (ms) of one tick's firing: the same on every worker (seeded by tick)."""
        if not self.jitter_ms:
            return 0
        return random.Random(f"{self.name}:{tick}").randrange(self.jitter_ms + 1)

    def describe(self) -> str:
        return self.timing.describe()


def _duration_ms(value: object, name: str) -> int:
    return int(round(to_seconds(value, name) * 1000))  # type: ignore[arg-type]


def build_spec(
    name: str,
    cron: str | None,
    *,
    queue: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    tz: str = "UTC",
    misfire: str = "coalesce",
    jitter: float | timedelta = 0,
    every: float | timedelta | None = None,
    grace: float | timedelta = 60.0,
    catchup: int = 100,
) -> ScheduleSpec:
    """Validate a declaration (no I/O) and return its :class:`ScheduleSpec`.

    Every error names the argument and says how to fix it, at declaration time.
    """
    validate_name("schedule", name)
    validate_name("queue", queue)
    if (cron is None) == (every is None):
        raise ConfigurationError(
            f"schedule {name!r}: give exactly one of cron= (a crontab) and every= "
            "(an interval, a timedelta or seconds)"
        )
    if misfire not in MISFIRE_POLICIES:
        raise ConfigurationError(
            f"schedule {name!r}: misfire={misfire!r} is not a policy; use one of "
            + ", ".join(repr(p) for p in MISFIRE_POLICIES)
        )
    if (
        not isinstance(catchup, int)
        or isinstance(catchup, bool)
        or not 1 <= catchup <= MAX_CATCHUP
    ):
        raise ConfigurationError(
            f"schedule {name!r}: catchup= must be an int from 1 to {MAX_CATCHUP}, got {catchup!r}"
        )
    timing: Timing
    every_ms = None
    if cron is not None:
        cron = cron.strip() if isinstance(cron, str) else cron
        timing = CronTiming(cron, tz)
    else:
        every_ms = _duration_ms(every, "every")
        if every_ms < 1000:
            raise ConfigurationError(
                f"schedule {name!r}: every= must be at least 1 second, got {every!r}"
            )
        if tz != "UTC":
            raise ConfigurationError(
                f"schedule {name!r}: tz= applies to cron= only; every= ticks at whole "
                "multiples of the interval since the Unix epoch, whatever the zone"
            )
        timing = IntervalTiming(every_ms)
    try:
        orjson.dumps(body)
    except TypeError as exc:
        raise ConfigurationError(
            f"schedule {name!r}: body= must be JSON-compatible (it is stored with the "
            f"schedule): {exc}"
        ) from exc
    return ScheduleSpec(
        name=name,
        queue=queue,
        cron=cron,
        every_ms=every_ms,
        tz=tz,
        misfire=misfire,
        grace_ms=_duration_ms(grace, "grace"),
        catchup=catchup,
        jitter_ms=_duration_ms(jitter, "jitter"),
        body=body,
        headers=check_headers(headers) if headers else {},
        timing=timing,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleState:
    """A schedule's state hash, as read by ``schedule_read.lua``."""

    now: int
    digest: str | None
    next: int | None
    paused: bool
    last: int | None = None
    last_id: str | None = None
    lag: int | None = None
    missed: int = 0
    fired: int = 0
    triggers: int = 0
    triggered: int = 0
    paused_skipped: int = 0
    enqueued_at: int | None = None

    @classmethod
    def from_reply(
        cls, now: int, fields: Mapping[bytes | str, bytes | str]
    ) -> ScheduleState:
        """Build from the server time and the hash's fields (``HGETALL`` as a mapping)."""
        f = {_text(k): _text(v) for k, v in fields.items()}

        def num(key: str) -> int | None:
            value = f.get(key)
            return None if value is None or value == "" else int(value)

        return cls(
            now=now,
            digest=f.get(F_DIGEST),
            next=num(F_NEXT),
            paused=f.get(F_PAUSED) == "1",
            last=num(F_LAST),
            last_id=f.get(F_LAST_ID),
            lag=num(F_LAG),
            missed=num(F_MISSED) or 0,
            fired=num(F_FIRED) or 0,
            triggers=num(F_TRIGGER) or 0,
            triggered=num(F_TRIGGERED) or 0,
            paused_skipped=num(F_PAUSED_SKIPPED) or 0,
            enqueued_at=num(F_ENQUEUED_AT),
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What one firing does: enqueue ``ticks`` (oldest first), count ``missed`` ticks that
    get no message, and move the next tick to ``next``."""

    ticks: list[int]
    missed: int
    next: int


def plan_fire(spec: ScheduleSpec, next_tick: int, now: int) -> FirePlan | None:
    """The firing due at ``now`` (server ms) for a schedule whose next tick is
    ``next_tick``, or None if that tick (plus its jitter) is not due yet.

    The ticks due are those from ``next_tick`` up to ``now``. ``coalesce`` enqueues the
    latest and counts the others missed; ``all`` enqueues each, at most ``catchup`` (the
    latest ones; older ones are counted missed); ``skip`` enqueues those not more than
    ``grace`` late (after their jitter; at most ``catchup``), and counts the rest missed.
    """
    if now < next_tick + spec.jitter(next_tick):
        return None
    due = [next_tick]
    tick = next_tick
    while (tick := spec.timing.next_after(tick)) <= now:
        if len(due) == MAX_SCAN:
            # A backlog longer than one scan (an every-second schedule down for days):
            # enqueue nothing yet, count the older ticks missed, and leave the last ones
            # that the policy could still enqueue due, for the next firing to look at.
            keep = 1 if spec.misfire == "coalesce" else spec.catchup
            return FirePlan([], len(due) - keep, due[-keep])
        due.append(tick)
    if spec.misfire == "coalesce":
        fire = due[-1:]
    elif spec.misfire == "all":
        fire = due[-spec.catchup :]
    else:
        # Grace counts from the tick's jittered time: jitter alone never skips a tick.
        fire = [t for t in due if now - t - spec.jitter(t) <= spec.grace_ms]
        fire = fire[-spec.catchup :]
    return FirePlan(fire, len(due) - len(fire), tick)


def definition_json(spec: ScheduleSpec, state_key: str, ready_key: str) -> bytes:
    """The registry entry of a schedule (:func:`schedules_key`): where its state lives."""
    data = {
        **spec.definition(),
        "digest": spec.digest,
        "key": state_key,
        "ready": ready_key,
    }
    return orjson.dumps(data)
