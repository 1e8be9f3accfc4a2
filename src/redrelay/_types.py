"""Type aliases and protocols shared across the package."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from .message import Message

__all__ = ["AsyncHandler", "Duration", "Handler", "SyncHandler"]

#: A duration at the public API: float seconds or a timedelta.
Duration = float | timedelta
#: A plain handler.
SyncHandler = Callable[[Message], Any]
#: A coroutine handler (``async def``).
AsyncHandler = Callable[[Message], Awaitable[Any]]
#: Either kind.
Handler = SyncHandler | AsyncHandler
