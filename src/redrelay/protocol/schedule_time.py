"""When a schedule's ticks fall: crontabs and intervals, as UTC milliseconds.

A tick is an integer of UTC milliseconds (the Redis server's clock speaks the same unit).
Crontabs are parsed and iterated by ``croniter`` (maintained under pallets-eco; it reads
5-field crontabs, 6 fields with seconds first and the ``@hourly``-style aliases), but
only over *naive local wall-clock times*: the mapping from a local time to an instant is
done here with :mod:`zoneinfo`, so daylight-saving time follows one rule whatever the
library does with time zones (croniter's own DST handling has a history of bugs):

- a local time that does not exist (the spring-forward gap) fires once, at the first valid
  instant after the gap (the transition itself); several ticks in one gap fire once;
- a local time that occurs twice (the fall-back overlap) fires once, at its first
  occurrence.

The mapping from wall time to instant is then non-decreasing, so a tick sequence is
strictly increasing once equal instants are merged; :meth:`CronTiming.next_after` relies
on that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigurationError

__all__ = [
    "ALIASES",
    "CronTiming",
    "IntervalTiming",
    "Timing",
    "iso_utc",
    "load_zone",
    "local_to_utc_ms",
]

#: The ``@`` aliases accepted, and the crontab each stands for.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIELDS = re.compile(r"\s+")
_EPOCH = datetime(1970, 1, 1)


class Timing(Protocol):
    """A schedule's tick sequence."""

    def next_after(self, after_ms: int) -> int:
        """The first tick strictly after ``after_ms``."""

    def describe(self) -> str:
        """A short human form (``*/5 * * * *``, ``every 30s``)."""


def load_zone(tz: object) -> ZoneInfo:
    """The :class:`ZoneInfo` called ``tz``, or a ConfigurationError that says how to fix it."""
    if not isinstance(tz, str) or not tz:
        raise ConfigurationError(
            f"tz= must be an IANA time zone name such as 'Europe/Berlin', got {tz!r}"
        )
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(
            f"tz={tz!r} is not a known IANA time zone (e.g. 'UTC', 'Europe/Berlin', "
            "'America/New_York'); on systems without tz data, pip install tzdata"
        ) from exc


def iso_utc(ms: int) -> str:
    """A tick as ISO 8601 UTC: ``2026-03-29T01:00:00Z`` (milliseconds only when not 0)."""
    moment = datetime.fromtimestamp(ms // 1000, timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def _wall(ms: int, zone: ZoneInfo) -> datetime:
    """The naive local wall-clock time of an instant."""
    seconds, rest = divmod(ms, 1000)
    moment = datetime.fromtimestamp(seconds, zone) + timedelta(milliseconds=rest)
    return moment.replace(tzinfo=None)


def _ms(moment: datetime) -> int:
    """An aware datetime as UTC ms (exact: no float rounding)."""
    delta = moment.astimezone(timezone.utc).replace(tzinfo=None) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def local_to_utc_ms(wall: datetime, zone: ZoneInfo) -> int:
    """The instant of a naive local time: its first occurrence if it occurs twice, the end
    of the gap (the first valid instant) if it does not exist."""
    early = _ms(wall.replace(tzinfo=zone, fold=0))
    late = _ms(wall.replace(tzinfo=zone, fold=1))
    if early == late:
        return early
    first, second = min(early, late), max(early, late)
    if _wall(first, zone) == wall:  # it exists, twice: the first occurrence
        return first
    # A gap: fold=0 reads it with the offset before the jump, fold=1 with the one after;
    # the transition lies between the two readings. Find its second (tzdata transitions
    # fall on whole seconds).
    offset = _offset(second, zone)
    lo, hi = first // 1000, second // 1000
    while lo < hi:
        mid = (lo + hi) // 2
        if _offset(mid * 1000, zone) == offset:
            hi = mid
        else:
            lo = mid + 1
    return lo * 1000


def _offset(ms: int, zone: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(ms // 1000, zone).utcoffset()


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise ConfigurationError(
            "crontab schedules need croniter: pip install 'redrelay[cron]' "
            "(or use every= for a plain interval)"
        ) from None
    return croniter


@dataclass(frozen=True)
class CronTiming:
    """Ticks of a crontab in a time zone.

    ``expr`` is 5 fields (minute hour day month weekday), 6 fields with seconds first
    (``*/5 * * * * *``), or an alias (``@hourly``, ``@daily``, ``@weekly``, ``@monthly``,
    ``@yearly``/``@annually``, ``@midnight``).
    """

    expr: str
    tz: str = "UTC"
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _fields: str = field(init=False, repr=False, compare=False)
    _seconds: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields, seconds = normalise_cron(self.expr)
        object.__setattr__(self, "zone", load_zone(self.tz))
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_seconds", seconds)
        try:  # a crontab that can never match (``0 0 31 2 *``) fails now, not per tick
            self._iter(datetime(2000, 1, 1)).get_next(datetime)
        except ValueError as exc:
            raise ConfigurationError(
                f"cron {self.expr!r} never fires (no date matches it): {exc}"
            ) from exc

    def describe(self) -> str:
        return self.expr

    def _iter(self, start: datetime) -> Any:
        return _croniter()(
            self._fields, start, ret_type=datetime, second_at_beginning=self._seconds
        )

    def next_after(self, after_ms: int) -> int:
        # Every wall time up to after's own maps to an instant <= after (the mapping is
        # non-decreasing), so iterating from after's wall time misses nothing.
        it = self._iter(_wall(after_ms, self.zone))
        for _ in range(10_000):
            tick = local_to_utc_ms(it.get_next(datetime), self.zone)
            if tick > after_ms:
                return tick
        raise ConfigurationError(  # pragma: no cover - needs a pathological zone
            f"crontab {self.expr!r} in {self.tz}: no tick found after {iso_utc(after_ms)}"
        )


def normalise_cron(expr: object) -> tuple[str, bool]:
    """``(fields, seconds_first)`` of a crontab, or a ConfigurationError naming the fault."""
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigurationError(
            f"cron must be a crontab string such as '*/5 * * * *', got {expr!r}"
        )
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise ConfigurationError(
                f"cron alias {text!r} is not known; use one of {', '.join(ALIASES)}"
            )
        return ALIASES[text.lower()], False
    count = len(_FIELDS.split(text))
    if count not in (5, 6):
        raise ConfigurationError(
            f"cron {text!r} has {count} fields; use 5 (minute hour day month weekday) "
            "or 6 with seconds first (second minute hour day month weekday)"
        )
    seconds = count == 6
    croniter = _croniter()
    try:
        croniter(text, _EPOCH, second_at_beginning=seconds)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"cron {text!r} is not a valid crontab: {exc}"
        ) from exc
    return text, seconds


@dataclass(frozen=True)
class IntervalTiming:
    """Ticks every ``every_ms`` milliseconds, at whole multiples since the Unix epoch (UTC).

    Aligned to the epoch rather than to a start time, so every worker computes the same
    ticks with no shared state: ``every=timedelta(minutes=5)`` fires at :00, :05, ...
    """

    every_ms: int

    def describe(self) -> str:
        ms = self.every_ms
        if ms % 1000:
            return f"every {ms}ms"
        return f"every {ms // 1000}s"

    def next_after(self, after_ms: int) -> int:
        return (after_ms // self.every_ms + 1) * self.every_ms
