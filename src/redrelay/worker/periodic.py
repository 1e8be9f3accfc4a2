"""The scheduler every worker runs: fires the relay's schedules, with no leader.

One thread per worker process. Each pass reads every schedule's state with the Redis
server's clock, and fires those whose next tick is due (``schedule_fire.lua``: claim and
enqueue in one script, compare-and-set on the next tick). Any number of workers may run
it, start, crash or restart at any moment: each tick is enqueued once (see
:mod:`redrelay.protocol.schedule`). ``redrelay worker --no-scheduler`` leaves it out.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import RedrelayError
from ..protocol.schedule import ScheduleSpec, ScheduleState, plan_fire
from ..protocol.schedule_time import iso_utc
from ..schedules import TRIGGER_BATCH, Where

if TYPE_CHECKING:
    from ..io.sync import Connection
    from ..relay import Relay

__all__ = ["Scheduler"]

log = logging.getLogger("redrelay.scheduler")

#: Longest sleep between passes (bounds how late a pause, trigger or deploy is seen).
MAX_SLEEP = 1.0
#: Shortest sleep, so a busy schedule cannot spin a core.
MIN_SLEEP = 0.005


class Scheduler:
    """Fires ``relay``'s schedules from this process.

    :param clock: the time in UTC ms; by default the Redis server's (read with each
        schedule's state). Tests inject a fake clock to simulate weeks without sleeping.
    :param connection: the connection to use (default: a new one of the relay's).
    """

    def __init__(
        self,
        relay: Relay,
        *,
        clock: Callable[[], int] | None = None,
        connection: Connection | None = None,
    ) -> None:
        self.relay = relay
        self.clock = clock
        self.specs = list(relay.schedules)
        self._conn = connection
        self._where: dict[str, Where] = {}
        self._warned: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Ticks this process enqueued, and firings it lost to another worker.
        self.fired = 0
        self.lost = 0

    @property
    def connection(self) -> Connection:
        if self._conn is None:
            self._conn = self.relay.new_connection(retries=1)
        return self._conn

    # -- thread ----------------------------------------------------------------------------

    def start(self) -> None:
        """Run passes on a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(
            target=self._loop, name="redrelay-scheduler", daemon=True
        )
        self._thread.start()

    def request_stop(self) -> None:
        """Stop after the current pass (safe from a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and wait for the thread (a firing in progress completes or not: either way
        its tick stays consistent in Redis)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive() and self._conn is not None:
                self._conn.close()

    def _loop(self) -> None:
        self._report_orphans()
        while not self._stop.is_set():
            try:
                sleep = self.run_once()
            except RedrelayError as exc:
                log.warning("scheduler pass failed (%s); retrying", exc)
                sleep = MAX_SLEEP
            except Exception:  # a bad schedule must not stop the others
                log.exception("scheduler pass failed; retrying")
                sleep = MAX_SLEEP
            self._stop.wait(sleep)

    def _report_orphans(self) -> None:
        try:
            orphans = self.relay.schedules.orphans()
        except RedrelayError:
            return
        for name in orphans:
            log.warning(
                "schedule %s is in Redis but not declared in this worker's code; if it "
                "was removed, delete it with `redrelay schedules remove %s`",
                name,
                name,
            )

    # -- one pass --------------------------------------------------------------------------

    def run_once(self) -> float:
        """Fire every due schedule once; the seconds until the next tick (capped)."""
        wait = MAX_SLEEP
        for spec in self.specs:
            if self._stop.is_set():
                break
            wait = min(wait, self._one(spec))
        return max(MIN_SLEEP, wait)

    def _one(self, spec: ScheduleSpec) -> float:
        conn = self.connection
        schedules = self.relay.schedules
        where = self._where.get(spec.name)
        if where is None:
            where = conn.drive(schedules.where_plan(spec))
            conn.drive(schedules.register_plan(spec, where))
            self._where[spec.name] = where
        for attempt in range(3):  # a lost compare-and-set reads again
            state = self._read(where)
            if state.digest != spec.digest or state.next is None:
                if attempt:  # redefined by another worker in between: a rolling deploy
                    self._warn_redefined(spec)
                    return MAX_SLEEP
                conn.drive(schedules.upsert_plan(spec, where, state))
                # Again: the registry may have lost it (`schedules remove`).
                conn.drive(schedules.register_plan(spec, where))
                continue
            if state.triggers > 0:
                self._serve_triggers(spec, where, state)
            plan = plan_fire(spec, state.next, state.now)
            if plan is None:
                due = state.next + spec.jitter(state.next)
                return (due - state.now) / 1000
            outcome = conn.drive(schedules.fire_plan(spec, where, state, plan))
            if outcome == 1:
                self.fired += len(plan.ticks)
                if plan.missed:
                    log.warning(
                        "schedule %s: %d tick(s) missed (misfire=%s); enqueued %d%s",
                        spec.name,
                        plan.missed,
                        spec.misfire,
                        len(plan.ticks),
                        f", the last for {iso_utc(plan.ticks[-1])}"
                        if plan.ticks
                        else "",
                    )
            elif outcome == 0:
                self.lost += 1
        return 0.0

    def _warn_redefined(self, spec: ScheduleSpec) -> None:
        if spec.name not in self._warned:
            self._warned.add(spec.name)
            log.warning(
                "schedule %s: another worker declares a different definition (a rolling "
                "deploy?); each redefines it in turn until one version is left",
                spec.name,
            )

    def _read(self, where: Where) -> ScheduleState:
        state = self.connection.drive(self.relay.schedules.read_plan(where.state))
        if self.clock is not None:
            state = dataclasses.replace(state, now=self.clock())
        return state

    def _serve_triggers(
        self, spec: ScheduleSpec, where: Where, state: ScheduleState
    ) -> None:
        count = min(state.triggers, TRIGGER_BATCH)
        plan = self.relay.schedules.trigger_plan(spec, where, state.now, count)
        ids = self.connection.drive(plan)
        if ids:
            log.info("schedule %s: triggered (%s)", spec.name, ", ".join(ids))
