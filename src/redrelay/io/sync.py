"""Blocking I/O on redis-py: connections, script calls and error translation.

:mod:`redrelay.io.aio` is its asyncio twin, with the same methods (coroutines there);
``tests/io/test_drift.py`` fails if the two drift apart.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, TypeVar

import redis
import redis.exceptions as rex
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..errors import ConfigurationError
from ..protocol.requests import Step
from ..protocol.scripts import script
from ._shared import Arg, client_options, raise_translated, redact, translate

__all__ = ["Connection", "raise_translated", "redact", "translate"]

T = TypeVar("T")


class Connection:
    """A lazily opened redis-py client for one URL, plus script calls by name.

    ``retries`` bounds how often a command is retried on a connection error before
    :class:`BrokerUnavailable` reaches the caller (producers); workers loop on their own.
    """

    def __init__(
        self,
        url: str,
        *,
        retries: int = 3,
        socket_timeout: float = 10.0,
        namespace: str | None = None,
    ) -> None:
        self.url = url
        #: Named in permission errors (the ACL rules the namespace needs).
        self.namespace = namespace
        self._retries = retries
        self._socket_timeout = socket_timeout
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            try:
                self._client = redis.Redis.from_url(
                    self.url,
                    retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), self._retries),
                    **client_options(self.url, self._socket_timeout),
                )
            except ValueError as exc:
                raise ConfigurationError(
                    f"invalid Redis URL {redact(self.url)!r}: {exc}"
                ) from exc
        return self._client

    def close(self) -> None:
        """Close the client (a later call opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a protocol script by name (EVALSHA, loading it on the first NOSCRIPT)."""
        s = script(name)
        try:
            try:
                return self.client.evalsha(s.sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                return self.client.eval(s.source, len(keys), *keys, *args)
        except (rex.RedisError, OSError) as exc:
            # try/except rather than ``with translate()``: the context manager costs
            # about 2 us per call, which shows on the put and publish hot paths.
            raise_translated(self.url, exc, self.namespace)

    def call(self, *command: Arg) -> Any:
        """One plain Redis command."""
        try:
            return self.client.execute_command(*command)  # type: ignore[no-untyped-call]
        except (rex.RedisError, OSError) as exc:
            raise_translated(self.url, exc, self.namespace)

    def config_get(self, name: str) -> str | None:
        """One server setting (CONFIG GET), or None if the server does not say."""
        reply = self.call("CONFIG", "GET", name)
        if isinstance(reply, dict):
            value = reply.get(name, reply.get(name.encode()))
        elif isinstance(reply, list) and len(reply) == 2:
            value = reply[1]
        else:
            value = None
        return value.decode() if isinstance(value, bytes) else value

    def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, transaction: bool = True
    ) -> list[Any]:
        """Several commands in one round trip (``MULTI``/``EXEC`` when ``transaction``)."""
        with translate(self.url, self.namespace):
            pipe = self.client.pipeline(transaction=transaction)
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            return list(pipe.execute())

    def send(self, steps: Sequence[Step]) -> Any:
        """Send prepared steps (:mod:`redrelay.protocol.requests`) in order; the last reply."""
        reply = None
        for step in steps:
            if step.script is not None:
                reply = self.run(step.script, step.keys, step.args)
            elif len(step.commands) == 1:
                reply = self.call(*step.commands[0])
            else:
                reply = self.pipeline(step.commands, transaction=step.transaction)
        return reply

    def drive(self, plan: Generator[Step | Sequence[Step], Any, T]) -> T:
        """Run a plan of several dependent round trips; its result."""
        try:
            request = next(plan)
            while True:
                steps = (request,) if isinstance(request, Step) else request
                request = plan.send(self.send(steps))
        except StopIteration as done:
            result: T = done.value
            return result
