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
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.retry import Retry

from ..errors import ConfigurationError, RedrelayError
from ..protocol.requests import Step
from ..protocol.scripts import script
from ._pending import Pending, Ready
from ._shared import (
    IO_ERRORS,
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
from .cluster import is_cluster_url
from .sentinel import SCHEME as SENTINEL_SCHEME
from .sentinel import parse_sentinel_url

try:  # redis[hiredis]: pack in C (redis-py's packer adds a Python pass over every argument)
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - hiredis is a dependency
    _hiredis = None  # type: ignore[assignment]

__all__ = ["Connection", "Pending", "Ready", "raise_translated", "redact", "translate"]

T = TypeVar("T")


#: Commands whose reply redis-py hands back unparsed (an integer), sent on the lean path
#: of :meth:`Connection._lean_call`: a plain ``put`` and ``publish``.
_LEAN = frozenset({"LPUSH", "PUBLISH"})

#: redis-py before 5.3 requires a command name here; 5.3 and later warn when given one.
_GET_CONNECTION_ARGS: tuple[str, ...] = (
    ("EVALSHA",) if tuple(map(int, redis.__version__.split(".")[:2])) < (5, 3) else ()
)


def _sentinel_client(url: str, options: dict[str, Any]) -> redis.Redis:
    """A client of the service's current primary, as the Sentinels name it.

    Every new socket asks the Sentinels where the primary is, so after a failover the
    next reconnect (redis-py retries on the connection error, or on the ``READONLY``
    reply of a demoted primary) reaches the new one.
    """
    from redis.sentinel import Sentinel

    parsed = parse_sentinel_url(url)
    kwargs = parsed.sentinel_kwargs(options["socket_timeout"], Retry(NoBackoff(), 0))
    sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs=kwargs)  # type: ignore[no-untyped-call,unused-ignore]
    client: redis.Redis = sentinel.master_for(**parsed.primary_kwargs(), **options)  # type: ignore[no-untyped-call,unused-ignore]
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
        #: Whether the URL selects Redis Cluster (the client is then a RedisCluster).
        self.is_cluster = is_cluster_url(url)

    @property
    def client(self) -> redis.Redis:
        """The redis-py client: a ``redis.Redis``, or a ``RedisCluster`` that routes each
        command to the node of its keys (typed as Redis: they share the command API)."""
        if self._client is None and self.is_cluster:
            self._client = self._cluster_client()
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

    def _cluster_client(self) -> Any:
        first, others, options, retries = cluster_options(
            self.url, self._socket_timeout, self._retries
        )
        try:
            return RedisCluster.from_url(
                first,
                startup_nodes=[ClusterNode(h, p) for h, p in others],  # type: ignore[no-untyped-call]
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
                **options,
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis URL {redact(self.url)!r}: {exc}"
            ) from exc
        except IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)

    def time_ms(self, key: str | None = None) -> int:
        """The server's clock in ms (on a cluster: of the node that holds ``key``, whose
        clock the lease scripts of that key's queue use)."""
        try:
            if self.is_cluster and key is not None:
                node = self.client.get_node_from_key(key)  # type: ignore[attr-defined]
                reply = self.client.execute_command("TIME", target_nodes=node)  # type: ignore[no-untyped-call]
            else:
                reply = self.client.execute_command("TIME")  # type: ignore[no-untyped-call]
        except IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        seconds, micros = reply
        return int(seconds) * 1000 + int(micros) // 1000

    def publish(self, channel: str, data: bytes) -> int:
        """PUBLISH; on a cluster through the default node, else the next live primary
        (see :func:`~redrelay.io._shared.publish_order`)."""
        if not self.is_cluster:
            return int(self._lean_call(("PUBLISH", channel, data)))
        client: Any = self.client
        try:
            first = client.get_default_node()
            nodes = publish_order(first, client.get_primaries())
            for node in nodes:
                try:
                    receivers = client.execute_command(
                        "PUBLISH", channel, data, target_nodes=node
                    )
                except (rex.ConnectionError, rex.TimeoutError):
                    if node is nodes[-1]:
                        raise
                    continue
                if node is not first:
                    client.replace_default_node(node)
                return int(receivers)
        except IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        raise AssertionError(
            "unreachable"
        )  # pragma: no cover - the loop returns or raises

    def node_tags(self, prefix: str) -> list[str]:
        """On a cluster, one hash tag ``<prefix><n>`` per primary, held by that node."""
        owners: dict[str, str] = {}
        try:
            primaries = {n.name for n in self.client.get_primaries()}  # type: ignore[attr-defined]
            slots = self.client.nodes_manager.slots_cache  # type: ignore[attr-defined]
        except IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        n = 0
        while len(owners) < len(primaries) and n < 100_000:
            tag = f"{prefix}{n}"
            nodes = slots.get(key_slot(tag.encode()))
            if nodes:
                owners.setdefault(nodes[0].name, tag)
            n += 1
        return sorted(owners.values())

    def subscriber_connection(self, turn: int = 0) -> Any:
        """A bare redis-py connection (RESP2, not connected yet) for SUBSCRIBE.

        On a cluster, classic PUBLISH reaches every node, so one node is enough: ``turn``
        picks it in rotation, so a listener that lost its node tries the next one. Behind
        Sentinel the pool's connection class asks the Sentinels for the primary.
        """
        try:
            if self.is_cluster:
                nodes = sorted(self.client.get_primaries(), key=lambda n: n.name)  # type: ignore[attr-defined]
                node = self.client.get_redis_connection(nodes[turn % len(nodes)])  # type: ignore[attr-defined]
                pool = node.connection_pool
            else:
                pool = self.client.connection_pool
        except IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        return pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})

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
            except rex.NoScriptError:  # first load: now we ask which dialect
                _, source = script(name).for_server(self.legacy_scripts())
                return self.client.eval(source, len(keys), *keys, *args)
        except IO_ERRORS as exc:
            # try/except rather than ``with translate()``: the context manager costs
            # about 2 us per call, which shows on the put and publish hot paths.
            raise_translated(self.url, exc, self.namespace)

    def call(self, *command: Arg) -> Any:
        """One plain Redis command."""
        try:
            return self.client.execute_command(*command)  # type: ignore[no-untyped-call]
        except IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)

    def _lean_call(self, command: tuple[Arg, ...]) -> Any:
        """A command of ``_LEAN`` on a pooled connection, packed by hiredis, without
        redis-py's per-call layers (retry closure, observability hooks, reply callbacks).

        About 15 µs less CPU per call where system calls are slow (a VM), which is the
        difference between a ``put`` and a bare ``LPUSH``. The pool still checks the
        connection (health check, no unread data). Any failure but an error reply goes
        the full way again (:meth:`call`), with redis-py's bounded retries: the same
        at-least-once resend that redis-py makes after a connection error.
        """
        client = self.client
        if self.is_cluster or _hiredis is None:
            return self.call(*command)
        pool = client.connection_pool
        try:
            connection: Any = pool.get_connection(*_GET_CONNECTION_ARGS)
        except IO_ERRORS:
            return self.call(*command)
        try:
            connection.send_packed_command([_hiredis.pack_command(command)])  # type: ignore[arg-type]
            reply = connection.read_response()
        except rex.ResponseError as exc:  # an error reply: the connection is fine
            pool.release(connection)
            raise_translated(self.url, exc, self.namespace)
        except BaseException as exc:
            connection.disconnect()  # a reply may be unread: never reuse it
            pool.release(connection)
            if isinstance(exc, IO_ERRORS):
                return self.call(*command)
            raise
        pool.release(connection)
        return reply

    def server_version(self) -> tuple[int, ...]:
        """The server's version, asked once per connection (``HELLO``)."""
        if self._version is None:
            if self.is_cluster:  # HELLO names no key: ask the default node
                client: Any = self.client
                try:
                    reply = client.execute_command(
                        "HELLO", target_nodes=client.get_default_node()
                    )
                except IO_ERRORS as exc:
                    raise_translated(self.url, exc, self.namespace)
            else:
                reply = self.call("HELLO")
            self._version = server_version(reply)
        return self._version

    def config_get(self, name: str) -> str | None:
        """One server setting (CONFIG GET), or None if the server does not say.

        On a cluster every primary is asked: their common value, or ``node=value, ...``
        when they differ (so a check for the safe value fails, and the text says where).
        """
        if not self.is_cluster:
            return config_value(self.call("CONFIG", "GET", name), name)
        try:
            primaries = self.client.get_primaries()  # type: ignore[attr-defined]
            replies = {
                node.name: config_value(
                    self.client.execute_command(  # type: ignore[no-untyped-call]
                        "CONFIG", "GET", name, target_nodes=node
                    ),
                    name,
                )
                for node in primaries
            }
        except IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        return cluster_setting(replies)

    def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, transaction: bool = True
    ) -> list[Any]:
        """Several commands in one round trip (``MULTI``/``EXEC`` when ``transaction``)."""
        with translate(self.url, self.namespace):
            try:
                pipe = self.client.pipeline(transaction=transaction)
            except rex.RedisClusterException:
                if not (transaction and self.is_cluster):
                    raise
                return self._node_transaction(commands)
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            return list(pipe.execute())

    def _node_transaction(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """``MULTI``/``EXEC`` on the node of the commands' slot, for a redis-py whose
        cluster client refuses transactions (before 6.1). Every transaction of redrelay
        stays in one hash tag, so one node serves it. A moved slot refreshes the
        client's slot map and is tried once more; a lost node refreshes it too (else
        every later transaction would go to the dead node) and raises."""
        client: Any = self.client
        for attempt in range(2):
            node = client.get_node_from_key(commands[0][1])
            pipe = client.get_redis_connection(node).pipeline(transaction=True)
            for command in commands:
                pipe.execute_command(*command)
            try:
                return list(pipe.execute())
            except rex.AskError:  # MovedError too
                if attempt:
                    raise
                client.nodes_manager.initialize()
            except (rex.ConnectionError, rex.TimeoutError):
                try:
                    client.nodes_manager.initialize()
                except IO_ERRORS:
                    pass  # the next call tries again
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def send(self, steps: Sequence[Step]) -> Any:
        """Send prepared steps (:mod:`redrelay.protocol.requests`) in order; the last reply."""
        reply: Any = None
        for step in steps:
            if step.wait is not None:
                reply = self._send_durably(step)
            elif step.script is not None:
                reply = self.run(step.script, step.keys, step.args)
            elif len(step.commands) == 1:
                command = step.commands[0]
                if command[0] in _LEAN:
                    reply = self._lean_call(tuple(command))
                else:
                    reply = self.call(*command)
            else:
                reply = self.pipeline(step.commands, transaction=step.transaction)
        return reply

    def _send_durably(self, step: Step) -> tuple[Any, Any]:
        """A step's writes then its wait in one plain pipeline (see durable_commands);
        a ``NOSCRIPT`` loads the script and sends it all again."""
        assert step.wait is not None
        check_wait(self.url, step.wait, self.server_version())
        sha, source = (
            script(step.script).for_server(self.legacy_scripts())
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
        except IO_ERRORS as exc:
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

    def send_script(
        self, name: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> Pending | Ready:
        """Send a protocol script call on a connection of its own; read its reply later.

        The worker sends its next fetch before it runs the batch in hand, so that Redis
        works while Python does. The connection stays out of the pool until
        :meth:`Pending.result` (or :meth:`Pending.discard`). On a cluster the call is
        made at once (:class:`Ready`): the client picks the node per command.
        """
        if self.is_cluster:
            try:
                return Ready(self.run(name, keys, args))
            except RedrelayError as exc:
                return Ready(exc)
        pool = self.client.connection_pool
        try:
            connection: Any = pool.get_connection(*_GET_CONNECTION_ARGS)
        except IO_ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        pending = Pending(self, pool, connection, name, keys, args)
        sha, _ = script(name).for_server(self._legacy_scripts is True)
        command = ("EVALSHA", sha, len(keys), *keys, *args)
        try:
            if _hiredis is None:
                connection.send_command(*command)
            else:
                packed = _hiredis.pack_command(command)  # type: ignore[arg-type]
                connection.send_packed_command([packed])
        except IO_ERRORS as exc:
            pending.discard()
            raise_translated(self.url, exc, self.namespace)
        return pending

    def legacy_scripts(self) -> bool:
        """Whether the server needs scripts without their shebang (Redis < 7); asked once."""
        if self._legacy_scripts is None:
            self._legacy_scripts = self.server_version() < (7, 0)
        return self._legacy_scripts
