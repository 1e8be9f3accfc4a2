"""Periodic jobs: the schedules declared on a relay, and what they do in Redis.

``relay.schedule(...)`` and ``@relay.periodic(...)`` declare (no I/O); every worker runs
the scheduler (:mod:`redrelay.worker.periodic`), which uses the plans here. The rules
(which ticks a firing enqueues, the state hash, the scripts) are in
:mod:`redrelay.protocol.schedule`; see docs/periodic.md.

Each operation is a plan (:mod:`redrelay.protocol.requests`), so the sync and the async
connections drive the same code.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .errors import ConfigurationError, NotFound
from .protocol.envelope import new_id
from .protocol.requests import Plan, Step
from .protocol.schedule import (
    F_PAUSED,
    F_TRIGGER,
    FirePlan,
    ScheduleSpec,
    ScheduleState,
    definition_json,
    schedules_key,
)
from .protocol.schedule_time import iso_utc

if TYPE_CHECKING:
    from .relay import Relay

__all__ = ["ScheduleInfo", "Schedules", "Where"]

log = logging.getLogger("redrelay.schedules")

#: Requested triggers one worker serves per pass.
TRIGGER_BATCH = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleInfo:
    """What ``redrelay schedules`` shows of one schedule (times in UTC ms, server clock)."""

    name: str
    queue: str
    #: The crontab, or ``every Ns``.
    timing: str
    tz: str
    misfire: str
    next: int | None
    last: int | None
    last_id: str | None
    #: ms between the last tick and the enqueue of its message.
    lag: int | None
    #: Ticks that got no message (workers down; see the misfire policy).
    missed: int
    #: Messages enqueued for ticks.
    fired: int
    #: Messages enqueued by trigger (outside the ticks), and triggers still waiting.
    triggered: int
    pending_triggers: int
    paused: bool
    #: Ticks that passed while paused (no message).
    paused_skipped: int
    #: Whether the definition in Redis is the one this process declares (None: not
    #: declared here, so unknown).
    current: bool | None

    def as_json(self) -> dict[str, Any]:
        """A JSON-able dict, with ISO 8601 times beside the ms."""
        data: dict[str, Any] = dataclasses.asdict(self)
        data["next_utc"] = None if self.next is None else iso_utc(self.next)
        data["last_utc"] = None if self.last is None else iso_utc(self.last)
        return data


@dataclass(frozen=True, slots=True)
class Where:
    """Where a schedule lives: its state hash and the ready list it fills (one hash tag)."""

    state: str
    ready: str


class Schedules:
    """The schedules of one relay (``relay.schedules``): declared ones, and those in Redis.

    Operations by name (pause, resume, trigger, remove, info) work from any process that
    reaches Redis, the ``redrelay`` CLI included: they find the schedule in the registry
    (``<namespace>:schedules``) that workers write.
    """

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._specs: dict[str, ScheduleSpec] = {}
        self._where: dict[str, Where] = {}

    def __iter__(self) -> Iterator[ScheduleSpec]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def get(self, name: str) -> ScheduleSpec | None:
        """The schedule declared under ``name`` in this process, if any."""
        return self._specs.get(name)

    def add(self, spec: ScheduleSpec) -> ScheduleSpec:
        """Declare ``spec``; the same definition again is a no-op, another one an error."""
        old = self._specs.get(spec.name)
        if old is not None and old.digest != spec.digest:
            raise ConfigurationError(
                f"schedule {spec.name!r} is already declared with another definition "
                f"({old.describe()!r} on queue {old.queue!r}); give each schedule one "
                "definition, or another name"
            )
        self._specs[spec.name] = spec
        return spec

    def checked(self, spec: ScheduleSpec) -> ScheduleSpec:
        """``spec``, once its message is known to encode within the relay's size limit
        (so a too-large body fails at declaration, not at every tick)."""
        self.entries(spec, [0])
        return spec

    # -- plans -----------------------------------------------------------------------------

    def where_plan(self, spec: ScheduleSpec) -> Plan[Where]:
        """The schedule's keys: on the shard of its queue picked by its name (stable)."""
        where = self._where.get(spec.name)
        if where is not None:
            return where
        queue = self.relay.queue(spec.queue)
        k = yield from queue.shard_for_plan(spec.name)
        where = Where(spec.state_key(k), k.ready)
        self._where[spec.name] = where
        return where

    def read_plan(self, state_key: str) -> Plan[ScheduleState]:
        """The state hash and the server's clock (of the node that holds it)."""
        reply = yield Step(script="schedule_read", keys=[state_key])
        seconds, micros, flat = reply
        now = int(seconds) * 1000 + int(micros) // 1000
        return ScheduleState.from_reply(
            now, dict(zip(flat[::2], flat[1::2], strict=True))
        )

    def register_plan(self, spec: ScheduleSpec, where: Where) -> Plan[None]:
        """Write the schedule's definition to the registry (for the CLI and stats)."""
        payload = definition_json(spec, where.state, where.ready)
        yield Step((("HSET", schedules_key(self.relay.namespace), spec.name, payload),))
        return None

    def upsert_plan(
        self, spec: ScheduleSpec, where: Where, state: ScheduleState
    ) -> Plan[bool]:
        """Make Redis hold this definition: an unchanged one keeps its next tick; a new or
        changed one gets the first tick after now (and after its last tick). False when
        another worker changed it first (the caller reads again)."""
        if state.digest == spec.digest and state.next is not None:
            return True
        start = max(state.now, state.last or 0)
        first = spec.timing.next_after(start)
        if state.digest is not None:
            log.info(
                "schedule %s: definition changed; next tick %s",
                spec.name,
                iso_utc(first),
            )
        reply = yield Step(
            script="schedule_set",
            keys=[where.state],
            args=[state.digest or "", spec.digest, first],
        )
        return bool(reply)

    def entries(
        self, spec: ScheduleSpec, ticks: Sequence[int], *, triggered: bool = False
    ) -> tuple[list[bytes], list[str]]:
        """The queue entries of ``ticks`` (oldest first) and their message ids."""
        queue = self.relay.queue(spec.queue)
        entries, ids = [], []
        for tick in ticks:
            ids.append(new_id())
            headers = {**spec.headers, "scheduled_for": iso_utc(tick)}
            headers["schedule"] = spec.name
            if triggered:
                headers["triggered"] = "1"
            entries.append(queue.encode(spec.body, headers, msg_id=ids[-1]))
        return entries, ids

    def fire_plan(
        self, spec: ScheduleSpec, where: Where, state: ScheduleState, plan: FirePlan
    ) -> Plan[int]:
        """Claim the due tick(s) and enqueue ``plan.ticks`` in one script. Returns 1 when
        this call moved the tick (enqueued), 2 when paused (moved, nothing enqueued), 0
        when another worker had moved it first."""
        assert state.next is not None and state.digest is not None
        entries, ids = self.entries(spec, plan.ticks)
        args: list[Any] = [
            state.digest,
            state.next,
            plan.next,
            plan.missed,
            len(plan.ticks) + plan.missed,
            plan.ticks[-1] if plan.ticks else 0,
            ids[-1] if ids else "",
            *entries,
        ]
        reply = yield Step(
            script="schedule_fire", keys=[where.state, where.ready], args=args
        )
        return int(reply[0])

    def trigger_plan(
        self, spec: ScheduleSpec, where: Where, now: int, requests: int
    ) -> Plan[list[str]]:
        """Enqueue ``max(requests, 1)`` messages now, outside the ticks; with ``requests``,
        consume that many trigger requests (compare-and-decrement: one worker serves each).
        The ids enqueued (none if another worker served the requests)."""
        entries, ids = self.entries(spec, [now] * max(requests, 1), triggered=True)
        reply = yield Step(
            script="schedule_trigger",
            keys=[where.state, where.ready],
            args=[requests, ids[-1], *entries],
        )
        return ids if reply else []

    # -- by name (any process; each a plan, with a sync and an async call) ----------------

    def _registry_plan(self) -> Plan[dict[str, dict[str, Any]]]:
        flat = yield Step((("HGETALL", schedules_key(self.relay.namespace)),))
        pairs = (
            dict(zip(flat[::2], flat[1::2], strict=True))
            if isinstance(flat, list)
            else flat
        )
        return {
            (k.decode() if isinstance(k, bytes) else k): orjson.loads(v)
            for k, v in pairs.items()
        }

    def registry(self) -> dict[str, dict[str, Any]]:
        """Every schedule a worker has declared in Redis: name -> definition."""
        return self.relay.connection.drive(self._registry_plan())

    def _entry_plan(self, name: str) -> Plan[dict[str, Any]]:
        entry = (yield from self._registry_plan()).get(name)
        if entry is None:
            raise NotFound(
                f"no schedule {name!r} in Redis (workers register schedules when they "
                "start; see `redrelay schedules`)"
            )
        return entry

    def _info_plan(self) -> Plan[list[ScheduleInfo]]:
        found = []
        for name, entry in sorted((yield from self._registry_plan()).items()):
            state = yield from self.read_plan(entry["key"])
            declared = self._specs.get(name)
            every = entry.get("every_ms") or 0
            found.append(
                ScheduleInfo(
                    name=name,
                    queue=entry["queue"],
                    timing=entry["cron"] or f"every {every / 1000:g}s",
                    tz=entry["tz"],
                    misfire=entry["misfire"],
                    next=state.next,
                    last=state.last,
                    last_id=state.last_id,
                    lag=state.lag,
                    missed=state.missed,
                    fired=state.fired,
                    triggered=state.triggered,
                    pending_triggers=state.triggers,
                    paused=state.paused,
                    paused_skipped=state.paused_skipped,
                    current=None
                    if declared is None
                    else state.digest == declared.digest,
                )
            )
        return found

    def info(self) -> list[ScheduleInfo]:
        """Every schedule in Redis, with its state (sorted by name)."""
        return self.relay.connection.drive(self._info_plan())

    async def ainfo(self) -> list[ScheduleInfo]:
        """:meth:`info` as a coroutine."""
        return await self.relay.aconnection.drive(self._info_plan())

    def _pause_plan(self, name: str, paused: bool) -> Plan[None]:
        key = (yield from self._entry_plan(name))["key"]
        command = ("HSET", key, F_PAUSED, "1") if paused else ("HDEL", key, F_PAUSED)
        yield Step((command,))
        return None

    def pause(self, name: str) -> None:
        """Stop enqueueing ``name``'s ticks (they pass, counted, until :meth:`resume`).

        :raises NotFound: no worker registered a schedule called ``name``.
        """
        self.relay.connection.drive(self._pause_plan(name, True))

    async def apause(self, name: str) -> None:
        """:meth:`pause` as a coroutine."""
        await self.relay.aconnection.drive(self._pause_plan(name, True))

    def resume(self, name: str) -> None:
        """Enqueue ``name``'s ticks again, from the next one (paused ticks are not run)."""
        self.relay.connection.drive(self._pause_plan(name, False))

    async def aresume(self, name: str) -> None:
        """:meth:`resume` as a coroutine."""
        await self.relay.aconnection.drive(self._pause_plan(name, False))

    def _trigger_plan(self, name: str) -> Plan[str | None]:
        spec = self._specs.get(name)
        if spec is None:
            key = (yield from self._entry_plan(name))["key"]
            yield Step((("HINCRBY", key, F_TRIGGER, 1),))
            return None
        where = yield from self.where_plan(spec)
        state = yield from self.read_plan(where.state)  # the server's clock
        return (yield from self.trigger_plan(spec, where, state.now, 0))[0]

    def trigger(self, name: str) -> str | None:
        """Enqueue ``name``'s message now, without consuming a tick.

        Declared in this process: enqueued here, and its id returned. Otherwise the
        request is left in Redis and the next worker scheduler pass enqueues it (within
        about a second while workers run); returns None.
        """
        return self.relay.connection.drive(self._trigger_plan(name))

    async def atrigger(self, name: str) -> str | None:
        """:meth:`trigger` as a coroutine."""
        return await self.relay.aconnection.drive(self._trigger_plan(name))

    def _remove_plan(self, name: str) -> Plan[bool]:
        entry = (yield from self._registry_plan()).get(name)
        if entry is None:
            return False
        # Two commands: the registry is in another slot than the state on a Cluster.
        yield [
            Step((("DEL", entry["key"]),)),
            Step((("HDEL", schedules_key(self.relay.namespace), name),)),
        ]
        return True

    def remove(self, name: str) -> bool:
        """Delete ``name``'s state and registry entry (a schedule no longer in code).

        A worker that still declares it registers it again. Returns whether it existed.
        """
        return self.relay.connection.drive(self._remove_plan(name))

    async def aremove(self, name: str) -> bool:
        """:meth:`remove` as a coroutine."""
        return await self.relay.aconnection.drive(self._remove_plan(name))

    def orphans(self) -> list[str]:
        """Schedules in Redis that this process does not declare."""
        return sorted(set(self.registry()) - set(self._specs))
