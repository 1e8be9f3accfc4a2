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
  back. A Redis outage at commit time delays messages; it loses none.

Each row is deleted in the same database transaction that saw it sent (a savepoint per
row), and queue messages carry ``dedup_key="outbox:<row uid>"``, so a crash between the
put and the commit enqueues the message once, not twice. Rows are read with
``select_for_update(skip_locked=True)`` where the database supports it (PostgreSQL,
MySQL 8, Oracle), so several workers share the table without waiting on each other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections, transaction
from django.db.models import F
from django.db.utils import DatabaseError
from django.utils import timezone

from ...config import Duration
from ...errors import BrokerFull, BrokerUnavailable, ConfigurationError, RedrelayError
from ...protocol.envelope import encode_entry
from ...protocol.transitions import check_headers, to_seconds
from .conf import DEFAULT_ALIAS, relay_settings
from .relays import get_relay

if TYPE_CHECKING:
    from ...relay import Relay
    from .models import OutboxMessage

__all__ = [
    "OUTBOX_MAX_ATTEMPTS",
    "OutboxRelay",
    "enqueue_on_commit",
    "flush_outbox",
    "publish_on_commit",
]

log = logging.getLogger("redrelay.django.outbox")

#: A row whose send failed this many times for a reason other than Redis being
#: unreachable (say, over a lowered size limit) is left alone: ``relay_outbox --list``
#: shows it with its last error, ``relay_outbox --retry`` tries it again.
OUTBOX_MAX_ATTEMPTS = 5

#: While the outbox relay cannot reach Redis, it logs a WARNING this often (seconds).
_STILL_DOWN_INTERVAL = 60.0


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
        transaction.on_commit(lambda: _send_now(row.pk, using), using=using)
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
    headers: Mapping[str, str] | None = None,
    outbox: bool | None = None,
    alias: str = DEFAULT_ALIAS,
    using: str | None = None,
) -> None:
    """Publish ``body`` on ``channel`` once the current transaction commits.

    Subscribers then never see an event about data they cannot read yet, nor one about
    a change that was rolled back. With the outbox, an event decided while Redis was
    down is published when it is back (late, which suits cache invalidation; channels
    remain at-most-once for subscribers that are not connected).

    :param channel: the channel's name.
    :param body: a JSON-compatible value.
    :param headers: string headers carried with the message.
    :param outbox: write an outbox row in the transaction (default: the alias's
        ``OUTBOX`` setting).
    :param alias: the ``REDRELAY`` alias.
    :param using: the database alias whose transaction counts.
    """
    relay = get_relay(alias)
    ch = relay.channel(channel)  # validates the name
    _check_body(relay, body, headers)
    if _use_outbox(outbox, alias):
        row = _write_row(
            alias, "channel", channel, body, headers, None, None, using=using
        )
        transaction.on_commit(lambda: _send_now(row.pk, using), using=using)
        return

    def send() -> None:
        try:
            ch.publish(body, headers=headers)
        except RedrelayError as exc:
            log.error(
                "could not publish on %r after the commit: %s; the event is lost",
                channel,
                exc,
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


def _send_now(pk: int, using: str | None) -> None:
    """After the commit: send the row at once if Redis answers; else the relay will."""
    try:
        flush_outbox(using=using, pks=[pk])
    except (BrokerUnavailable, BrokerFull) as exc:
        log.warning(
            "outbox row %s waits for the outbox relay (relay_worker): %s", pk, exc
        )
    except DatabaseError as exc:
        log.warning("outbox row %s waits for the outbox relay: %s", pk, exc)


def _send(row: OutboxMessage) -> None:
    relay = get_relay(row.alias)
    headers = row.headers or None
    if row.kind == row.KIND_CHANNEL:
        relay.channel(row.name).publish(row.body, headers=headers)
    else:
        relay.queue(row.name).put(
            row.body,
            eta=row.eta,
            headers=headers,
            dedup_key=row.dedup_key or f"outbox:{row.uid}",
        )


def _flush_batch(
    using: str,
    aliases: list[str] | None,
    pks: list[int] | None,
    batch: int,
) -> tuple[int, int, RedrelayError | None]:
    """Send one batch in one transaction: (sent, rows seen, the outage that stopped it)."""
    from .models import OutboxMessage

    manager = OutboxMessage.objects.using(using)
    sent = 0
    outage: RedrelayError | None = None
    with transaction.atomic(using=using):
        rows = manager.filter(attempts__lt=OUTBOX_MAX_ATTEMPTS)
        if aliases is not None:
            rows = rows.filter(alias__in=aliases)
        if pks is not None:
            rows = rows.filter(pk__in=pks)
        if connections[using].features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True)
        picked = list(rows.order_by("pk")[:batch])
        for row in picked:
            try:
                # A savepoint per row: a failed send undoes that row's delete only. On
                # SQLite the delete also takes the write lock, so a concurrent flush
                # finds the row gone instead of sending it a second time.
                with transaction.atomic(using=using):
                    if not manager.filter(pk=row.pk).delete()[0]:
                        continue
                    _send(row)
                sent += 1
            except (BrokerUnavailable, BrokerFull) as exc:
                outage = exc
                break
            except RedrelayError as exc:
                manager.filter(pk=row.pk).update(
                    attempts=F("attempts") + 1, last_error=str(exc)[:2000]
                )
                log.error(
                    "outbox row %s (%s %r) could not be sent (attempt %d of %d): %s",
                    row.pk,
                    row.kind,
                    row.name,
                    row.attempts + 1,
                    OUTBOX_MAX_ATTEMPTS,
                    exc,
                )
    return sent, len(picked), outage


