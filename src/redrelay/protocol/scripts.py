"""The Lua scripts, read lazily from package data (nothing is read at import)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["SCRIPT_NAMES", "Script", "script"]

#: Every script shipped in ``protocol/scripts/``; one file per state transition.
SCRIPT_NAMES = (
    "ack",
    "bury",
    "fetch",
    "heartbeat",
    "leave",
    "mark",
    "purge_dead",
    "put",
    "recover",
    "release",
    "requeue_dead",
    "retry",
    "topic_ack",
    "topic_bury",
    "topic_create",
    "topic_fetch",
    "topic_mark",
    "topic_publish",
    "topic_recover",
    "topic_requeue_dead",
    "topic_retry",
)


@dataclass(frozen=True, slots=True)
class Script:
    """A script's name, source and SHA1 (for ``EVALSHA``)."""

    name: str
    source: str
    sha: str


@cache
def script(name: str) -> Script:
    """Load one script by name (cached)."""
    if name not in SCRIPT_NAMES:
        raise KeyError(f"no Lua script named {name!r}")
    source = (
        resources.files(__package__)
        .joinpath("scripts")
        .joinpath(f"{name}.lua")
        .read_text("utf-8")
    )
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())
