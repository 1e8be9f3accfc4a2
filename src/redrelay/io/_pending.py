"""Script calls sent ahead by the worker (:meth:`redrelay.io.sync.Connection.send_script`),
whose reply is read later."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis.exceptions as rex

from ..errors import RedrelayError
from ..protocol.scripts import script
from ._shared import IO_ERRORS, Arg, raise_translated

if TYPE_CHECKING:
    from .sync import Connection

__all__ = ["Pending", "Ready"]


class Pending:
    """The reply of a script call sent by :meth:`Connection.send`, not read yet."""

    __slots__ = ("_args", "_connection", "_keys", "_name", "_owner", "_pool", "_skip")

    def __init__(
        self,
        owner: Connection,
        pool: Any,
        connection: Any,
        name: str,
        keys: Sequence[str],
        args: Sequence[Arg],
        skip: bool = False,
    ) -> None:
        self._owner, self._pool = owner, pool
        self._connection: Any = connection
        self._name, self._keys, self._args = name, keys, args
        #: A command was sent before the script (``send_script(first=)``): its reply
        #: comes first and is dropped.
        self._skip = skip

    def result(self) -> Any:
        """Wait for the reply (once). Raises like :meth:`Connection.run`.

        A lost reply leaves it unknown whether the script ran: the caller decides (fetch
        is sent again under the same tags, and then hands back what the lost call took).
        """
        connection, self._connection = self._connection, None
        if connection is None:
            raise RuntimeError("the reply was already read or discarded")
        owner = self._owner
        try:
            if self._skip:
                try:
                    connection.read_response()
                except rex.ResponseError:
                    pass  # that command failed, not the script: its reply follows
            try:
                return connection.read_response()
            except rex.NoScriptError:  # a restarted or flushed server: load it now
                _, source = script(self._name).for_server(owner.legacy_scripts())
                connection.send_command(
                    "EVAL", source, len(self._keys), *self._keys, *self._args
                )
                return connection.read_response()
        except IO_ERRORS as exc:
            if not isinstance(exc, rex.ResponseError):
                connection.disconnect()
            raise_translated(owner.url, exc, owner.namespace)
        finally:
            self._pool.release(connection)

    def discard(self) -> None:
        """Drop the connection without reading the reply (the call may still run)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()
            self._pool.release(connection)


class Ready:
    """A script call's outcome, known already (the :class:`Pending` shape, for clusters)."""

    __slots__ = ("_outcome",)

    def __init__(self, outcome: Any) -> None:
        self._outcome = outcome

    def result(self) -> Any:
        """The reply, or raise the error the call raised."""
        if isinstance(self._outcome, RedrelayError):
            raise self._outcome
        return self._outcome

    def discard(self) -> None:
        """Nothing to drop: the call is done."""
