"""Which redrelay queues a ``TASKS`` alias of ours consumes, and system check W011.

Kept apart from :mod:`redrelay.contrib.django.tasks` (the backend) for size; imports of
the backend are late, since it imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.core import checks

from ...errors import ConfigurationError, Reject
from ...message import Message
from ._tasks_conf import problems, tasks_settings
from .conf import InvalidRelaySettings

if TYPE_CHECKING:
    from ...relay import Relay
    from .tasks import RedRelayBackend

__all__ = ["consume_open_queues", "register_consumers", "shared_queues", "task_queues"]


def _backends() -> Any:
    """``django.tasks.task_backends`` (or the backport's), imported when first needed."""
    try:
        from django.tasks import task_backends  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from django_tasks import task_backends
    return task_backends


def register_consumers(
    relay: Relay, relay_alias: str, task_alias: str, params: dict[str, Any]
) -> None:
    """Register the consumers of ``TASKS[task_alias]`` on ``relay`` if it is theirs.

    Called when the relay of ``relay_alias`` is built (see ``conf.build_relay``).
    """
    if any(problems(params)):
        return  # redrelay.E011 says why; enqueue() raises it
    config = tasks_settings(task_alias, params)
    if config.relay != relay_alias:
        return

    # QUEUES: [] takes any queue name; the worker consumes "default" and the task queues
    # that exist when it starts (see consume_open_queues()).
    for queue in config.queues or ["default"]:
        _register(relay, task_alias, f"{config.prefix}{queue}", config.consumer)


def _register(
    relay: Relay, task_alias: str, name: str, options: dict[str, Any]
) -> None:
    if name in relay.consumers:
        # Another TASKS alias of ours uses this redrelay queue too (redrelay.W011): its
        # consumer runs both aliases' tasks, each with its own backend (the message
        # names it), instead of the second registration breaking every enqueue.
        return

    def run_task(message: Message) -> None:
        from .tasks import RedRelayBackend

        task_backends = _backends()

        body = message.body
        alias = body.get("backend") if isinstance(body, dict) else None
        alias = alias if isinstance(alias, str) else task_alias
        backend = task_backends[alias]
        if not isinstance(backend, RedRelayBackend):
            raise Reject(f"TASKS[{alias!r}] is no longer a RedRelayBackend")
        backend.run(message)

    run_task.__qualname__ = f"run_task[{task_alias}]"
    try:
        relay.consumer(name, **options)(run_task)
    except ConfigurationError as exc:
        raise InvalidRelaySettings(f"TASKS[{task_alias!r}]: {exc}") from exc


def task_queues(relay: Relay, prefix: str) -> list[str]:
    """The redrelay queues named ``<prefix>...`` that exist (something was put on them)."""
    from ...protocol.keys import queues_key

    known = relay.connection.call("SMEMBERS", queues_key(relay.namespace))
    return sorted(n for n in (m.decode() for m in known) if n.startswith(prefix))


def consume_open_queues(relay: Relay, relay_alias: str) -> list[str]:
    """In a worker: register consumers for the task queues of backends with
    ``QUEUES: []`` (any queue name) that exist now (something was enqueued on them).

    ``relay_worker`` calls this once at start; a queue first used later is consumed
    from the next start. Returns the queues added.
    """
    from django.conf import settings

    from .tasks import RedRelayBackend

    task_backends = _backends()
    added: list[str] = []
    aliases = getattr(settings, "TASKS", None)
    for task_alias, params in (aliases if isinstance(aliases, dict) else {}).items():
        if not isinstance(params, dict) or params.get("QUEUES", ["default"]):
            continue
        if not isinstance(task_backends[task_alias], RedRelayBackend):
            continue
        config = tasks_settings(task_alias, params)
        if config.relay != relay_alias:
            continue
        for name in task_queues(relay, config.prefix):
            if name not in relay.consumers:
                _register(relay, task_alias, name, config.consumer)
                added.append(name)
    return added


def _queue_names(alias: str, params: dict[str, Any]) -> set[tuple[str, str]]:
    """(relay alias, redrelay queue) pairs of a TASKS alias (empty if it is invalid)."""
    if any(problems(params)):
        return set()
    config = tasks_settings(alias, params)
    return {(config.relay, f"{config.prefix}{q}") for q in config.queues or ["default"]}


def shared_queues(
    backend: RedRelayBackend, aliases: object
) -> Iterable[checks.CheckMessage]:
    """``redrelay.W011``: another alias of ours puts tasks on the same redrelay
    queue (it works: one consumer runs both, each with its own backend, but with
    the ``CONSUMER`` options of whichever registered first)."""
    mine = _queue_names(
        backend.alias, {"OPTIONS": backend.options, "QUEUES": sorted(backend.queues)}
    )
    for alias, params in (aliases if isinstance(aliases, dict) else {}).items():
        if alias == backend.alias or not isinstance(params, dict):
            continue
        if (
            params.get("BACKEND")
            != f"{type(backend).__module__}.{type(backend).__qualname__}"
        ):
            continue
        shared = sorted(mine & _queue_names(alias, params))
        if shared:
            yield checks.Warning(
                f"TASKS[{backend.alias!r}] and TASKS[{alias!r}] both put tasks on the "
                f"redrelay queue(s) {', '.join(q for _, q in shared)}.",
                hint="Give one of them another OPTIONS['QUEUE_PREFIX'] (or RELAY), "
                "so each has consumers with its own CONSUMER options.",
                id="redrelay.W011",
            )
