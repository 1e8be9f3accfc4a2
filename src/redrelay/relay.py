"""The Relay: configuration, connection, and the registry of handlers."""

from __future__ import annotations

import enum
import sys
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ._types import Duration, Handler
from .codecs import Codec, resolve_codec
from .config import ConsumerOptions, Durability, resolve_url
from .draining import DrainMixin
from .embedded import caller_data_dir, url_for
from .errors import ConfigurationError, InvalidName, MessageTooLarge
from .failures import Hook
from .handlers import Consumer, EnvelopeHook, HandlerContext, Subscriber
from .io.cluster import is_cluster_url
from .io.sync import Connection, redact
from .periodic import PeriodicMixin
from .protocol.envelope import encode_entry
from .protocol.keys import queues_key, validate_name
from .protocol.requests import Plan, Step
from .protocol.transitions import to_seconds
from .queue import Queue, QueueStats
from .registry import _Registry
from .running import _Running
from .schedules import Schedules

if TYPE_CHECKING:
    from .channel import Channel, GapReport
    from .io.aio import AsyncConnection
    from .tasks import Task
    from .topic import Topic, TopicSubscription
    from .worker.runner import Runner

__all__ = ["Relay", "RelayState"]

H = TypeVar("H", bound=Handler)
P = ParamSpec("P")
R = TypeVar("R")

#: Longest ``durable_timeout``: well under the 10 s socket timeout of connections.
MAX_DURABLE_TIMEOUT = 5.0


#: Entries a topic keeps by default (see :data:`redrelay.topic.DEFAULT_MAXLEN`).
DEFAULT_TOPIC_MAXLEN = 100_000
#: Default size limit of one encoded message.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024


class RelayState(enum.Enum):
    """Lifecycle: a relay is OPEN until ``close()``; a closed relay refuses to reconnect."""

    OPEN = "open"
    CLOSED = "closed"


