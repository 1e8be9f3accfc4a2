"""The ``redrelay`` command line: one click group, one module per command group.

Layout: ``_base`` holds the group, the shared ``--url``/``--namespace`` options, error
handling and table helpers; ``worker``, ``stats``, ``dead``, ``messages`` (put, publish,
tail), ``doctor``, ``embedded``, ``topics``, ``queues`` (purge, delete) and ``demo`` each add their commands to it on import.
"""

from . import (  # noqa: F401
    dead,
    demo,
    doctor,
    embedded,
    messages,
    queues,
    stats,
    topics,
    worker,
)
from ._base import CliError as CliError
from ._base import cli as cli
from ._base import load_relay as load_relay
from ._base import main as main

__all__ = ["CliError", "cli", "load_relay", "main"]
