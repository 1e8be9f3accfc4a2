"""Asyncio I/O on ``redis.asyncio``: the twin of :mod:`redrelay.io.sync`.

Same class shape, same method names and parameters, coroutines instead of blocking
calls; the same URL handling (:func:`~redrelay.io._shared.client_options`) and the same
error translation (:func:`~redrelay.io._shared.translate`). ``tests/io/test_drift.py``
compares the two with :mod:`inspect` and fails if they drift.

**Event loops.** A ``redis.asyncio`` client belongs to the event loop it was first used
on: its sockets are that loop's transports. One :class:`AsyncConnection` may be used from
several loops (an ASGI server's loop, ``asyncio.run()`` in a script, Django's
``async_to_sync`` making a loop per call), so it keeps **one client per running loop**.
A loop's client is closed on that loop when the loop shuts down its async generators
(``asyncio.run()``, ``asgiref`` and the worker all do), or by ``await conn.close()`` on it;
a client whose loop was closed without that is dropped on the next use from any loop.

**Redis Cluster.** A ``redis+cluster://`` (or ``rediss+cluster://``) URL gives each loop a
``redis.asyncio.cluster.RedisCluster``, built from the same options as the sync client
(:func:`~redrelay.io._shared.cluster_options`); the node-level choices (PUBLISH through
any live primary, ``TIME`` from the node of a key, settings read from every primary) are
the sync layer's, made by the same shared helpers. Subscribing stays on the sync layer
(the listener thread), as on a single server.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from ..errors import ConfigurationError
from ..protocol.requests import Step
from ..protocol.scripts import script
from ._shared import (
    Arg,
    check_wait,
    client_options,
    cluster_options,
    cluster_setting,
    config_value,
    durable_commands,
    durable_reply,
    publish_order,
    raise_translated,
    redact,
    server_version,
    translate,
)
from .cluster import check_async_cluster, is_cluster_url, split_cluster_url
from .sentinel import SCHEME as SENTINEL_SCHEME
from .sentinel import parse_sentinel_url

__all__ = ["AsyncConnection"]

T = TypeVar("T")

#: Connections of one loop's client (per node on a cluster): concurrent commands
#: beyond it wait their turn.
MAX_CONNECTIONS = 100
#: The gate of a client that needs none (a single server's pool blocks by itself).
_NO_GATE = contextlib.nullcontext()
#: asyncio.TimeoutError is not an OSError before Python 3.11; RedisClusterException is
#: not a RedisError.
_IO_ERRORS = (rex.RedisError, rex.RedisClusterException, OSError, asyncio.TimeoutError)


def _sentinel_client(url: str, options: dict[str, Any]) -> aioredis.Redis:
    """The async twin of :func:`redrelay.io.sync._sentinel_client`."""
    from redis.asyncio.sentinel import Sentinel

    parsed = parse_sentinel_url(url)
    kwargs = parsed.sentinel_kwargs(options["socket_timeout"], Retry(NoBackoff(), 0))
    sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs=kwargs)  # type: ignore[no-untyped-call,unused-ignore]
    client: aioredis.Redis = sentinel.master_for(**parsed.primary_kwargs(), **options)
    return client


class _LoopClient:
    """A client and the loop it belongs to (weakly: a dead loop must not be kept)."""

    __slots__ = ("client", "closer", "loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: aioredis.Redis,
        closer: AsyncGenerator[None, None],
    ) -> None:
        self.loop = weakref.ref(loop)
        self.client = client
        self.closer = closer


class AsyncConnection:
    """A lazily opened ``redis.asyncio`` client per event loop, plus script calls by name.

    The async twin of :class:`~redrelay.io.sync.Connection`: every method has the same
    name and parameters, and is a coroutine. See the module docstring on event loops.

    :param url: ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://`` or
        ``redis+cluster://`` URL (ACL user and password in it).
    :param retries: retries of a command on a connection error before
        :class:`BrokerUnavailable` reaches the caller.
    :param socket_timeout: seconds a reply may take.
    :param namespace: named in permission errors (the ACL rules the namespace needs).
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
        self.namespace = namespace
        self._retries = retries
        self._socket_timeout = socket_timeout
        self._clients: dict[int, _LoopClient] = {}
        self._lock = threading.Lock()
        #: Redis < 7 gets scripts without their shebang (decided on the first NOSCRIPT).
        self._legacy_scripts: bool | None = None
        self._version: tuple[int, ...] | None = None
        #: Whether the URL selects Redis Cluster (each loop's client is then a
        #: ``redis.asyncio.cluster.RedisCluster``).
        self.is_cluster = is_cluster_url(url)
        check_async_cluster(url, redis.__version__)
        #: Per cluster client started (_start_cluster), by its id: a bound on its
        #: concurrent commands, so that a burst waits for a connection as on a single
        #: server (the cluster client has no blocking pool; past ``max_connections`` per
        #: node it raises, then retries a few times).
        self._gates: dict[int, asyncio.Semaphore] = {}

    @property
    def client(self) -> aioredis.Redis:
        """The running loop's client (created on first use from that loop)."""
        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is not None and entry.loop() is loop:
            return entry.client
        return self._open(loop)

    def _open(self, loop: asyncio.AbstractEventLoop) -> aioredis.Redis:
        if self.is_cluster:
            return self._register(loop, self._cluster_client())
        try:
            # A blocking pool: past MAX_CONNECTIONS concurrent commands on one loop, a
            # command waits for a free connection (up to socket_timeout) instead of
            # failing at once with "Too many connections", redis.asyncio's default.
            if self.url.startswith(SENTINEL_SCHEME):
                options = client_options(self.url, self._socket_timeout)
                options["retry"] = Retry(
                    ExponentialBackoff(cap=1.0, base=0.05), self._retries
                )
                return self._register(loop, _sentinel_client(self.url, options))
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=MAX_CONNECTIONS,
                timeout=self._socket_timeout,
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), self._retries),
                **client_options(self.url, self._socket_timeout),
            )
            client = aioredis.Redis.from_pool(pool)
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis URL {redact(self.url)!r}: {exc}"
            ) from exc
        return self._register(loop, client)

    def _cluster_client(self) -> Any:
        """A ``RedisCluster`` (typed as Redis, like the sync layer's: they share the
        command API). It discovers the slots on its first command."""
        first, others, options, retries = cluster_options(
            self.url, self._socket_timeout, self._retries
        )
        try:
            return RedisCluster.from_url(
                first,
                startup_nodes=[ClusterNode(h, p) for h, p in others],
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
                # Per node; past it a command fails with "Too many connections".
                max_connections=MAX_CONNECTIONS,
                **options,
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis URL {redact(self.url)!r}: {exc}"
            ) from exc
        except _IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)

    async def _ready(self) -> Any:
        """The running loop's client; a cluster client is started here first."""
        client = self.client
        if self.is_cluster and id(client) not in self._gates:
            await self._start_cluster(client)
        return client

    def _gate(self, client: Any) -> contextlib.AbstractAsyncContextManager[Any]:
        """The cluster client's bound on concurrent commands (see ``_gates``); none
        for a single server's client, whose pool blocks by itself."""
        return self._gates.get(id(client)) or _NO_GATE

    async def _start_cluster(self, client: Any) -> None:
        """The first topology read of a loop's cluster client.

        ``redis.asyncio``'s ``RedisCluster`` reads the command table (``COMMAND``) from
        the primary of slot 0 only, so it cannot start while that node is down, though
        the others answer (the sync client moves on to another node). Then the table is
        read from the first node of the URL that answers, and the start tried again.
        """
        try:
            await client.initialize()
        except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
            _, _, nodes = split_cluster_url(self.url, redact(self.url))
            for host, port in nodes:
                node = ClusterNode(host, port, **client.connection_kwargs)
                try:
                    await client.commands_parser.initialize(node)
                    break
                except (rex.ConnectionError, rex.TimeoutError, OSError):
                    continue
                finally:
                    await node.disconnect()
            else:
                raise_translated(self.url, exc, self.namespace)
            await client.initialize()
        self._gates[id(client)] = asyncio.Semaphore(MAX_CONNECTIONS)

    def _register(
        self, loop: asyncio.AbstractEventLoop, client: aioredis.Redis
    ) -> aioredis.Redis:
        closer = self._closer(id(loop), client)
        # Step the generator to its ``yield`` now, on this loop's thread: the loop's
        # first-iteration hook registers it, and at shutdown the loop closes it, which
        # closes the client on its own loop (see the module docstring).
        try:
            closer.__anext__().send(None)
        except StopIteration:
            pass
        with self._lock:
            for key, old in list(self._clients.items()):
                dead = old.loop()
                if dead is None or dead.is_closed():
                    # Closed without shutting down its async generators: the client
                    # cannot be closed without its loop; its sockets go with it.
                    del self._clients[key]
                    self._gates.pop(id(old.client), None)
            self._clients[id(loop)] = _LoopClient(loop, client, closer)
        return client

    async def _closer(
        self, key: int, client: aioredis.Redis
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                entry = self._clients.get(key)
                if entry is not None and entry.client is client:
                    del self._clients[key]
                self._gates.pop(id(client), None)
            await client.aclose()

    async def close(self) -> None:
        """Close the running loop's client (a later call opens a new one).

        Clients of other loops are closed by their own loops (see the module docstring).
        """
        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is not None and entry.loop() is loop:
            await entry.closer.aclose()

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a protocol script by name (EVALSHA, loading it on the first NOSCRIPT)."""
        sha, source = script(name).for_server(self._legacy_scripts is True)
        try:
            client = self.client if not self.is_cluster else await self._ready()
            async with self._gate(client):
                try:
                    return await client.evalsha(sha, len(keys), *keys, *args)
                except rex.NoScriptError:  # first load: now we ask which dialect
                    _, source = script(name).for_server(await self.legacy_scripts())
                    return await client.eval(source, len(keys), *keys, *args)
        except _IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)

    async def call(self, *command: Arg) -> Any:
        """One plain Redis command."""
        try:
            client = self.client if not self.is_cluster else await self._ready()
            async with self._gate(client):
                return await client.execute_command(*command)
        except _IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)

    async def server_version(self) -> tuple[int, ...]:
        """The server's version, asked once per connection (``HELLO``)."""
        if self._version is None:
            if self.is_cluster:  # HELLO names no key: ask the default node
                try:
                    client = await self._ready()
                    reply = await client.execute_command(
                        "HELLO", target_nodes=client.get_default_node()
                    )
                except _IO_ERRORS as exc:
                    raise_translated(self.url, exc, self.namespace)
            else:
                reply = await self.call("HELLO")
            self._version = server_version(reply)
        return self._version

    async def time_ms(self, key: str | None = None) -> int:
        """The server's clock in ms (on a cluster: of the node that holds ``key``)."""
        try:
            client = await self._ready()
            if self.is_cluster and key is not None:
                node = client.get_node_from_key(key)
                reply = await client.execute_command("TIME", target_nodes=node)
            else:
                reply = await client.execute_command("TIME")
        except _IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        seconds, micros = reply
        return int(seconds) * 1000 + int(micros) // 1000

    async def publish(self, channel: str, data: bytes) -> int:
        """PUBLISH; on a cluster through the default node, else the next live primary
        (see :func:`~redrelay.io._shared.publish_order`)."""
        if not self.is_cluster:
            return int(await self.call("PUBLISH", channel, data))
        try:
            client = await self._ready()
            first = client.get_default_node()
            nodes = publish_order(first, client.get_primaries())
            for node in nodes:
                try:
                    receivers = await client.execute_command(
                        "PUBLISH", channel, data, target_nodes=node
                    )
                except (rex.ConnectionError, rex.TimeoutError, asyncio.TimeoutError):
                    if node is nodes[-1]:
                        raise
                    continue
                if node is not first:
                    client.set_default_node(node)
                return int(receivers)
        except _IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        raise AssertionError(
            "unreachable"
        )  # pragma: no cover - the loop returns or raises

    async def legacy_scripts(self) -> bool:
        """Whether the server needs scripts without their shebang (Redis < 7); asked once."""
        if self._legacy_scripts is None:
            self._legacy_scripts = await self.server_version() < (7, 0)
        return self._legacy_scripts

    async def config_get(self, name: str) -> str | None:
        """One server setting (CONFIG GET), or None if the server does not say; on a
        cluster, as every primary gives it (:func:`~redrelay.io._shared.cluster_setting`)."""
        if not self.is_cluster:
            return config_value(await self.call("CONFIG", "GET", name), name)
        try:
            client = await self._ready()
            replies = {
                node.name: config_value(
                    await client.execute_command(
                        "CONFIG", "GET", name, target_nodes=node
                    ),
                    name,
                )
                for node in client.get_primaries()
            }
        except _IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        return cluster_setting(replies)

    async def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, transaction: bool = True
    ) -> list[Any]:
        """Several commands in one round trip (``MULTI``/``EXEC`` when ``transaction``)."""
        with translate(self.url, self.namespace):
            try:
                client = self.client if not self.is_cluster else await self._ready()
                pipe = client.pipeline(transaction=transaction)
                for command in commands:
                    pipe.execute_command(*command)
                async with self._gate(client):
                    return list(await pipe.execute())
            except asyncio.TimeoutError as exc:  # not an OSError before 3.11
                raise rex.TimeoutError(str(exc) or "timed out") from exc

    async def send(self, steps: Sequence[Step]) -> Any:
        """Send prepared steps (:mod:`redrelay.protocol.requests`) in order; the last reply."""
        reply: Any = None
        for step in steps:
            if step.wait is not None:
                reply = await self._send_durably(step)
            elif step.script is not None:
                reply = await self.run(step.script, step.keys, step.args)
            elif len(step.commands) == 1:
                reply = await self.call(*step.commands[0])
            else:
                reply = await self.pipeline(step.commands, transaction=step.transaction)
        return reply

    async def _send_durably(self, step: Step) -> tuple[Any, Any]:
        """The async twin of :meth:`redrelay.io.sync.Connection._send_durably`."""
        assert step.wait is not None
        check_wait(self.url, step.wait, await self.server_version())
        sha, source = (
            script(step.script).for_server(await self.legacy_scripts())
            if step.script is not None
            else ("", "")
        )
        try:
            for attempt in range(2):
                pipe = self.client.pipeline(transaction=False)
                for command in durable_commands(step, sha):
                    pipe.execute_command(*command)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
                if attempt == 0 and isinstance(replies[0], rex.NoScriptError):
                    await self.client.script_load(source)
                    continue
                return durable_reply(replies)
        except _IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        raise AssertionError("unreachable")  # pragma: no cover

    async def drive(self, plan: Generator[Step | Sequence[Step], Any, T]) -> T:
        """Run a plan of several dependent round trips; its result."""
        try:
            request = next(plan)
            while True:
                steps = (request,) if isinstance(request, Step) else request
                request = plan.send(await self.send(steps))
        except StopIteration as done:
            result: T = done.value
            return result