def flush_outbox(
    *,
    aliases: Iterable[str] | None = None,
    using: str | None = None,
    pks: Iterable[int] | None = None,
    batch: int = 100,
) -> int:
    """Send every waiting outbox row now (the relay step); return how many were sent.

    Rows that keep failing for a reason other than an outage are skipped after
    :data:`OUTBOX_MAX_ATTEMPTS`. What was sent before an outage stays sent.

    :param aliases: only rows of these ``REDRELAY`` aliases (default: all).
    :param using: the database (default ``"default"``).
    :param pks: only these rows.
    :param batch: rows per database transaction.
    :raises BrokerUnavailable: Redis is unreachable; the rows not sent stay in the table.
    """
    using = using or DEFAULT_DB_ALIAS
    alias_list = list(aliases) if aliases is not None else None
    pk_list = list(pks) if pks is not None else None
    total = 0
    while True:
        sent, seen, outage = _flush_batch(using, alias_list, pk_list, batch)
        total += sent
        if outage is not None:
            raise outage
        if seen < batch:
            return total


class OutboxRelay:
    """A thread that sends the outbox rows of some aliases every ``poll`` seconds.

    ``manage.py relay_worker`` runs one. While Redis is unreachable it logs a WARNING
    (then one a minute) and keeps polling; database errors (a missing table before
    ``migrate``) are logged the same way.

    :param aliases: the ``REDRELAY`` aliases whose rows it sends.
    :param poll: seconds between two reads of the table.
    :param batch: rows per transaction.
    :param using: the database.
    """

    def __init__(
        self,
        aliases: Iterable[str] = (DEFAULT_ALIAS,),
        *,
        poll: float = 0.5,
        batch: int = 100,
        using: str | None = None,
    ) -> None:
        self.aliases = list(aliases)
        self.poll = poll
        self.batch = batch
        self.using = using or DEFAULT_DB_ALIAS
        #: Rows sent since start.
        self.sent = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._down_since: float | None = None
        self._warned = 0.0

    def start(self) -> None:
        """Start polling on a daemon thread."""
        self._thread = threading.Thread(
            target=self._run, name="redrelay-outbox", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current batch; wait up to ``timeout`` seconds."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self.step()
                self._stopping.wait(self.poll)
        finally:
            connections.close_all()  # this thread's connections

    def step(self) -> int:
        """One pass over the table; never raises. Returns how many rows were sent."""
        close_old_connections()
        try:
            sent = flush_outbox(
                aliases=self.aliases, using=self.using, batch=self.batch
            )
        except (RedrelayError, DatabaseError) as exc:
            self._down(exc)
            return 0
        finally:
            close_old_connections()
        if self._down_since is not None:
            log.warning(
                "outbox relay: sending again after %.1f s",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        self.sent += sent
        return sent

    def _down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = self._warned = now
            log.warning("outbox relay cannot send (%s); retrying", exc)
        elif now - self._warned >= _STILL_DOWN_INTERVAL:
            self._warned = now
            log.warning(
                "outbox relay still cannot send after %.0f s (%s)",
                now - self._down_since,
                exc,
            )
