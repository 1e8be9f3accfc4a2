"""The app config: autodiscovery of ``consumers.py``, system checks, settings resets."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import request_started, setting_changed
from django.utils.module_loading import autodiscover_modules

__all__ = ["RedrelayConfig"]


class RedrelayConfig(AppConfig):
    """``redrelay.contrib.django`` as an installed app (label ``redrelay``).

    ``ready()`` imports the ``consumers`` module of every installed app (where
    :func:`~redrelay.contrib.django.consumer` and
    :func:`~redrelay.contrib.django.subscriber` declare handlers), registers the
    system checks, closes the relays when ``REDRELAY`` or ``TASKS`` change, and
    connects the ``START_IN_PROCESS`` starter to ``request_started`` (so consumers run
    only in processes that serve requests, see :mod:`.inprocess`). It does not
    connect to Redis.
    """

    name = "redrelay.contrib.django"
    label = "redrelay"
    verbose_name = "redrelay"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks
        from .inprocess import start_on_request
        from .relays import reset_relays

        checks.register_checks()
        setting_changed.connect(reset_relays, dispatch_uid="redrelay.reset_relays")
        request_started.connect(start_on_request, dispatch_uid="redrelay.in_process")
        autodiscover_modules("consumers")
