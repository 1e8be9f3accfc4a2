"""The records of the ``django.tasks`` backend: redrelay result records, JSON values.

Pure helpers of :mod:`redrelay.contrib.django.tasks`: a Django task's record is
redrelay's result record (docs/results.md), so ``queue.result(id)``, ``queue.status(id)``
and their waiters read Django tasks too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from ...protocol.keys import QueueKeys

__all__: list[str] = []

_FINISHED = ("SUCCESSFUL", "FAILED")


def _result_key(namespace: str, queue: str, result_id: str) -> str:
    # The record of redrelay's results (docs/results.md), under the queue's hash tag:
    # queue.result(id), queue.status(id) and their waiters read Django tasks too.
    return QueueKeys.of(namespace, queue).job(result_id)


def _state(record: dict[str, Any]) -> list[Any]:
    """The fields that redrelay's results read (``s`` and ``v``) for a Django record."""
    status = record["status"]
    if status == "SUCCESSFUL":
        return ["s", "ok", "v", b"j" + orjson.dumps(record.get("return_value"))]
    if status == "FAILED":
        error = (record.get("errors") or [{}])[-1]
        failure = {
            "type": error.get("exception_class_path", "builtins.Exception"),
            "message": error.get("message", ""),
            "traceback": error.get("traceback"),
            "reason": "the task raised",
        }
        return ["s", "fail", "v", orjson.dumps(failure)]
    return ["s", "r" if status == "RUNNING" else "q", "v", ""]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _normalize_json(value: Any) -> Any:
    """JSON values only, as ``django.tasks`` requires of return values."""
    if isinstance(value, dict):
        return {str(k): _normalize_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize_json(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"a task must return JSON values, not {type(value).__name__}")
