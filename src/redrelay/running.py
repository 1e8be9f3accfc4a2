"""Running a relay's handlers on threads of this process: ``relay.start()``, ``stop()``
and ``wait_ready()``. A mixin of :class:`~redrelay.relay.Relay`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .relay import Relay
    from .worker.runner import Runner

__all__: list[str] = []


class _Running:
    """The start/stop methods of :class:`~redrelay.relay.Relay`."""

    # Set by Relay.__init__:
    _lock: threading.Lock
    _runner: Runner | None

    def start(
        self,
        queues: Iterable[str] | None = None,
        *,
        subscribers: bool = True,
        scheduler: bool = True,
    ) -> None:
        """Run the registered consumers and subscribers on background threads of this process.

        For web apps that want the seed's background-thread model; ``redrelay worker`` runs
        the same code in its own process. ``scheduler`` also fires the relay's schedules.
        """
        from .worker.runner import Runner

        with self._lock:
            if self._runner is not None:
                raise ConfigurationError(
                    "this Relay is already started; call stop() first"
                )
            self._runner = Runner(
                cast("Relay", self),
                queues=queues,
                subscribers=subscribers,
                scheduler=scheduler,
            )
        self._runner.start()

    def stop(self, grace: float = 10.0) -> None:
        """Stop what ``start()`` started: finish running handlers, give back the rest."""
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop(grace)

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Wait until what :meth:`start` (maybe on another thread) started runs, channel
        subscriptions in place (so a publish now reaches them); False after ``timeout``.

        A web process that starts its subscribers on its first request waits on this.
        """
        end = time.monotonic() + timeout
        while (runner := self._runner) is None or not runner.started.is_set():
            if time.monotonic() >= end:
                return False
            time.sleep(0.01)
        listener = runner._listener  # the core's own runner: not glue
        return listener is None or listener.connected.wait(
            max(0.0, end - time.monotonic())
        )
