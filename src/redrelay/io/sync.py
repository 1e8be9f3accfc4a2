"""Blocking I/O on redis-py: connections, script calls and error translation.

:mod:`redrelay.io.aio` is its asyncio twin, with the same methods (coroutines there);
``tests/io/test_drift.py`` fails if the two drift apart.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, TypeVar

import redis
import redis.exceptions as rex
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from ..errors import ConfigurationError
from ..protocol.requests import Step
from ..protocol.scripts import script
from ._shared import (
    Arg,
    check_wait,
    client_options,
    durable_commands,
    durable_reply,
    raise_translated,
    redact,
    server_version,
    translate,
)
from .sentinel import SCHEME as SENTINEL_SCHEME
from .sentinel import parse_sentinel_url

__all__ = ["Connection", "raise_translated", "redact", "translate"]

T = TypeVar("T")


def _sentinel_client(url: str, options: dict[str, Any]) -> redis.Redis:
    """A client of the service's current primary, as the Sentinels name it.

    Every new socket asks the Sentinels where the primary is, so after a failover the
    next reconnect (redis-py retries on the connection error, or on the ``READONLY``
    reply of a demoted primary) reaches the new one.
    """
    from redis.sentinel import Sentinel

    parsed = parse_sentinel_url(url)
    sentinel_options: dict[str, Any] = {
        "socket_timeout": min(2.0, options["socket_timeout"]),
        "socket_connect_timeout": 2.0,
        "retry": Retry(NoBackoff(), 0),  # the next Sentinel is the retry
        "username": parsed.sentinel_username,
        "password": parsed.sentinel_password,
    }
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.sentinels), sentinel_kwargs=sentinel_options
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.service,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **options,
    )
    return client


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
        #: Redis < 7 gets scripts without their shebang (decided on the first NOSCRIPT).
        self._legacy_scripts: bool | None = None
        self._version: tuple[int, ...] | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            try:
                options = client_options(self.url, self._socket_timeout)
                options["retry"] = Retry(
                    ExponentialBackoff(cap=1.0, base=0.05), self._retries
                )
                if self.url.startswith(SENTINEL_SCHEME):
                    self._client = _sentinel_client(self.url, options)
                else:
                    self._client = redis.Redis.from_url(self.url, **options)
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
        sha, source = script(name).for_server(self._legacy_scripts is True)
        try:
            try:
                return self.client.evalsha(sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                if self._legacy_scripts is None:  # first load: which dialect?
                    self._legacy_scripts = self.server_version() < (7, 0)
                    sha, source = script(name).for_server(self._legacy_scripts)
                return self.client.eval(source, len(keys), *keys, *args)
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

    def server_version(self) -> tuple[int, ...]:
        """The server's version, asked once per connection (``HELLO``)."""
        if self._version is None:
            self._version = server_version(self.call("HELLO"))
        return self._version

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
        reply: Any = None
        for step in steps:
            if step.wait is not None:
                reply = self._send_durably(step)
            elif step.script is not None:
                reply = self.run(step.script, step.keys, step.args)
            elif len(step.commands) == 1:
                reply = self.call(*step.commands[0])
            else:
                reply = self.pipeline(step.commands, transaction=step.transaction)
        return reply

    def _send_durably(self, step: Step) -> tuple[Any, Any]:
        """A step's writes then its wait in one plain pipeline (see durable_commands);
        a ``NOSCRIPT`` loads the script and sends it all again."""
        assert step.wait is not None
        check_wait(self.url, step.wait, self.server_version())
        if self._legacy_scripts is None:
            self._legacy_scripts = self.server_version() < (7, 0)
        sha, source = (
            script(step.script).for_server(self._legacy_scripts)
            if step.script is not None
            else ("", "")
        )
        try:
            for attempt in range(2):
                pipe = self.client.pipeline(transaction=False)
                for command in durable_commands(step, sha):
                    pipe.execute_command(*command)  # type: ignore[no-untyped-call]
                replies: list[Any] = pipe.execute(raise_on_error=False)
                if attempt == 0 and isinstance(replies[0], rex.NoScriptError):
                    self.client.script_load(source)
                    continue
                return durable_reply(replies)
        except (rex.RedisError, OSError) as exc:
            raise_translated(self.url, exc, self.namespace)
        raise AssertionError("unreachable")  # pragma: no cover

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
