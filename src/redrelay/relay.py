"""The Relay: configuration, connection, and the registry of handlers."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._types import Duration, Handler
from .codecs import Codec, resolve_codec
from .config import ConsumerOptions, resolve_url
from .errors import ConfigurationError, InvalidName, MessageTooLarge
from .handlers import Consumer, HandlerContext, Subscriber
from .io.sync import Connection, redact
from .protocol.envelope import encode_entry
from .protocol.keys import validate_name
from .protocol.transitions import to_seconds
from .queue import Queue, QueueStats

if TYPE_CHECKING:
    from .channel import Channel, GapReport
    from .worker.runner import Runner

__all__ = ["Relay", "RelayState"]

H = TypeVar("H", bound=Handler)

#: Default size limit of one encoded message.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024


class RelayState(enum.Enum):
    """Lifecycle: a relay is OPEN until ``close()``; a closed relay refuses to reconnect."""

    OPEN = "open"
    CLOSED = "closed"


class Relay:
    """Redis as a message broker: queues, channels, and the handlers that consume them.

    ``Relay()`` stores configuration only; it connects on first use. The URL is the
    argument, else ``$REDRELAY_URL``, else an embedded ``redis-server`` started on a Unix
    socket under ``./.redrelay/`` (development only).

    Example::

        relay = Relay("redis://localhost:6379/0")

        @relay.consumer("emails", retries=5)
        def send_email(message):
            deliver(message.body["to"])

        relay.queue("emails").put({"to": "ada@example.com"})

    :param url: ``redis://``, ``rediss://`` or ``unix://`` URL.
    :param namespace: prefix of every key and channel, so several apps can share a server.
    :param codec: ``"json"`` (default) or ``"msgpack"``, or a :class:`Codec` object.
    :param max_message_size: largest encoded message in bytes; bigger ones raise
        :class:`MessageTooLarge` and nothing is written.
    :param dedup_ttl: how long a ``dedup_key=`` is remembered.
    :param dead_letter_cap: dead letters kept per queue (oldest dropped and counted); 0 keeps all.
    :param connect_retries: retries of a command on a connection error before a producer
        call raises :class:`BrokerUnavailable`.
    :param data_dir: directory of the embedded server (default ``$REDRELAY_DATA_DIR`` or
        ``./.redrelay``).
    :param on_gap: called with a :class:`GapReport` when a channel subscriber sees that
        messages were lost (they are also logged and counted).
    :param signing_key: a shared secret; when set, every envelope is signed (HMAC-SHA256)
        and consumers and subscribers refuse unsigned or forged ones (dead-lettered or
        dropped and counted, never run). Raw bodies from other programs are refused too.
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
        on_gap: Callable[[GapReport], None] | None = None,
        signing_key: str | bytes | None = None,
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
        self.data_dir = data_dir
        self.on_gap = on_gap
        if isinstance(signing_key, str):
            signing_key = signing_key.encode()
        if signing_key is not None and len(signing_key) < 16:
            raise ConfigurationError(
                "signing_key= must be at least 16 bytes; use a long random secret"
            )
        self.signing_key = signing_key
        self.consumer_defaults = dict(consumer_defaults)
        ConsumerOptions.build(
            **self.consumer_defaults
        )  # fail now, naming the bad option
        self.consumers: dict[str, Consumer] = {}
        self.subscribers: list[Subscriber] = []
        #: Context managers every handler runs inside, see add_handler_context().
        self.handler_contexts: list[HandlerContext] = []
        self.state = RelayState.OPEN
        self._queues: dict[str, Queue] = {}
        self._channels: dict[str, Channel] = {}
        self._connection: Connection | None = None
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
                        from .embedded import embedded_url

                        self.url = embedded_url(self.data_dir)
                    self._connection = Connection(
                        self.url, retries=self.connect_retries, namespace=self.namespace
                    )
        return self._connection

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

    def __enter__(self) -> Relay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def encode_envelope(self, envelope: dict[str, Any]) -> bytes:
        """Encode (and sign) an envelope as an entry, enforcing the size limit."""
        codec = self.codec
        entry = encode_entry(codec.dumps(envelope), codec.kind, key=self.signing_key)
        if len(entry) > self.max_message_size:
            raise MessageTooLarge(len(entry), self.max_message_size)
        return entry

    def check_size(self, size: int) -> None:
        """Raise :class:`MessageTooLarge` if an encoded message of ``size`` bytes is over the limit."""
        if size > self.max_message_size:
            raise MessageTooLarge(size, self.max_message_size)

    # -- primitives ------------------------------------------------------------------------

    def queue(self, name: str, *, shards: int | None = None) -> Queue:
        """The queue called ``name`` (no I/O; validates the name).

        :param shards: split the queue over this many hash tags, so that Redis Cluster
            spreads it over its nodes (see docs/scaling.md). None: the count stored with
            the queue by its first producer or worker (1 if none).
        :raises ConfigurationError: ``shards`` differs from the count declared before.
        """
        q = self._queues.get(name)
        if q is None:
            q = self._queues.setdefault(name, Queue(self, name, shards))
        q.declare(shards)
        return q

    def channel(self, name: str) -> Channel:
        """The pub/sub channel called ``name`` (no I/O; validates the name)."""
        ch = self._channels.get(name)
        if ch is None:
            from .channel import Channel

            ch = self._channels.setdefault(name, Channel(self, name))
        return ch

    def publish(
        self, channel: str, body: Any, *, headers: dict[str, str] | None = None
    ) -> int:
        """Publish ``body`` on a channel; returns how many subscribers Redis handed it to."""
        return self.channel(channel).publish(body, headers=headers)

    def stats(self, queues: Iterable[str] | None = None) -> list[QueueStats]:
        """Stats of the given queues, else of every queue known to the server."""
        if queues is None:
            from .protocol.keys import queues_key

            names = sorted(
                n.decode()
                for n in self.connection.call("SMEMBERS", queues_key(self.namespace))
            )
        else:
            names = list(queues)
        return [self.queue(n).stats() for n in names]

    # -- registration (no Redis I/O) -------------------------------------------------------

    def consumer(self, queue: str, **options: Any) -> Callable[[H], H]:
        """Register the decorated function as the consumer of ``queue``.

        Options override the relay's ``consumer_defaults`` (see :class:`ConsumerOptions`);
        ``shards=`` declares the queue's shard count, as ``relay.queue(name, shards=)``.
        The function receives a :class:`Message`; returning acks it, raising retries it with
        backoff, :class:`Retry` and :class:`Reject` control that explicitly.

        Example::

            @relay.consumer("thumbnails", concurrency=4, retries=5, lease=30)
            def make_thumbnail(message):
                ...
        """
        shards = options.pop("shards", None)
        opts = ConsumerOptions.build(**{**self.consumer_defaults, **options})
        q = self.queue(queue, shards=shards)

        def register(handler: H) -> H:
            if not callable(handler):
                raise ConfigurationError(
                    f"@relay.consumer({queue!r}) must decorate a callable"
                )
            if queue in self.consumers:
                raise ConfigurationError(
                    f"queue {queue!r} already has a consumer: {self.consumers[queue].handler!r}"
                )
            self.consumers[queue] = Consumer(queue=q, handler=handler, options=opts)
            return handler

        return register

    def subscriber(self, channel: str, *, pattern: bool = False) -> Callable[[H], H]:
        """Register the decorated function as a subscriber of ``channel`` (a glob if ``pattern``).

        Every process running it receives every message published while it is connected
        (at-most-once); gaps are reported, see :mod:`redrelay.channel`.
        """
        validate_name(
            "channel pattern" if pattern else "channel", channel, pattern=pattern
        )

        def register(handler: H) -> H:
            if not callable(handler):
                raise ConfigurationError(
                    f"@relay.subscriber({channel!r}) must decorate a callable"
                )
            self.subscribers.append(
                Subscriber(channel=channel, pattern=pattern, handler=handler)
            )
            return handler

        return register

    def add_handler_context(self, context: HandlerContext) -> None:
        """Run every consumer and subscriber handler inside ``context(message)``.

        For framework glue: Flask pushes an app context, Django cleans up database
        connections. Contexts are entered in the order they were added.
        """
        self.handler_contexts.append(context)

    # -- running ---------------------------------------------------------------------------

    def start(
        self, queues: Iterable[str] | None = None, *, subscribers: bool = True
    ) -> None:
        """Run the registered consumers and subscribers on background threads of this process.

        For web apps that want the seed's background-thread model; ``redrelay worker`` runs
        the same code in its own process.
        """
        from .worker.runner import Runner

        with self._lock:
            if self._runner is not None:
                raise ConfigurationError(
                    "this Relay is already started; call stop() first"
                )
            self._runner = Runner(self, queues=queues, subscribers=subscribers)
        self._runner.start()

    def stop(self, grace: float = 10.0) -> None:
        """Stop what ``start()`` started: finish running handlers, give back the rest."""
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop(grace)

    def drain(
        self, queues: Iterable[str] | None = None, *, timeout: float = 10.0
    ) -> None:
        """Run consumers in this process until their queues are empty, then return.

        Empty means nothing ready, delayed or in flight. Uses the worker's own code path.

        :raises DrainTimeout: the queues were not empty after ``timeout`` seconds.
        """
        from .worker.runner import drain

        drain(self, queues=queues, timeout=timeout)
