"""The settings of the tasks backend (``TASKS[alias]["OPTIONS"]``), validated.

Kept apart from :mod:`redrelay.contrib.django.tasks` so that reading them imports
neither the tasks framework nor the backend.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Iterable
from typing import Any

from ...config import ConsumerOptions
from ...errors import ConfigurationError, InvalidName
from ...protocol.keys import validate_name
from .conf import DEFAULT_ALIAS, InvalidRelaySettings

__all__ = [
    "CONSUMER_KEYS",
    "DEFAULT_RESULT_TTL",
    "OPTION_KEYS",
    "TasksSettings",
    "problems",
    "tasks_settings",
]

#: Keys of the backend's ``OPTIONS``.
OPTION_KEYS = frozenset({"RELAY", "QUEUE_PREFIX", "RESULT_TTL", "CONSUMER"})
#: Consumer options a task queue accepts (``retries`` makes no sense for tasks).
CONSUMER_KEYS = frozenset(
    inspect.signature(ConsumerOptions.build).parameters.keys() - {"retries", "backoff"}
)
#: Default seconds a result record is kept after its last change.
DEFAULT_RESULT_TTL = 86400


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TasksSettings:
    """One ``TASKS`` alias of ours, validated, with defaults filled in."""

    relay: str
    prefix: str
    result_ttl: int | None
    consumer: dict[str, Any]
    queues: list[str]


def problems(params: dict[str, Any]) -> Iterable[str]:
    options = params.get("OPTIONS", {})
    if not isinstance(options, dict):
        yield f"OPTIONS must be a dict, got {type(options).__name__}"
        return
    for key in sorted(set(options) - OPTION_KEYS, key=str):
        close = difflib.get_close_matches(str(key), OPTION_KEYS, n=1)
        yield f"unknown OPTIONS key {key!r}" + (
            f" (did you mean {close[0]!r}?)" if close else ""
        )
    relay = options.get("RELAY", DEFAULT_ALIAS)
    if not isinstance(relay, str):
        yield f"OPTIONS['RELAY'] must be a REDRELAY alias (str), got {relay!r}"
    ttl = options.get("RESULT_TTL", DEFAULT_RESULT_TTL)
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1
    ):
        yield f"OPTIONS['RESULT_TTL'] must be an int of seconds >= 1, or None, got {ttl!r}"
    consumer = options.get("CONSUMER", {})
    if not isinstance(consumer, dict):
        yield f"OPTIONS['CONSUMER'] must be a dict, got {type(consumer).__name__}"
    else:
        unknown = sorted(set(consumer) - CONSUMER_KEYS, key=str)
        if unknown:
            yield (
                f"OPTIONS['CONSUMER'] has unknown options {unknown} "
                f"(known: {', '.join(sorted(CONSUMER_KEYS))}; failed tasks are not retried)"
            )
        else:
            try:
                ConsumerOptions.build(**{"prefetch": 1, **consumer})
            except ConfigurationError as exc:
                yield f"OPTIONS['CONSUMER']: {exc}"
    queues = params.get("QUEUES", ["default"])
    if isinstance(queues, str) or not isinstance(queues, (list, tuple, set)):
        yield (
            "QUEUES must be a list of task queue names, e.g. ['default'] ([]: any "
            f"queue name), got {queues!r}"
        )
        return
    prefix = options.get("QUEUE_PREFIX", "tasks.")
    for queue in queues:
        try:
            validate_name("queue", f"{prefix}{queue}")
        except InvalidName as exc:
            yield f"QUEUES/QUEUE_PREFIX: {exc}"


def tasks_settings(alias: str, params: dict[str, Any]) -> TasksSettings:
    """Validate ``TASKS[alias]``.

    :raises InvalidRelaySettings: naming the first problem (``problems()`` lists all).
    """
    for problem in problems(params):
        raise InvalidRelaySettings(f"TASKS[{alias!r}]: {problem}")
    options = params.get("OPTIONS", {})
    return TasksSettings(
        relay=options.get("RELAY", DEFAULT_ALIAS),
        prefix=options.get("QUEUE_PREFIX", "tasks."),
        result_ttl=options.get("RESULT_TTL", DEFAULT_RESULT_TTL),
        consumer={"prefetch": 1, **options.get("CONSUMER", {})},
        # [] (as in django.tasks): any queue name; see tasks.consume_open_queues().
        queues=list(params.get("QUEUES", ["default"])),
    )
