"""Registering handlers on a relay: ``@relay.consumer``, ``@relay.subscriber``, contexts.

No Redis I/O here: registration only validates and records what a worker (or
``relay.start()``) will run. A mixin of :class:`~redrelay.relay.Relay`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ._types import Handler
from .config import ConsumerOptions
from .errors import ConfigurationError
from .handlers import Consumer, HandlerContext, Subscriber
from .protocol.keys import validate_name

if TYPE_CHECKING:
    from .queue import Queue
    from .topic import Topic, TopicSubscription

__all__: list[str] = []

H = TypeVar("H", bound=Handler)


class _Registry:
    """The registration methods of :class:`~redrelay.relay.Relay`."""

    # Set by Relay.__init__:
    consumer_defaults: dict[str, Any]
    consumers: dict[str, Consumer]
    subscribers: list[Subscriber]
    topic_subscribers: list[TopicSubscription]
    handler_contexts: list[HandlerContext]

    if TYPE_CHECKING:

        def queue(
            self, name: str, *, shards: int | None = None, results: bool = False
        ) -> Queue: ...

        def topic(self, name: str) -> Topic: ...

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
        ConsumerOptions.check_names(options, f"@relay.consumer({queue!r})")
        opts = ConsumerOptions.build(**{**self.consumer_defaults, **options})
        # result_ttl=: this process's puts create records too (docs/results.md).
        q = self.queue(queue, shards=shards, results=opts.result_ttl is not None)

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

    def subscriber(
        self,
        channel: str,
        *,
        pattern: bool = False,
        group: str | None = None,
        start: str | datetime = "now",
        **options: Any,
    ) -> Callable[[H], H]:
        """Register the decorated function as a subscriber of ``channel`` (a glob if ``pattern``).

        Every process running it receives every message published while it is connected
        (at-most-once); gaps are reported, see :mod:`redrelay.channel`.

        With ``group=``, ``channel`` names a durable **topic** instead
        (``relay.topic(name)``): every group gets every message, at least once; the
        consumers of one group share them. ``start`` places a new group: ``"now"``,
        ``"beginning"``, after a stream id, or from a datetime (replay); a group that
        exists keeps its position. Options are those of ``@relay.consumer`` (retries,
        backoff, lease, heartbeat, prefetch, concurrency, max_deliveries).

        Example::

            @relay.subscriber("orders", group="billing", retries=5)
            def bill(message):
                ...

        :param concurrency: for a channel's ``async def`` handler, messages handled at
            once (as coroutines on the worker's event loop; above 1, order is not kept).
            A plain function handles one message at a time on its own thread. For a
            topic, as for ``@relay.consumer``.
        """
        if group is not None:
            if pattern:
                raise ConfigurationError(
                    f"@relay.subscriber({channel!r}, group={group!r}): topics take no "
                    "pattern=; subscribe each topic by name"
                )
            return self._topic_subscriber(channel, group, start, options)
        concurrency = options.pop("concurrency", 1)
        if options or start != "now":
            extra = ", ".join(
                sorted({*options, *(["start"] if start != "now" else [])})
            )
            raise ConfigurationError(
                f"@relay.subscriber({channel!r}): {extra} apply only to topic "
                "subscriptions; pass group= to subscribe to a durable topic"
            )
        validate_name(
            "channel pattern" if pattern else "channel", channel, pattern=pattern
        )
        if (
            not isinstance(concurrency, int)
            or isinstance(concurrency, bool)
            or not 1 <= concurrency <= 10_000
        ):
            raise ConfigurationError(
                f"concurrency= must be an int from 1 to 10000, got {concurrency!r}"
            )

        def register(handler: H) -> H:
            if not callable(handler):
                raise ConfigurationError(
                    f"@relay.subscriber({channel!r}) must decorate a callable"
                )
            if concurrency != 1 and not inspect.iscoroutinefunction(handler):
                raise ConfigurationError(
                    f"@relay.subscriber({channel!r}, concurrency={concurrency}) needs an "
                    "async def handler: a plain function runs on one thread"
                )
            self.subscribers.append(
                Subscriber(
                    channel=channel,
                    pattern=pattern,
                    handler=handler,
                    concurrency=concurrency,
                )
            )
            return handler

        return register

    def _topic_subscriber(
        self, topic: str, group: str, start: object, options: dict[str, Any]
    ) -> Callable[[H], H]:
        from .topic import TopicSubscription, parse_start, validate_group

        validate_group(group)
        position = parse_start(start)
        if "time_limit" in options:
            raise ConfigurationError(
                "time_limit= is not supported on topic subscribers yet; use it on queues"
            )
        defaults = {
            k: v for k, v in self.consumer_defaults.items() if k != "time_limit"
        }
        opts = ConsumerOptions.build(**{**defaults, **options})
        t = self.topic(topic)

        def register(handler: H) -> H:
            if not callable(handler):
                raise ConfigurationError(
                    f"@relay.subscriber({topic!r}, group={group!r}) must decorate a callable"
                )
            for sub in self.topic_subscribers:
                if sub.topic.name == topic and sub.group == group:
                    raise ConfigurationError(
                        f"topic {topic!r} group {group!r} already has a subscriber: {sub.handler!r}"
                    )
            self.topic_subscribers.append(
                TopicSubscription(
                    topic=t, group=group, handler=handler, options=opts, start=position
                )
            )
            return handler

        return register

    def add_handler_context(self, context: HandlerContext) -> None:
        """Run every consumer and subscriber handler inside ``context(message)``.

        For framework glue: Flask pushes an app context, Django cleans up database
        connections. Contexts are entered in the order they were added.
        """
        self.handler_contexts.append(context)
