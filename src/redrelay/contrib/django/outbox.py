"""Sending on commit, and the transactional outbox.

``enqueue_on_commit``/``publish_on_commit`` send a message only if the surrounding
transaction commits: a rolled-back transaction sends nothing. Two ways:

- **on commit** (default): ``transaction.on_commit`` sends it right after the commit. If
  Redis is unreachable at that moment the message is lost (logged at ERROR): the data
  was committed, the message was not.
- **outbox** (``outbox=True``, or ``REDRELAY[alias]["OUTBOX"] = True``): an
  :class:`~redrelay.contrib.django.models.OutboxMessage` row is written *inside* the
  transaction, so it commits or rolls back with the data. After the commit it is sent at
  once if Redis answers; otherwise the outbox relay in ``manage.py relay_worker`` (a
  thread that polls the table, every ``OUTBOX_POLL`` seconds) sends it when Redis is
  back. Queue and topic messages decided during an outage are delivered late, never
  lost; a channel message is published late, to the subscribers connected *then*
  (issue 16: a subscriber still resubscribing after the same outage misses it).

After one failed send, the relay's later sends skip the attempt for
:data:`SKIP_AFTER_FAILURE` seconds and leave their rows to the outbox relay, so a view
that commits several rows during an outage pays the connection retries once, not once
per row (issue 16).

Each row is deleted in the same database transaction that saw it sent (a savepoint per
row), and queue messages carry ``dedup_key="outbox:<row uid>"``, so a crash between the
put and the commit enqueues the message once, not twice. Rows are read with
``select_for_update(skip_locked=True)`` where the database supports it (PostgreSQL,
MySQL 8, Oracle), so several workers share the table without waiting on each other.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.utils import DatabaseError
from django.utils import timezone

from ...config import Duration
from ...errors import BrokerFull, BrokerUnavailable, ConfigurationError, RedrelayError
from ...protocol.envelope import encode_entry
from ...protocol.transitions import check_headers, to_seconds
from ._outbox_send import OUTBOX_HEADER as OUTBOX_HEADER
from ._outbox_send import OUTBOX_MAX_ATTEMPTS as OUTBOX_MAX_ATTEMPTS
from ._outbox_send import OutboxRelay as OutboxRelay
from ._outbox_send import _send as _send
from ._outbox_send import flush_outbox as flush_outbox
from .conf import DEFAULT_ALIAS, relay_settings
from .relays import get_relay

if TYPE_CHECKING:
    from ...relay import Relay
    from .models import OutboxMessage

__all__ = [
    "OUTBOX_HEADER",
    "OUTBOX_MAX_ATTEMPTS",
    "SKIP_AFTER_FAILURE",
    "OutboxRelay",
    "enqueue_on_commit",
    "flush_outbox",
    "publish_on_commit",
]

log = logging.getLogger("redrelay.django.outbox")

#: Seconds after a failed send during which later sends of the same relay go straight
#: to the outbox relay instead of trying Redis (and waiting out its retries) again.
SKIP_AFTER_FAILURE = 5.0

#: relay -> monotonic time until which sends after the commit are not tried.
_skip_until: weakref.WeakKeyDictionary[Relay, float] = weakref.WeakKeyDictionary()


def _use_outbox(outbox: bool | None, alias: str) -> bool:
    return relay_settings(alias).outbox if outbox is None else outbox


def enqueue_on_commit(
    queue: str,
    body: Any,
    *,
    delay: Duration | None = None,
    eta: datetime | None = None,
    headers: Mapping[str, str] | None = None,
    dedup_key: str | None = None,
    outbox: bool | None = None,
    alias: str = DEFAULT_ALIAS,
    using: str | None = None,
) -> None:
    """Put ``body`` on ``queue`` once the current transaction commits; never if it rolls back.

    Outside a transaction (autocommit) it is sent at once. The body is encoded and its
    size checked now, so bad input fails here, in the caller, with nothing written.

    Example::

        with transaction.atomic():
            order = Order.objects.create(...)
            enqueue_on_commit("emails", {"order": order.pk}, outbox=True)

    :param queue: the queue's name.
    :param body: a JSON-compatible value (the outbox stores it in a ``JSONField``).
    :param delay: seconds (or a timedelta) before it becomes available. With the
        outbox, counted from now; without, from the commit.
    :param eta: when it becomes available, instead of ``delay``.
    :param headers: string headers carried with the message.
    :param dedup_key: as in :meth:`redrelay.Queue.put`.
    :param outbox: write an outbox row in the transaction (default: the alias's
        ``OUTBOX`` setting).
    :param alias: the ``REDRELAY`` alias.
    :param using: the database alias whose transaction counts (default: ``"default"``).
    :raises EncodeError: the body cannot be encoded; nothing was written.
    :raises MessageTooLarge: the encoded body is over the relay's ``max_message_size``.
    :raises InvalidName: the queue's name is not valid.
    """
    relay = get_relay(alias)
    q = relay.queue(queue)
    q.encode(body, headers)  # fail now, in the caller
    if delay is not None and eta is not None:
        raise ConfigurationError("pass delay= or eta=, not both")
    when = _eta(delay, eta)
    if _use_outbox(outbox, alias):
        row = _write_row(
            alias, "queue", queue, body, headers, when, dedup_key, using=using
        )
        transaction.on_commit(lambda: _send_now(relay, row.pk, using), using=using)
        return

    def send() -> None:
        try:
            q.put(body, delay=delay, eta=eta, headers=headers, dedup_key=dedup_key)
        except RedrelayError as exc:
            log.error(
                "could not enqueue a message on %r after the commit: %s; it is lost "
                "(enable the outbox, REDRELAY[%r]['OUTBOX'] = True, to keep it)",
                queue,
                exc,
                alias,
            )

    transaction.on_commit(send, using=using)


def publish_on_commit(
    channel: str,
    body: Any,
    *,
    topic: bool = False,
    headers: Mapping[str, str] | None = None,
    outbox: bool | None = None,
    alias: str = DEFAULT_ALIAS,
    using: str | None = None,
) -> None:
    """Publish ``body`` on ``channel`` (or on the durable topic of that name) once the
    current transaction commits.

    Subscribers then never see an event about data they cannot read yet, nor one about
    a change that was rolled back. What the outbox can promise depends on where it goes:

    - ``topic=True``: the event is appended to the topic's stream when Redis answers,
      and every subscriber group reads it, even one that was reconnecting at the time.
      With the outbox, nothing is lost across a Redis outage; a crash between the
      publish and the row's delete publishes it twice (same ``outbox-id`` header).
    - a channel: published late (once Redis is back) to the subscribers connected at
      that instant; a subscriber that is not connected then, including one still
      resubscribing after the same outage, never sees it. Channels stay at-most-once.

    Example::

        with transaction.atomic():
            order.save()
            publish_on_commit("orders", {"paid": order.pk}, topic=True, outbox=True)

    :param channel: the channel's name, or the topic's with ``topic=True``.
    :param body: a JSON-compatible value.
    :param topic: publish to the durable topic ``channel`` (``relay.topic(channel)``,
        default retention) instead of the pub/sub channel.
    :param headers: string headers carried with the message.
    :param outbox: write an outbox row in the transaction (default: the alias's
        ``OUTBOX`` setting).
    :param alias: the ``REDRELAY`` alias.
    :param using: the database alias whose transaction counts.
    :raises EncodeError: the body cannot be encoded; nothing was written.
    :raises MessageTooLarge: the encoded body is over the relay's ``max_message_size``.
    :raises InvalidName: the name is not valid.
    """
    relay = get_relay(alias)
    if topic:
        stream = relay.topic(channel)  # validates the name
        stream.encode(body, headers)
    else:
        ch = relay.channel(channel)  # validates the name
        _check_body(relay, body, headers)
    if _use_outbox(outbox, alias):
        kind = "topic" if topic else "channel"
        row = _write_row(alias, kind, channel, body, headers, None, None, using=using)
        transaction.on_commit(lambda: _send_now(relay, row.pk, using), using=using)
        return

    def send() -> None:
        try:
            if topic:
                stream.publish(body, headers=headers)
            else:
                ch.publish(body, headers=headers)
        except RedrelayError as exc:
            log.error(
                "could not publish on %s %r after the commit: %s; the event is lost "
                "(enable the outbox, REDRELAY[%r]['OUTBOX'] = True, to keep it)",
                "topic" if topic else "channel",
                channel,
                exc,
                alias,
            )

    transaction.on_commit(send, using=using)


def _check_body(relay: Relay, body: Any, headers: Mapping[str, str] | None) -> None:
    """Encode like a publish would and check the size: bad input fails in the caller."""
    envelope: dict[str, Any] = {"b": body}
    if headers:
        envelope["h"] = check_headers(headers)
    relay.check_size(len(encode_entry(relay.codec.dumps(envelope), relay.codec.kind)))


def _eta(delay: Duration | None, eta: datetime | None) -> datetime | None:
    if eta is not None:
        if not isinstance(eta, datetime):
            raise ConfigurationError(
                f"eta= must be a datetime, not {type(eta).__name__}"
            )
        if timezone.is_naive(eta) and settings.USE_TZ:
            aware: datetime = timezone.make_aware(eta)
            return aware
        return eta
    if delay is not None:
        now: datetime = timezone.now()
        return now + timedelta(seconds=to_seconds(delay, "delay"))
    return None


def _write_row(
    alias: str,
    kind: str,
    name: str,
    body: Any,
    headers: Mapping[str, str] | None,
    eta: datetime | None,
    dedup_key: str | None,
    *,
    using: str | None,
) -> OutboxMessage:
    from .models import OutboxMessage

    return OutboxMessage.objects.using(using or DEFAULT_DB_ALIAS).create(  # type: ignore[no-any-return]
        alias=alias,
        kind=kind,
        name=name,
        body=body,
        headers=dict(headers or {}),
        eta=eta,
        dedup_key=dedup_key,
    )


def _send_now(relay: Relay, pk: int, using: str | None) -> None:
    """After the commit: send the row at once if Redis answers; else the relay will.

    Right after a failed send of the same relay, it does not try: Redis is most likely
    still down, and each try would wait out the connection retries (issue 16).
    """
    if time.monotonic() < _skip_until.get(relay, 0.0):
        log.info(
            "outbox row %s waits for the outbox relay (relay_worker): Redis did not "
            "answer a moment ago",
            pk,
        )
        return
    try:
        flush_outbox(using=using, pks=[pk])
    except (BrokerUnavailable, BrokerFull) as exc:
        _skip_until[relay] = time.monotonic() + SKIP_AFTER_FAILURE
        log.warning(
            "outbox row %s waits for the outbox relay (relay_worker): %s", pk, exc
        )
    except DatabaseError as exc:
        log.warning("outbox row %s waits for the outbox relay: %s", pk, exc)
    else:
        _skip_until.pop(relay, None)
