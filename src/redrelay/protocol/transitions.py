"""Pure rules: durations, backoff, delivery limits and dead-letter records."""

from __future__ import annotations

import base64
import math
import random
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..errors import ConfigurationError

__all__ = [
    "Backoff",
    "check_headers",
    "dead_record",
    "to_ms",
    "to_seconds",
]


def check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Validate message headers (str to str) and return a plain dict copy."""
    if not isinstance(headers, Mapping):
        raise ConfigurationError(
            f"headers= must be a mapping of str to str, not {type(headers).__name__}"
        )
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigurationError(
                f"headers= must map str to str; {key!r}: {value!r} is not"
            )
    return dict(headers)


def to_seconds(
    value: float | timedelta, name: str, *, allow_zero: bool = True
) -> float:
    """Normalise a public duration (float seconds or timedelta); name the argument on error."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigurationError(
            f"{name}= must be seconds (a number) or a timedelta, not {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        low = "0 or more" if allow_zero else "more than 0"
        raise ConfigurationError(
            f"{name}= must be {low} seconds (a finite number), got {value!r}"
        )
    return seconds


def to_ms(seconds: float) -> int:
    """Seconds to whole milliseconds, for scripts (rounded up so a delay is never shortened)."""
    return int(-(-seconds * 1000 // 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential backoff with full jitter between ``min`` and the computed ceiling.

    delay(n) for the n-th failure (1-based) is ``uniform(min, min(max, base * factor**(n-1)))``
    when ``jitter`` is on, the ceiling itself otherwise.
    """

    base: float = 1.0
    factor: float = 2.0
    max: float = 300.0
    min: float = 0.0
    jitter: bool = True

    def __post_init__(self) -> None:
        for name in ("base", "max", "min"):
            to_seconds(getattr(self, name), f"backoff {name}")
        if self.factor < 1:
            raise ConfigurationError(f"backoff factor must be >= 1, got {self.factor}")

    def delay(self, failures: int) -> float:
        ceiling = min(self.max, self.base * self.factor ** max(0, failures - 1))
        ceiling = max(ceiling, self.min)
        if not self.jitter:
            return ceiling
        return random.uniform(self.min, ceiling)


def dead_record(
    *,
    id: str,
    queue: str,
    entry: bytes,
    reason: str,
    exc: BaseException | None,
    attempt: int,
) -> dict[str, Any]:
    """The dead-letter record: everything needed to understand and requeue a message."""
    tb = (
        "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if exc
        else None
    )
    return {
        "id": id,
        "queue": queue,
        "reason": reason,
        "traceback": tb,
        "attempt": attempt,
        "dead_at": time.time(),
        "entry": base64.b64encode(entry).decode("ascii"),
    }
