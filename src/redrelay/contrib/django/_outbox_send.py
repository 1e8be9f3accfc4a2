"""Sending outbox rows: the relay step (:func:`flush_outbox`) and its thread (:class:`OutboxRelay`).

Kept apart from :mod:`.outbox` (which writes rows) so each stays small. A row is sent
by its kind: a queue ``put`` (``dedup_key="outbox:<uid>"``), a channel or topic
``publish`` (header ``outbox-id: <uid>``, so a duplicate from the crash window can be
told apart), or a ``django.tasks`` task (its result record, then its queue message).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections, transaction
from django.db.models import F
from django.db.utils import DatabaseError

from ...errors import BrokerFull, BrokerUnavailable, RedrelayError
from .conf import DEFAULT_ALIAS
from .relays import get_relay

if TYPE_CHECKING:
    from .models import OutboxMessage

__all__ = [
    "CHANNEL_GRACE",
    "OUTBOX_HEADER",
    "OUTBOX_MAX_ATTEMPTS",
    "OutboxRelay",
    "flush_outbox",
]

log = logging.getLogger("redrelay.django.outbox")

#: A row whose send failed this many times for a reason other than Redis being
#: unreachable (say, over a lowered size limit) is left alone: ``relay_outbox --list``
#: shows it with its last error, ``relay_outbox --retry`` tries it again.
OUTBOX_MAX_ATTEMPTS = 5

#: The header a channel or topic message sent from the outbox carries: the row's uid.
OUTBOX_HEADER = "outbox-id"

#: Seconds the outbox relay holds channel rows after it starts and after an outage, so
#: that listeners reconnecting at the same time (their backoff is capped at 2 s) have
#: resubscribed when the events are published. A mitigation, not a promise (issue 16).
CHANNEL_GRACE = 3.0

#: While the outbox relay cannot reach Redis, it logs a WARNING this often (seconds).
_STILL_DOWN_INTERVAL = 60.0


def _send(row: OutboxMessage) -> None:
    if row.kind == row.KIND_TASK:
        from ._task_commit import send_task

        send_task(row.name, row.body, row.eta, dedup_key=f"outbox:{row.uid}")
        return
    relay = get_relay(row.alias)
    headers = row.headers or None
    if row.kind in (row.KIND_CHANNEL, row.KIND_TOPIC):
        tagged = {**(headers or {}), OUTBOX_HEADER: str(row.uid)}
        if row.kind == row.KIND_TOPIC:
            relay.topic(row.name).publish(row.body, headers=tagged)
        else:
            relay.channel(row.name).publish(row.body, headers=tagged)
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
    kinds: list[str] | None = None,
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
        if kinds is not None:
            rows = rows.filter(kind__in=kinds)
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
    kinds: Iterable[str] | None = None,
) -> int:
    """Send every waiting outbox row now (the relay step); return how many were sent.

    Rows that keep failing for a reason other than an outage are skipped after
    :data:`OUTBOX_MAX_ATTEMPTS`. What was sent before an outage stays sent.

    :param aliases: only rows of these ``REDRELAY`` aliases (default: all).
    :param using: the database (default ``"default"``).
    :param pks: only these rows.
    :param batch: rows per database transaction.
    :param kinds: only rows of these kinds (``queue``, ``channel``, ``topic``, ``task``).
    :raises BrokerUnavailable: Redis is unreachable; the rows not sent stay in the table.
    """
    using = using or DEFAULT_DB_ALIAS
    alias_list = list(aliases) if aliases is not None else None
    pk_list = list(pks) if pks is not None else None
    kind_list = list(kinds) if kinds is not None else None
    total = 0
    while True:
        sent, seen, outage = _flush_batch(using, alias_list, pk_list, batch, kind_list)
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

    Channel rows wait ``channel_grace`` seconds after it starts and after an outage
    ends: a subscriber that is not subscribed when the event is published never gets
    it, and the listeners of this worker and others reconnect at about the same time.

    :param aliases: the ``REDRELAY`` aliases whose rows it sends.
    :param poll: seconds between two reads of the table.
    :param batch: rows per transaction.
    :param using: the database.
    :param channel_grace: seconds channel rows wait after the start and after an outage.
    """

    def __init__(
        self,
        aliases: Iterable[str] = (DEFAULT_ALIAS,),
        *,
        poll: float = 0.5,
        batch: int = 100,
        using: str | None = None,
        channel_grace: float = CHANNEL_GRACE,
    ) -> None:
        self.aliases = list(aliases)
        self.channel_grace = channel_grace
        self._hold_channels_until = time.monotonic() + channel_grace
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
        kinds = None
        # Held in the grace after the start, and in the pass that finds Redis back
        # (the grace after an outage starts at its end; the listeners reconnect then).
        recovering = self._down_since is not None
        if recovering or time.monotonic() < self._hold_channels_until:
            kinds = ["queue", "topic", "task"]
        try:
            if recovering:
                # A pass that only holds channel rows sends nothing to Redis: ask it,
                # or such a pass would call the outage over while it lasts.
                for alias in self.aliases:
                    get_relay(alias).connection.call("PING")
            sent = flush_outbox(
                aliases=self.aliases, using=self.using, batch=self.batch, kinds=kinds
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
            self._hold_channels_until = time.monotonic() + self.channel_grace
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
