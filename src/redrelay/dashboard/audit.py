"""The audit log of operator actions: a capped Redis stream, ``<namespace>:audit``."""

from __future__ import annotations

from typing import Any

from ..relay import Relay

__all__ = ["AUDIT_CAP", "audit_key", "read", "record"]

#: Entries kept (approximately, never fewer: ``XADD MAXLEN ~``).
AUDIT_CAP = 10_000


def audit_key(namespace: str) -> str:
    """The audit stream of a namespace (outside any queue's hash tag: one key)."""
    return f"{namespace}:audit"


def record(relay: Relay, *, who: str, action: str, target: str, detail: str) -> None:
    """Append one action (who did what to which queue, and the outcome)."""
    relay.connection.call(
        "XADD",
        audit_key(relay.namespace),
        "MAXLEN",
        "~",
        AUDIT_CAP,
        "*",
        "who",
        who[:200],
        "action",
        action[:100],
        "target",
        target[:300],
        "detail",
        detail[:1000],
    )


def read(relay: Relay, count: int = 100) -> list[dict[str, Any]]:
    """The newest ``count`` entries, newest first."""
    rows = relay.connection.call(
        "XREVRANGE", audit_key(relay.namespace), "+", "-", "COUNT", count
    )
    out = []
    for entry_id, fields in rows:
        if not isinstance(fields, dict):
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        values = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        out.append({"at": int(entry_id.decode().split("-")[0]) / 1000, **values})
    return out
