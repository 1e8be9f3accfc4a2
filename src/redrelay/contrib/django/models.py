"""The outbox table: messages decided inside a transaction, sent once it committed."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

__all__ = ["Dashboard", "OutboxMessage"]


class OutboxMessage(models.Model):
    """One message waiting in the outbox (written by the ``*_on_commit`` functions, ``outbox=True``).

    The row is written in the caller's transaction, so it exists exactly when the
    transaction committed. After the commit it is sent at once if Redis answers, else
    by the outbox relay of ``manage.py relay_worker`` (or ``relay_outbox``), which
    deletes each row in the same database transaction that saw it sent. A queue
    message is put with ``dedup_key="outbox:<uid>"`` (unless the caller gave one), so
    a row sent twice (a crash between the put and the commit) is enqueued once; a task
    likewise. A channel or topic message may be published twice in that case (both
    copies carry the header ``outbox-id: <uid>``).
    """

    KIND_QUEUE = "queue"
    KIND_CHANNEL = "channel"
    KIND_TOPIC = "topic"
    #: A ``django.tasks`` task: ``name`` is the ``TASKS`` alias, ``body`` the message.
    KIND_TASK = "task"
    KINDS = [
        (KIND_QUEUE, "queue"),
        (KIND_CHANNEL, "channel"),
        (KIND_TOPIC, "topic"),
        (KIND_TASK, "task"),
    ]

    #: A unique id that survives database resets (unlike the pk), for deduplication.
    uid = models.UUIDField(default=uuid.uuid4, editable=False)
    #: The ``REDRELAY`` alias whose relay sends it.
    alias = models.CharField(max_length=100, default="default")
    kind = models.CharField(max_length=10, choices=KINDS, default=KIND_QUEUE)
    #: The queue, channel or topic name (the ``TASKS`` alias for a task).
    name = models.CharField(max_length=200)
    body = models.JSONField()
    headers = models.JSONField(default=dict, blank=True)
    #: When a delayed queue message becomes available (``delay=``/``eta=`` at write time).
    eta = models.DateTimeField(null=True, blank=True)
    #: The caller's ``dedup_key=``, if any.
    dedup_key = models.CharField(max_length=200, null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    #: Failed sends that were not Redis being unreachable (e.g. over the size limit).
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]
        verbose_name = "outbox message"

    def __str__(self) -> str:
        return f"{self.kind} {self.name} #{self.pk}"


class Dashboard(models.Model):
    """No table: the dashboard's entry in the Django admin's index (its list redirects
    to the dashboard's URLs), as django-rq lists its queues there."""

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"
