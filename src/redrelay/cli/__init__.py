"""The ``redrelay`` command line: one click group, one module per command group.

Layout: ``_base`` holds the group, the shared ``--url``/``--namespace`` options, error
handling and table helpers; ``worker``, ``stats``, ``dead``, ``messages`` (put, publish,
tail), ``results`` (status, result, cancel), ``doctor``, ``embedded``, ``topics``,
``schedules``, ``dashboard``, ``queues`` (purge, delete) and ``demo`` each add their
commands to it on import.

Framework glue (``flask relay``, the Django management commands) reuses the names
exported here, and the public modules ``stats`` and ``worker``: never ``_base``.
"""

from __future__ import annotations

import click

from . import (  # noqa: F401
    dashboard,
    dead,
    demo,
    doctor,
    embedded,
    messages,
    queues,
    results,
    schedules,
    stats,
    topics,
    worker,
)
from ._base import CliError as CliError
from ._base import Group as Group
from ._base import cli as cli
from ._base import format_age as format_age
from ._base import load_relay as load_relay
from ._base import main as main
from ._base import queue_names as queue_names
from ._base import table as table
from .dead import dead_letter_dict as dead_letter_dict
from .dead import format_time as format_time
from .dead import json_default as json_default
from .worker import run_worker as run_worker
from .worker import worker_options as worker_options

__all__ = [
    "CliError",
    "Group",
    "cli",
    "dead_letter_dict",
    "format_age",
    "format_time",
    "json_default",
    "load_relay",
    "main",
    "queue_names",
    "run_worker",
    "shared_commands",
    "table",
    "worker_options",
]


def shared_commands() -> list[click.Command]:
    """The queue tools a framework's command group mounts next to its own ``worker``:
    ``stats``, ``schedules``, ``dead``, ``queue``, ``put``, ``publish``, ``tail``,
    ``doctor``. They read the relay's URL, namespace and embedded data directory from
    ``ctx.obj`` (``{"url": ..., "namespace": ..., "data_dir": ...}``)."""
    return [
        stats.stats,
        schedules.schedules,
        dead.dead,
        queues.queue,
        messages.put,
        messages.publish,
        messages.tail,
        doctor.doctor,
    ]
