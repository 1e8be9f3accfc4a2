"""The Lua scripts, read lazily from package data (nothing is read at import)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["INCLUDES", "SCRIPT_NAMES", "SHEBANG", "Script", "script"]

#: Every script shipped in ``protocol/scripts/``; one file per state transition.
SCRIPT_NAMES = (
    "ack",
    "advance",
    "bury",
    "cancel",
    "complete",
    "delete_queue",
    "fetch",
    "heartbeat",
    "leave",
    "limit_spec",
    "mark",
    "purge",
    "purge_dead",
    "put",
    "put_prio",
    "recover",
    "release",
    "requeue_dead",
    "retry",
    "schedule_fire",
    "schedule_read",
    "schedule_set",
    "schedule_trigger",
    "stats",
    "sweep_results",
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


#: Redis 7 reads script flags from a first line like this; Redis 6.2 cannot compile it.
SHEBANG = "#!lua"


@dataclass(frozen=True, slots=True)
class Script:
    """A script's name, source and SHA1 (for ``EVALSHA``), and the same for Redis < 7.

    Scripts that must run on a full Redis (every worker-side transition, so that workers
    can drain it; see docs/reliability.md) start with ``#!lua flags=allow-oom``. Redis 6.2
    does not know shebangs, so ``legacy_source`` turns that line into a comment (line
    numbers in Lua errors stay the same); the flags then do not apply.
    """

    name: str
    source: str
    sha: str
    legacy_source: str
    legacy_sha: str

    def for_server(self, legacy: bool) -> tuple[str, str]:
        """``(sha, source)`` for a Redis >= 7 (``legacy`` False) or an older one."""
        return (
            (self.legacy_sha, self.legacy_source) if legacy else (self.sha, self.source)
        )


@cache
def script(name: str) -> Script:
    """Load one script by name (cached)."""
    if name not in SCRIPT_NAMES:
        raise KeyError(f"no Lua script named {name!r}")
    source = _expand(_read(name))
    legacy = "-- " + source if source.startswith(SHEBANG) else source
    return Script(name, source, _sha1(source), legacy, _sha1(legacy))


#: Snippets a script pulls in with a line ``-- @include <name>`` (``scripts/_<name>.lua``).
INCLUDES = ("count", "route")


def _read(name: str) -> str:
    return (
        resources.files(__package__)
        .joinpath("scripts")
        .joinpath(f"{name}.lua")
        .read_text("utf-8")
    )


def _expand(source: str) -> str:
    """Replace each ``-- @include <name>`` line with that snippet joined into one line.

    Lua has no include, and the few transitions that count outcomes (ack, fetch, retry,
    bury, recover) share one counting function, and those that put entries back share
    one routing by priority (``_route``); one line keeps the line numbers of Lua errors
    those of the script's own file (so a snippet has no comment after code on a line).
    """
    lines = source.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("-- @include "):
            snippet = line.removeprefix("-- @include ").strip()
            if snippet not in INCLUDES:
                raise KeyError(f"no Lua snippet named {snippet!r}")
            code = (s.strip() for s in _read(f"_{snippet}").split("\n"))
            lines[i] = " ".join(s for s in code if s and not s.startswith("--"))
    return "\n".join(lines)


def _sha1(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()
