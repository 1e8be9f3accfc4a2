"""``relay.drain()``, the test tool, as a mixin of :class:`~redrelay.Relay`.

Kept apart so that relay.py stays small; the work is in :mod:`redrelay.worker.drain`,
imported when a test drains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from .relay import Relay
    from .worker.drain import DrainReport
    from .worker.recorder import ChannelRecorder

__all__ = ["DrainMixin"]


class DrainMixin:
    """The ``drain()`` method of a Relay."""

    #: Context managers entered around ``drain()`` in the calling thread, for framework
    #: glue (Django shares a test's database connections with handlers).
    drain_contexts: list[Callable[[], AbstractContextManager[Any]]]

    def drain(
        self,
        queues: Iterable[str] | None = None,
        *,
        timeout: float = 10.0,
        raise_on_failure: bool = True,
        virtual_clock: bool = True,
        subscribers: Literal["run", "capture", "off"] = "run",
        channels: ChannelRecorder | None = None,
        replay_topics: bool = True,
    ) -> DrainReport:
        """Run consumers and subscribers in this process until nothing is left, for tests.

        Nothing left means no message ready, delayed or in flight, every topic group
        read to the end, and every channel message handed to its subscribers. Uses the
        worker's own code path. Delays and retry backoff are skipped on a virtual clock;
        a handler that failed or a message that died makes it raise at the end.

        :param queues: only these queues (no subscribers run; channel messages are
            captured in the report); default: all.
        :param timeout: seconds before :class:`DrainTimeout`.
        :param raise_on_failure: raise :class:`DrainFailed` if a handler raised (other
            than :class:`Retry`) or a message was dead-lettered; False returns the report.
        :param virtual_clock: make waiting messages due at once, in their order.
        :param subscribers: ``"run"`` channel and topic subscribers, ``"capture"`` what
            was published for them (in the report) without running them, or ``"off"``.
        :param channels: a :class:`redrelay.testing.ChannelRecorder` started before the
            code under test published: its messages are handled (or captured) too.
        :param replay_topics: a topic group that does not exist yet reads the stream
            from its start (False: from its ``start=``, as in a worker).
        :returns: a :class:`~redrelay.worker.drain.DrainReport`.
        :raises DrainFailed: see ``raise_on_failure``; everything was still drained.
        :raises DrainTimeout: work was left after ``timeout`` seconds.
        """
        from .worker.drain import drain

        return drain(
            cast("Relay", self),
            queues=queues,
            timeout=timeout,
            raise_on_failure=raise_on_failure,
            virtual_clock=virtual_clock,
            subscribers=subscribers,
            channels=channels,
            replay_topics=replay_topics,
        )
