"""``relay.schedule()`` and ``@relay.periodic``: declaring periodic jobs (no Redis I/O).

A mixin of :class:`~redrelay.relay.Relay`, kept apart so the relay module stays small; the
scheduler that fires them is :mod:`redrelay.worker.periodic`, the rules are in
:mod:`redrelay.protocol.schedule`, and docs/periodic.md tells the story.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._types import Duration
from .errors import ConfigurationError
from .protocol.keys import MAX_NAME_LENGTH
from .protocol.schedule import ScheduleSpec, build_spec

if TYPE_CHECKING:
    from .schedules import Schedules

__all__ = ["PeriodicMixin", "periodic_queue"]

H = TypeVar("H", bound=Callable[..., Any])
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:\-]")


def periodic_queue(handler: Callable[..., Any]) -> str:
    """The default queue of a ``@relay.periodic`` handler: ``periodic.<module>.<name>``."""
    module = getattr(handler, "__module__", None) or "main"
    qualname = getattr(handler, "__qualname__", None) or repr(handler)
    return _UNSAFE.sub("_", f"periodic.{module}.{qualname}")[:MAX_NAME_LENGTH]


class PeriodicMixin:
    """The periodic-job methods of a Relay."""

    schedules: Schedules

    if TYPE_CHECKING:

        def consumer(self, queue: str, **options: Any) -> Callable[[H], H]: ...

    def schedule(
        self,
        name: str,
        cron: str | None = None,
        *,
        queue: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        tz: str = "UTC",
        misfire: str = "coalesce",
        jitter: Duration = 0,
        every: Duration | None = None,
        grace: Duration = 60.0,
        catchup: int = 100,
    ) -> ScheduleSpec:
        """Declare a periodic job: put ``body`` on ``queue`` at every tick (no Redis I/O).

        Every worker runs the scheduler and each tick is enqueued exactly once, with
        ``headers["scheduled_for"]`` (the tick, ISO 8601 UTC). See docs/periodic.md.

        Example::

            relay.schedule("nightly-report", "30 2 * * *", queue="reports",
                           body={"kind": "daily"}, tz="Europe/Berlin")

        :param cron: a 5-field crontab, 6 fields with seconds first, or ``@hourly``-style
            alias (needs ``redrelay[cron]``); or give ``every=`` instead.
        :param every: a plain interval (at least 1 s), ticking at whole multiples of it
            since the Unix epoch.
        :param tz: IANA time zone of the crontab (DST: a skipped local time fires once at
            the end of the gap, a repeated one fires once).
        :param misfire: ticks missed while no worker ran: ``"coalesce"`` (one message),
            ``"all"`` (one each, at most ``catchup``), ``"skip"`` (only those within
            ``grace``). Missed ticks are counted either way.
        :param jitter: up to this many seconds of delay per tick, the same on every worker.
        :raises ConfigurationError: a bad crontab, time zone or option, or ``name``
            declared before with another definition.
        """
        spec = build_spec(
            name,
            cron,
            queue=queue,
            body=body,
            headers=headers,
            tz=tz,
            misfire=misfire,
            jitter=jitter,
            every=every,
            grace=grace,
            catchup=catchup,
        )
        return self.schedules.add(self.schedules.checked(spec))

    def periodic(
        self,
        cron: str | None = None,
        *,
        every: Duration | None = None,
        tz: str = "UTC",
        misfire: str = "coalesce",
        jitter: Duration = 0,
        grace: Duration = 60.0,
        catchup: int = 100,
        name: str | None = None,
        queue: str | None = None,
        **options: Any,
    ) -> Callable[[H], H]:
        """Run the decorated handler periodically: it consumes its own queue (default
        ``periodic.<module>.<function>``), which a schedule of the same name fills.

        Schedule arguments as :meth:`schedule`; other options as ``@relay.consumer``.

        Example::

            @relay.periodic("*/5 * * * *", tz="Europe/Berlin", retries=3)
            def sync_prices(message):
                ...
        """

        def register(handler: H) -> H:
            if not callable(handler):
                raise ConfigurationError(
                    "@relay.periodic(...) must decorate a callable"
                )
            q = queue or periodic_queue(handler)
            spec = build_spec(
                name or q,
                cron,
                queue=q,
                every=every,
                tz=tz,
                misfire=misfire,
                jitter=jitter,
                grace=grace,
                catchup=catchup,
            )
            self.schedules.checked(spec)
            self.consumer(q, **options)(handler)
            self.schedules.add(spec)
            return handler

        return register
