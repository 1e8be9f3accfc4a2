"""System checks (``manage.py check``): the ``REDRELAY`` setting, handlers, the outbox.

====================  =========================================================
id                    problem
====================  =========================================================
``redrelay.E001``     ``REDRELAY`` is not a dict of aliases
``redrelay.E002``     an alias is not a dict
``redrelay.E003``     ``REDRELAY`` has no ``"default"`` alias
``redrelay.E004``     ``URL`` is not a str, or has an unsupported scheme
``redrelay.E005``     an alias has an unknown key (a typo, with a suggestion)
``redrelay.E006``     ``OPTIONS`` is not a dict, or has an unknown or invalid option
``redrelay.E007``     ``NAMESPACE`` is not a valid name
``redrelay.E008``     ``OUTBOX``, ``OUTBOX_POLL`` or ``OUTBOX_BATCH`` is invalid
``redrelay.E009``     ``SSE_AUTHORIZE`` cannot be imported or is not callable, or
                      ``SSE_KEEPALIVE`` is invalid
``redrelay.E010``     a handler declared with ``@consumer``/``@subscriber`` cannot be
                      registered (bad or unknown options, two consumers for one
                      queue ...), or names an alias ``REDRELAY`` does not have
``redrelay.E011``     a ``TASKS`` backend of redrelay is misconfigured (see
                      :mod:`redrelay.contrib.django.tasks`)
``redrelay.E012``     no URL while ``DEBUG`` is off, outside tests, and ``EMBEDDED`` is
                      not True (the embedded development server is not used silently
                      in production)
``redrelay.E013``     ``EMBEDDED`` or ``START_IN_PROCESS`` is not a bool
``redrelay.W002``     the outbox is enabled but its table does not exist (database
                      check: ``migrate``, ``check --database default``)
``redrelay.W011``     two ``TASKS`` aliases of redrelay put tasks on one redrelay
                      queue (it works, with one alias's ``CONSUMER`` options)
====================  =========================================================
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseError

from ...config import ENV_URL
from .conf import DEFAULT_ALIAS, InvalidRelaySettings, embedded_by_default, problems
from .relays import build_relay, declared_aliases

__all__ = ["check_handlers", "check_outbox_table", "check_settings", "register_checks"]

#: The tag of every redrelay check (``manage.py check --tag redrelay``).
TAG = "redrelay"


def register_checks() -> None:
    """Register the checks (called by ``AppConfig.ready()``; idempotent)."""
    checks.register(check_settings, TAG)
    checks.register(check_handlers, TAG)
    checks.register(check_outbox_table, TAG, checks.Tags.database)


def _aliases() -> dict[Any, Any] | None:
    raw = getattr(settings, "REDRELAY", None)
    if raw is None:
        return {DEFAULT_ALIAS: {}}
    return raw if isinstance(raw, dict) else None


def check_settings(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """E001-E009, E012 and E013: the ``REDRELAY`` setting."""
    aliases = _aliases()
    if aliases is None:
        raw = getattr(settings, "REDRELAY", None)
        return [
            checks.Error(
                f"settings.REDRELAY must be a dict of aliases, got {type(raw).__name__}.",
                hint='e.g. REDRELAY = {"default": {"URL": "redis://localhost:6379/0"}}',
                id="redrelay.E001",
            )
        ]
    errors: list[checks.CheckMessage] = []
    if DEFAULT_ALIAS not in aliases:
        errors.append(
            checks.Error(
                'settings.REDRELAY has no "default" alias.',
                hint="get_relay(), the worker and the tasks backend use "
                '"default" unless told otherwise; add REDRELAY["default"].',
                id="redrelay.E003",
            )
        )
    for alias, config in aliases.items():
        for problem in problems(str(alias), config):
            errors.append(
                checks.Error(
                    problem.msg, hint=problem.hint, id=f"redrelay.{problem.code}"
                )
            )
        if isinstance(config, dict):
            errors.extend(_missing_url(str(alias), config))
    return errors


def _missing_url(alias: str, config: dict[str, Any]) -> Iterable[checks.Error]:
    if (
        config.get("URL") is None
        and not os.environ.get(ENV_URL)
        and not embedded_by_default()
        and config.get("EMBEDDED") is not True
    ):
        yield checks.Error(
            f"REDRELAY[{alias!r}] has no URL and DEBUG is off: redrelay would have no "
            "Redis server to use.",
            hint=f"Set REDRELAY[{alias!r}]['URL'] (or $REDRELAY_URL) to your Redis "
            f"server; to use the embedded development redis-server with DEBUG off, set "
            f"REDRELAY[{alias!r}]['EMBEDDED'] = True.",
            id="redrelay.E012",
        )


def check_handlers(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """E010: every declared handler can be registered on its relay (no I/O)."""
    aliases = _aliases()
    if aliases is None:
        return []  # E001 says it
    errors: list[checks.CheckMessage] = []
    for alias, handlers in declared_aliases().items():
        if alias not in aliases:
            known = ", ".join(repr(a) for a in aliases) or "none"
            errors.append(
                checks.Error(
                    f"{handlers[0]} names alias {alias!r}, which settings.REDRELAY does "
                    f"not have (known: {known}), so it would never run"
                    + (
                        f" ({len(handlers) - 1} more handler(s) too)."
                        if len(handlers) > 1
                        else "."
                    ),
                    hint=f"Fix alias= in the decorator, or add REDRELAY[{alias!r}].",
                    id="redrelay.E010",
                )
            )
    for alias, config in aliases.items():
        if not isinstance(config, dict) or any(problems(str(alias), config)):
            continue  # the settings check reports those
        try:
            build_relay(str(alias))
        except InvalidRelaySettings as exc:
            errors.append(
                checks.Error(
                    str(exc),
                    hint="Fix the decorator's options, or the TASKS backend's OPTIONS.",
                    id="redrelay.E010",
                )
            )
    return errors


def check_outbox_table(
    app_configs: Sequence[Any] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    """W002: the outbox is on but its table is missing (a database check).

    A warning, not an error: ``migrate`` runs the database checks before migrating,
    and an error would stop it from creating the table.
    """
    aliases = _aliases()
    if not databases or aliases is None:
        return []
    enabled = [
        str(alias)
        for alias, config in aliases.items()
        if isinstance(config, dict) and config.get("OUTBOX") is True
    ]
    if not enabled:
        return []
    from .models import OutboxMessage

    table = OutboxMessage._meta.db_table
    warnings: list[checks.CheckMessage] = []
    for database in databases:
        if database != DEFAULT_DB_ALIAS:
            continue
        try:
            tables = connections[database].introspection.table_names()
        except DatabaseError:
            continue
        if table not in tables:
            warnings.append(
                checks.Warning(
                    f"REDRELAY[{enabled[0]!r}] enables the outbox, but the table {table!r} "
                    f"does not exist in database {database!r}.",
                    hint="Run `manage.py migrate redrelay`.",
                    id="redrelay.W002",
                )
            )
    return warnings
