"""Prepared requests: what a producer sends, decided once for the sync and async layers.

A public call (``put``, ``put_many``, ``stats`` ...) checks its arguments, encodes, names
the keys and builds the script arguments in one pure function that returns :class:`Step`
values (or, for a call of several round trips that depend on each other's replies, a
*plan*: a generator that yields steps and receives their replies). ``io/sync.py`` and
``io/aio.py`` only send them (``send``/``drive``), so the blocking ``put`` and the
coroutine ``aput`` cannot drift: there is no second copy of the logic to drift.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, NamedTuple, TypeVar

__all__ = ["Arg", "Plan", "Step"]

#: One argument of a Redis command.
Arg = str | bytes | int | float

T = TypeVar("T")


class Step(NamedTuple):
    """One round trip: a Lua script by name (``script`` set), else ``commands``.

    One command is sent as it is; several are pipelined, in ``MULTI``/``EXEC`` when
    ``transaction``. A tuple, not a dataclass: ``put`` builds one per message.
    """

    commands: Sequence[Sequence[Arg]] = ()
    script: str | None = None
    keys: Sequence[str] = ()
    args: Sequence[Arg] = ()
    transaction: bool = False
    #: ``WAIT``/``WAITAOF`` sent right after the write on the same connection (durable
    #: puts); the step's reply is then ``(reply of the write, reply of the wait)``.
    wait: Sequence[Arg] | None = None


#: Several round trips in order: yields steps (or lists of steps sent one after the
#: other), receives each reply, and returns the result.
Plan = Generator[Step | Sequence[Step], Any, T]
