"""Reading the per-minute and per-hour outcome counters that ``scripts/_count.lua`` writes.

The history hash of a queue is two rings: ``m<minute % 2880>:<outcome>`` (48 hours of
minutes) and ``h<hour % 720>:<outcome>`` (30 days of hours), each value
``"<minute or hour>:<count>"``. A slot whose stamp is not the one asked for belongs to an
older round: it reads as 0. So reading N points costs one HMGET of N fields, whatever
the queue's depth or age.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "HOURS",
    "MINUTES",
    "OUTCOMES",
    "fields",
    "parse",
    "stamps",
]

#: Slots of the per-minute ring (48 hours) and of the per-hour ring (30 days).
MINUTES = 2880
HOURS = 720

#: The outcomes counted (the same names as the lifetime counters of ``stats``).
OUTCOMES = ("acked", "retried", "dead", "recovered", "rejected")


def _ring(unit: str) -> tuple[int, str]:
    if unit == "minute":
        return MINUTES, "m"
    if unit == "hour":
        return HOURS, "h"
    raise ValueError(f"unit must be 'minute' or 'hour', not {unit!r}")


def stamps(now_ms: int, count: int, unit: str = "minute") -> list[int]:
    """The last ``count`` minute (or hour) numbers up to ``now_ms``, oldest first."""
    size, _ = _ring(unit)
    if not 0 < count <= size:
        raise ValueError(f"count must be between 1 and {size} for unit {unit!r}")
    current = now_ms // 60_000 if unit == "minute" else now_ms // 3_600_000
    return list(range(current - count + 1, current + 1))


def fields(stamps_: Sequence[int], outcome: str, unit: str = "minute") -> list[str]:
    """The hash fields holding ``outcome`` for each stamp."""
    size, letter = _ring(unit)
    return [f"{letter}{s % size}:{outcome}" for s in stamps_]


def parse(stamps_: Sequence[int], values: Sequence[bytes | str | None]) -> list[int]:
    """The counts for ``stamps_`` from the HMGET reply of :func:`fields` (0 where stale)."""
    out = []
    for stamp, value in zip(stamps_, values, strict=True):
        count = 0
        if value is not None:
            text = value.decode() if isinstance(value, bytes) else value
            head, _, tail = text.partition(":")
            if head == str(stamp) and tail.isdigit():
                count = int(tail)
        out.append(count)
    return out