class Relay(_Registry, PeriodicMixin, _Running, DrainMixin):
    """Redis as a message broker: queues, channels, topics, and the handlers that consume them.

    ``Relay()`` stores configuration only; it connects on first use. The URL is the
    argument, else ``$REDRELAY_URL``, else an embedded ``redis-server`` started on a Unix
    socket in ``.redrelay/`` beside the module that creates the relay (development only;
    ``embedded=False`` makes a missing URL an error instead).

    Example::

        relay = Relay("redis://localhost:6379/0")

        @relay.consumer("emails", retries=5)
        def send_email(message):
            deliver(message.body["to"])

        relay.queue("emails").put({"to": "ada@example.com"})

    :param url: ``redis://``, ``rediss://``, ``unix://`` or ``redis+sentinel://`` URL
        (see :mod:`redrelay.io.sentinel`).
    :param namespace: prefix of every key and channel, so several apps can share a server.
    :param codec: ``"json"`` (default) or ``"msgpack"``, or a :class:`Codec` object.
    :param max_message_size: largest encoded message in bytes; bigger ones raise
        :class:`MessageTooLarge` and nothing is written.
    :param dedup_ttl: how long a ``dedup_key=`` is remembered.
    :param dead_letter_cap: dead letters kept per queue (oldest dropped and counted); 0 keeps all.
    :param connect_retries: retries of a command on a connection error before a producer
        call raises :class:`BrokerUnavailable`.
    :param data_dir: directory of the embedded server (default ``$REDRELAY_DATA_DIR``,
        else ``.redrelay`` beside the module that creates this relay).
    :param embedded: False: a missing URL is a :class:`ConfigurationError` at first use
        instead of the embedded server (the Flask and Django glue outside debug/tests).
    :param on_gap: called with a :class:`GapReport` when a channel subscriber sees that
        messages were lost (they are also logged and counted).
    :param on_failure: called with a :class:`~redrelay.failures.Failure` each time a
        handler fails (queues, topic groups, channel subscribers), on the worker thread
        that saw it; e.g. ``on_failure=lambda f: sentry_sdk.capture_exception(f.error)``.
    :param on_dead: called with a :class:`~redrelay.failures.Failure` for each dead
        letter (``f.reason`` says why). A hook that raises is logged, never fatal.
    :param signing_key: a shared secret; when set, every envelope is signed (HMAC-SHA256)
        and consumers and subscribers refuse unsigned or forged ones (dead-lettered or
        dropped and counted, never run). Raw bodies from other programs are refused too.
    :param durable: make every put wait until the write is confirmed: ``"replicas:N"``
        (``WAIT``: N replicas have it), ``"aof"`` (``WAITAOF``: fsynced to the primary's
        AOF, Redis >= 7.2) or ``"aof+replicas:N"``; an unconfirmed put raises
        :class:`DurabilityNotConfirmed` (it WAS written). Per call: ``put(durable=...)``.
    :param durable_timeout: how long a durable put waits for its confirmation.
    :param consumer_defaults: defaults for ``@relay.consumer`` (``retries``, ``backoff``,
        ``lease``, ``heartbeat``, ``prefetch``, ``concurrency``, ``max_deliveries``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = "redrelay",
        codec: str | Codec = "json",
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        dedup_ttl: Duration = 86400.0,
        dead_letter_cap: int = 100_000,
        connect_retries: int = 3,
        data_dir: str | None = None,
        embedded: bool = True,
        on_gap: Callable[[GapReport], None] | None = None,
        on_failure: Hook | None = None,
        on_dead: Hook | None = None,
        signing_key: str | bytes | None = None,
        durable: str | None = None,
        durable_timeout: Duration = 1.0,
        **consumer_defaults: Any,
    ) -> None:
        self.url = resolve_url(url)
        self.namespace = validate_name("namespace", namespace)
        if ":" in namespace:
            # "shop" + channel "eu:orders" would be "shop:eu" + "orders", and the ACL
            # rule ~shop:* would cover namespace "shop:eu" too.
            raise InvalidName(
                "namespace", namespace, "must not contain ':' (namespaces would nest)"
            )
        self.codec = resolve_codec(codec)
        if not isinstance(max_message_size, int) or max_message_size < 64:
            raise ConfigurationError(
                f"max_message_size= must be an int of at least 64 bytes, got {max_message_size!r}"
            )
        self.max_message_size = max_message_size
        self.dedup_ttl = to_seconds(dedup_ttl, "dedup_ttl", allow_zero=False)
        if not isinstance(dead_letter_cap, int) or dead_letter_cap < 0:
            raise ConfigurationError(
                f"dead_letter_cap= must be an int >= 0, got {dead_letter_cap!r}"
            )
        self.dead_letter_cap = dead_letter_cap
        self.connect_retries = connect_retries
        # Default: beside the creating module (the app's), whatever the current directory.
        self.data_dir = data_dir or caller_data_dir(sys._getframe(1).f_globals)
        self.embedded = bool(embedded)
        self.on_gap = on_gap
        self.on_failure = on_failure
        self.on_dead = on_dead
        if isinstance(signing_key, str):
            signing_key = signing_key.encode()
        if signing_key is not None and len(signing_key) < 16:
            raise ConfigurationError(
                "signing_key= must be at least 16 bytes; use a long random secret"
            )
        self.signing_key = signing_key
        self.durable_timeout = to_seconds(
            durable_timeout, "durable_timeout", allow_zero=False
        )
        if self.durable_timeout > MAX_DURABLE_TIMEOUT:
            # A WAIT longer than the socket timeout would be cut, and the put retried.
            raise ConfigurationError(
                f"durable_timeout= must be at most {MAX_DURABLE_TIMEOUT:g} seconds "
                f"(under the connection's socket timeout), got {self.durable_timeout:g}"
            )
        #: What every put waits for (None: nothing), see :meth:`durability`.
        self.durable = (
            None
            if durable is None
            else self._check_durable(Durability.parse(durable, self.durable_timeout))
        )
        self.consumer_defaults = dict(consumer_defaults)
        ConsumerOptions.check_names(self.consumer_defaults, "Relay()")
        ConsumerOptions.build(
            **self.consumer_defaults
        )  # fail now, naming the bad option
        self.consumers: dict[str, Consumer] = {}
        self.subscribers: list[Subscriber] = []
        #: ``@relay.subscriber(topic, group=...)`` registrations (durable topics).
        self.topic_subscribers: list[TopicSubscription] = []
        #: Context managers every handler runs inside, see add_handler_context().
        self.handler_contexts: list[HandlerContext] = []
        #: Context managers entered around ``drain()`` in the calling thread, for
        #: framework glue (Django shares a test's database connections with handlers).
        self.drain_contexts: list[Callable[[], AbstractContextManager[Any]]] = []
        #: Called as ``hook(kind, name, envelope)`` on every message about to be encoded
        #: for a queue, topic or channel; may add headers (tracing.instrument does).
        self.envelope_hooks: list[EnvelopeHook] = []
        #: Periodic jobs: ``relay.schedule()``/``@relay.periodic`` (see docs/periodic.md).
        self.schedules = Schedules(self)
        self.state = RelayState.OPEN
        self._queues: dict[str, Queue] = {}
        self._channels: dict[str, Channel] = {}
        self._topics: dict[tuple[str, int | None, float | None], Topic] = {}
        self._connection: Connection | None = None
        self._aconnection: AsyncConnection | None = None
        self._lock = threading.Lock()
        self._runner: Runner | None = None

    def __repr__(self) -> str:
        url = redact(self.url) if self.url else "embedded"
        return (
            f"<Relay namespace={self.namespace!r} url={url!r} state={self.state.value}>"
        )

    # -- connection ------------------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The shared connection (opened lazily; the embedded server is started here)."""
        if self._connection is None:
            with self._lock:
                if self.state is RelayState.CLOSED:
                    raise ConfigurationError("this Relay is closed; create a new one")
                if self._connection is None:
                    if self.url is None:
                        self.url = url_for(self.data_dir, self.embedded)
                    self._connection = Connection(
                        self.url, retries=self.connect_retries, namespace=self.namespace
                    )
        return self._connection

    @property
    def aconnection(self) -> AsyncConnection:
        """The shared asyncio connection: one ``redis.asyncio`` client per event loop.

        Used by the ``a``-prefixed methods (``aput``, ``apublish`` ...). Opening it
        resolves the URL like :attr:`connection` (starting the embedded server, a
        blocking step, on first use in development). ``redis.asyncio`` is imported
        here, not with redrelay.
        """
        if self._aconnection is None:
            from .io.aio import AsyncConnection

            url = self.connection.url  # resolves the URL once, for both layers
            with self._lock:
                if self._aconnection is None:
                    self._aconnection = AsyncConnection(
                        url, retries=self.connect_retries, namespace=self.namespace
                    )
        return self._aconnection

    def new_connection(
        self, *, retries: int = 0, socket_timeout: float = 10.0
    ) -> Connection:
        """A separate connection to the same server (workers, listeners, blocking waits)."""
        return Connection(
            self.connection.url,
            retries=retries,
            socket_timeout=socket_timeout,
            namespace=self.namespace,
        )

    def close(self) -> None:
        """Stop background runners and close connections. Idempotent."""
        self.stop()
        with self._lock:
            self.state = RelayState.CLOSED
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            # Its clients close with their event loops; aclose() closes the running one's.
            self._aconnection = None

    async def aclose(self) -> None:
        """:meth:`close`, and close the running event loop's asyncio client too.

        Other loops' clients are closed when those loops shut down (see
        :mod:`redrelay.io.aio`).
        """
        aconnection = self._aconnection
        self.close()
        if aconnection is not None:
            await aconnection.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def encode_envelope(
        self, envelope: dict[str, Any], to: tuple[str, str] | None = None
    ) -> bytes:
        """Encode (and sign) an envelope as an entry, enforcing the size limit.

        ``to`` is ``(kind, name)`` of the destination, passed to the envelope hooks.
        """
        if to is not None:
            for hook in self.envelope_hooks:
                hook(to[0], to[1], envelope)
        codec = self.codec
        entry = encode_entry(codec.dumps(envelope), codec.kind, key=self.signing_key)
        if len(entry) > self.max_message_size:
            raise MessageTooLarge(len(entry), self.max_message_size)
        return entry

    def durability(self, durable: str | bool | None) -> Durability | None:
        """What a put with ``durable=`` waits for: None uses the relay's ``durable=``,
        False waits for nothing, a string is parsed as for the relay."""
        if durable is None:
            return self.durable
        if durable is False:
            return None
        return self._check_durable(Durability.parse(durable, self.durable_timeout))

    def _check_durable(self, durability: Durability) -> Durability:
        if self.is_cluster:
            # WAIT counts one node's replicas, and a sharded put_many writes to several.
            raise ConfigurationError(
                f"durable={durability.spec!r} is not supported on Redis Cluster yet; "
                "use replicas with cluster-level failover, or a redis:// or "
                "redis+sentinel:// URL for durable puts"
            )
        return durability

    @property
    def is_cluster(self) -> bool:
        """Whether the URL selects Redis Cluster (``redis+cluster://``)."""
        return self.url is not None and is_cluster_url(self.url)

    def check_size(self, size: int) -> None:
        """Raise :class:`MessageTooLarge` if an encoded message of ``size`` bytes is over the limit."""
        if size > self.max_message_size:
            raise MessageTooLarge(size, self.max_message_size)

    # -- primitives ------------------------------------------------------------------------

    def queue(
        self, name: str, *, shards: int | None = None, results: bool = False
    ) -> Queue:
        """The queue called ``name`` (no I/O; validates the name).

        :param shards: split the queue over this many hash tags, so that Redis Cluster
            spreads it over its nodes (see docs/scaling.md). None: the count stored with
            the queue by its first producer or worker (1 if none).
        :param results: puts create a record for ``result``/``status``/``cancel``, for a
            producer that does not register the queue's consumer (whose ``result_ttl=``
            turns it on); see docs/results.md.
        :raises ConfigurationError: ``shards`` differs from the count declared before.
        """
        q = self._queues.get(name)
        if q is None:
            q = self._queues.setdefault(name, Queue(self, name, shards))
        q.declare(shards)
        q.tracked = q.tracked or results
        return q

    def channel(self, name: str) -> Channel:
        """The pub/sub channel called ``name`` (no I/O; validates the name)."""
        ch = self._channels.get(name)
        if ch is None:
            from .channel import Channel

            ch = self._channels.setdefault(name, Channel(self, name))
        return ch

    def topic(
        self,
        name: str,
        *,
        maxlen: int | None = DEFAULT_TOPIC_MAXLEN,
        max_age: Duration | None = None,
    ) -> Topic:
        """The durable topic called ``name`` (no I/O; validates the name and retention).

        Retention is bounded by default: about ``maxlen`` entries (100,000), or entries
        younger than ``max_age``. ``maxlen=None`` (or 0) without ``max_age`` keeps every
        entry forever; the stream then grows until Redis is full. A group that falls
        further behind than the retention loses entries: that is reported (log line and
        the ``trimmed_unread`` counter), never silent. See docs/topics.md.
        """
        from .topic import Topic

        key = (
            name,
            maxlen,
            None if max_age is None else to_seconds(max_age, "max_age"),
        )
        t = self._topics.get(key)
        if t is None:
            t = self._topics.setdefault(
                key, Topic(self, name, maxlen=maxlen, max_age=max_age)
            )
        return t

    def publish(
        self, channel: str, body: Any, *, headers: dict[str, str] | None = None
    ) -> int:
        """Publish ``body`` on a channel; returns how many subscribers Redis handed it to."""
        return self.channel(channel).publish(body, headers=headers)

    async def apublish(
        self, channel: str, body: Any, *, headers: dict[str, str] | None = None
    ) -> int:
        """:meth:`publish` as a coroutine."""
        return await self.channel(channel).apublish(body, headers=headers)

    def stats(self, queues: Iterable[str] | None = None) -> list[QueueStats]:
        """Stats of the given queues, else of every queue known to the server."""
        names = self.connection.drive(self._names_plan(queues))
        return [self.queue(n).stats() for n in names]

    async def astats(self, queues: Iterable[str] | None = None) -> list[QueueStats]:
        """:meth:`stats` as a coroutine."""
        names = await self.aconnection.drive(self._names_plan(queues))
        return [await self.queue(n).astats() for n in names]

    def _names_plan(self, queues: Iterable[str] | None) -> Plan[list[str]]:
        if queues is not None:
            return list(queues)
        known = yield Step((("SMEMBERS", queues_key(self.namespace)),))
        return sorted(n.decode() for n in known)

    # -- tasks (no Redis I/O) --------------------------------------------------------------

    def task(
        self, queue: str | None = None, **options: Any
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Register the decorated function as a task: ``fn.delay(*args)`` runs it on a worker.

        A consumer of ``queue`` (default: the function's ``module.qualname``) with the
        ``@relay.consumer`` options, and ``result_ttl=`` one day unless given. See
        :mod:`redrelay.tasks` and docs/results.md.

        Example::

            @relay.task(queue="reports", result_ttl=3600)
            def render(report_id: int) -> str:
                ...

            handle = render.delay(42)
            url = handle.result(timeout=30)
        """
        from .tasks import make_task

        def register(fn: Callable[P, R]) -> Task[P, R]:
            return make_task(self, fn, queue, dict(options))

        return register

    # -- running (start, stop, wait_ready: running.py; drain: draining.py) ----------
