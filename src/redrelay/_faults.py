"""Crash injection for the fault-injection tests: exit the process at a named step.

Set ``REDRELAY_CRASH_AT=<step>`` (or ``<step>:<n>`` to crash at the n-th time the step is
reached) in a worker's environment; the worker calls ``os._exit(70)`` there, as abruptly
as a SIGKILL. Steps: ``fetch`` (a batch was fetched, nothing handled), ``handler`` (just
before a handler runs), ``ack`` (handlers done, acks not sent), ``retry`` (before a
failed delivery is scheduled again), ``bury`` (before dead-lettering), ``recover`` (before
taking back an expired consumer's deliveries), ``put_many`` (before the MULTI is sent).

Internal and for tests only. The variable is read on the first call, not at import.
"""

from __future__ import annotations

import os

__all__ = ["crash_point"]

#: Exit status of an injected crash.
CRASH_STATUS = 70

_target: tuple[str, int] | None = None
_loaded = False
_count = 0


def _load() -> None:
    global _target, _loaded
    spec = os.environ.get("REDRELAY_CRASH_AT", "")
    if spec:
        step, _, nth = spec.partition(":")
        _target = (step, int(nth or "1"))
    _loaded = True


def crash_point(step: str) -> None:
    """Exit at once if this is the step (and the time) the environment asks for."""
    global _count
    if not _loaded:
        _load()
    if _target is None or _target[0] != step:
        return
    _count += 1
    if _count >= _target[1]:
        os._exit(CRASH_STATUS)
