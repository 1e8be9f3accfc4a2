"""What each page shows, as JSON-ready dicts (the pages and the JSON handlers share them).

Every function costs O(1) or O(log n) Redis work per queue: read-only stats scripts,
bounded ``LRANGE``/``ZRANGE``/``ZREVRANGE`` windows from one end, ``HMGET`` of known
fields. Nothing scans a queue or reads a whole list, so a page with a million messages
queued costs what it costs with a thousand.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import orjson

from .. import monitor
from ..errors import DecodeError
from ..protocol.envelope import decode_entry
from ..protocol.keys import gaps_key
from ..queue import DeadLetter
from ..records import decode_dead_letter
from ..relay import Relay

__all__ = [
    "BODY_LIMIT",
    "DEAD_SAMPLE",
    "TEXT_LIMIT",
    "error_type",
    "find_message",
    "overview",
    "preview",
    "queue_page",
    "truncate",
    "workers",
]

#: Characters of a message body shown; the rest is cut and counted.
BODY_LIMIT = 2000
#: Characters of a reason or traceback shown.
TEXT_LIMIT = 8000
#: Newest dead letters read to group by error type (a window, never the whole set).
DEAD_SAMPLE = 500
#: Points of the overview sparkline (minutes).
SPARK_POINTS = 60


def truncate(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text) - limit} more characters)"


def preview(value: Any, limit: int = BODY_LIMIT) -> str:
    """A body as text (JSON when it is JSON-able), truncated. The pages escape it."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
    else:
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            text = repr(value)
    return truncate(text, limit)


_ERROR = re.compile(r"last error: ([A-Za-z_][\w.]*)")


def error_type(reason: str, traceback: str | None) -> str:
    """The group of a dead letter: the exception type, else the reason's first words."""
    found = _ERROR.search(reason)
    if found:
        return found.group(1)
    if traceback:
        last = [ln for ln in traceback.strip().splitlines() if ln.strip()]
        if last and ":" in last[-1]:
            return last[-1].split(":", 1)[0].strip()[:100]
    return re.sub(r"\d+", "N", reason.split(":", 1)[0])[:100] or "unknown"


def overview(relay: Relay) -> dict[str, Any]:
    """The overview: every queue (with its last hour), topic group, and channel gaps."""
    view = monitor.overview(relay)
    queues = []
    for s in view.queues:
        acked = monitor.queue_history(relay, s.name, "acked", points=SPARK_POINTS)
        dead = monitor.queue_history(relay, s.name, "dead", points=SPARK_POINTS)
        queues.append(
            {
                "name": s.name,
                "ready": s.ready,
                "delayed": s.delayed,
                "in_flight": s.in_flight,
                "dead": s.dead,
                "consumers": s.consumers,
                "oldest_age": s.oldest_age,
                "counters": s.counters,
                "acked_rate": _rate(acked),
                "dead_rate": _rate(dead),
                "history": acked,
            }
        )
    topics = [
        {
            "name": t.name,
            "length": t.length,
            "groups": [
                {
                    "group": g.group,
                    "lag": g.lag,
                    "pending": g.pending,
                    "retrying": g.retrying,
                    "dead": g.dead,
                    "consumers": g.consumers,
                    "history": (
                        hist := monitor.group_history(
                            relay, t.name, g.group, points=SPARK_POINTS
                        )
                    ),
                    "acked_rate": _rate(hist),
                }
                for g in t.groups
            ],
        }
        for t in view.topics
    ]
    return {
        "at": time.time(),
        "namespace": relay.namespace,
        "queues": queues,
        "topics": topics,
        "workers": view.workers,
        "channels": channel_gaps(relay),
    }


def _rate(per_minute: list[int]) -> float:
    """Per second over the previous minute and the current one so far."""
    into = time.time() % 60
    return (per_minute[-2] + per_minute[-1]) / (60 + max(into, 1.0))


def channel_gaps(relay: Relay) -> dict[str, Any]:
    """Gap counters per channel and the latest reports (recorded by instrumented processes)."""
    conn = relay.connection
    key = gaps_key(relay.namespace)
    flat = conn.call("HGETALL", key)
    pairs = (
        flat.items()
        if isinstance(flat, dict)
        else zip(flat[::2], flat[1::2], strict=True)
    )
    counts: dict[str, dict[str, int]] = {}
    for field, value in pairs:
        kind, _, channel = field.decode().partition(":")
        counts.setdefault(channel, {"gaps": 0, "lost": 0})[kind] = int(value)
    recent = conn.call("XREVRANGE", f"{key}:log", "+", "-", "COUNT", 10)
    reports = []
    for entry_id, fields in recent:
        values = (
            fields
            if isinstance(fields, dict)
            else dict(zip(fields[::2], fields[1::2], strict=True))
        )
        reports.append(
            {
                "at": int(entry_id.decode().split("-")[0]) / 1000,
                "report": truncate(
                    values.get(b"report", b"").decode(errors="replace"), 500
                ),
            }
        )
    subscribers, patterns = monitor.channel_subscribers(relay)
    for channel in subscribers:
        counts.setdefault(channel, {"gaps": 0, "lost": 0})
    return {
        "counts": counts,
        "recent": reports,
        "subscribers": subscribers,
        "pattern_subscriptions": patterns,
    }


def _message_dict(
    queue: str, entry: bytes, state: str, due: float | None = None
) -> dict[str, Any]:
    try:
        decoded = decode_entry(entry)
    except DecodeError as exc:
        return {
            "id": "",
            "state": state,
            "queue": queue,
            "body": preview(entry),
            "headers": {},
            "error": exc.reason,
        }
    env = decoded.envelope
    if env is None:
        return {
            "id": decoded.raw_id or "",
            "state": state,
            "queue": queue,
            "body": preview(decoded.raw),
            "headers": {},
            "raw": True,
        }
    return {
        "id": env.get("i", ""),
        "state": state,
        "queue": queue,
        "body": preview(env.get("b")),
        "headers": {
            str(k)[:100]: truncate(str(v), 200) for k, v in (env.get("h") or {}).items()
        },
        "enqueued_at": env.get("t", 0) / 1000,
        "attempt": decoded.deliveries,
        "due": due,
    }


def dead_letters(
    relay: Relay, name: str, *, limit: int, offset: int = 0
) -> list[dict[str, Any]]:
    """Dead letters newest first (over all shards), each as :func:`dead_dict`; a record
    that does not parse shows as such instead of failing the page."""
    conn = relay.connection
    found: list[tuple[float, bytes, Any]] = []
    for k in relay.queue(name).shard_keys():
        reply = conn.call("ZREVRANGE", k.dead, 0, offset + limit - 1, "WITHSCORES")
        pairs = (
            [tuple(p) for p in reply]
            if reply and isinstance(reply[0], (list, tuple))
            else list(zip(reply[::2], reply[1::2], strict=True))
        )
        found += [(float(score), i, k) for i, score in pairs]
    found.sort(key=lambda item: item[0], reverse=True)
    page = found[offset : offset + limit]
    records: dict[bytes, bytes | None] = {}
    for k in relay.queue(name).shard_keys():
        ids = [i for _, i, owner in page if owner is k]
        if ids:
            records.update(zip(ids, conn.call("HMGET", k.dead_data, *ids), strict=True))
    out = []
    for score, msg_id, _ in page:
        record = records.get(msg_id)
        if record is None:
            continue  # purged between the two reads
        out.append(_safe_dead_dict(msg_id.decode(errors="replace"), score, record))
    return out


def _safe_dead_dict(msg_id: str, score: float, record: bytes) -> dict[str, Any]:
    try:
        return dead_dict(decode_dead_letter(record))
    except (
        ValueError,
        KeyError,
        TypeError,
    ):  # orjson and base64 errors are ValueErrors
        return {
            "id": msg_id,
            "queue": "",
            "reason": "malformed dead-letter record",
            "traceback": "",
            "error": "malformed record",
            "attempt": 0,
            "dead_at": score / 1000,
            "body": preview(record),
        }


def dead_dict(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "queue": letter.queue,
        "reason": truncate(letter.reason),
        "traceback": truncate(letter.traceback or ""),
        "error": error_type(letter.reason, letter.traceback),
        "attempt": letter.attempt,
        "dead_at": letter.dead_at,
        "body": preview(letter.body),
    }


def dead_groups(relay: Relay, name: str) -> dict[str, Any]:
    """Dead letters by error type, among the newest :data:`DEAD_SAMPLE` (one bounded
    ``ZREVRANGE`` and ``HMGET``, never the whole set)."""
    sample = dead_letters(relay, name, limit=DEAD_SAMPLE)
    groups = Counter(d["error"] for d in sample)
    return {
        "dead_groups": [{"error": e, "count": n} for e, n in groups.most_common()],
        "dead_sampled": len(sample),
    }


def queue_page(
    relay: Relay,
    name: str,
    *,
    dead_offset: int = 0,
    peek: int = 10,
    groups: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One queue: its stats, the next ready and delayed messages, leases, dead letters."""
    queue = relay.queue(name)
    conn = relay.connection
    stats = queue.stats()
    ready = [
        _message_dict(name, e, "ready")
        for k in queue.shard_keys()
        for e in reversed(conn.call("LRANGE", k.ready, -peek, -1))
    ][:peek]
    delayed = []
    for k in queue.shard_keys():
        pairs = conn.call("ZRANGE", k.delayed, 0, peek - 1, "WITHSCORES")
        pairs = (
            [tuple(p) for p in pairs]
            if pairs and isinstance(pairs[0], (list, tuple))
            else list(zip(pairs[::2], pairs[1::2], strict=True))
        )
        if pairs:
            entries = conn.call("HMGET", k.delayed_data, *[i for i, _ in pairs])
            delayed += [
                _message_dict(name, e, "delayed", float(due) / 1000)
                for (_, due), e in zip(pairs, entries, strict=True)
                if e is not None
            ]
    delayed.sort(key=lambda m: m["due"] or 0)
    page = dead_letters(relay, name, limit=50, offset=dead_offset)
    return {
        "name": name,
        "stats": {
            "ready": stats.ready,
            "delayed": stats.delayed,
            "in_flight": stats.in_flight,
            "dead": stats.dead,
            "consumers": stats.consumers,
            "oldest_age": stats.oldest_age,
            "counters": stats.counters,
            "prioritized": stats.prioritized,
            "parked": stats.parked,
            "parked_keys": stats.parked_keys,
            "parked_key_count": stats.parked_key_count,
            "limits": stats.limits,
        },
        "ready": ready,
        "delayed": delayed[:peek],
        "leases": [_consumer_dict(c) for c in monitor.consumers(relay, name)],
        "dead": page,
        "dead_offset": dead_offset,
        **(groups if groups is not None else dead_groups(relay, name)),
    }


def _consumer_dict(c: monitor.ConsumerInfo) -> dict[str, Any]:
    return {
        "id": c.id,
        "queue": c.queue,
        "host": c.host,
        "pid": c.pid,
        "started": c.started,
        "lease_until": c.lease_until,
        "in_flight": c.in_flight,
        "concurrency": c.concurrency,
        "heartbeat": c.heartbeat,
    }


def workers(relay: Relay) -> list[dict[str, Any]]:
    """Worker processes (host, pid) from the live leases of every queue."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for name in monitor.queue_names(relay):
        for c in monitor.consumers(relay, name):
            w = found.setdefault(
                (c.host, c.pid),
                {
                    "host": c.host,
                    "pid": c.pid,
                    "queues": [],
                    "consumers": 0,
                    "started": c.started,
                    "heartbeat_until": 0.0,
                    "last_heartbeat": None,
                    "concurrency": 0,
                    "in_flight": 0,
                },
            )
            if c.queue not in w["queues"]:
                w["queues"].append(c.queue)
            w["consumers"] += 1
            w["started"] = min(w["started"], c.started)
            w["heartbeat_until"] = max(w["heartbeat_until"], c.lease_until)
            w["in_flight"] += c.in_flight
            w["concurrency"] += c.concurrency
            if c.heartbeat is not None:
                w["last_heartbeat"] = max(w["last_heartbeat"] or 0.0, c.heartbeat)
    return sorted(found.values(), key=lambda w: (w["host"], w["pid"]))


def find_message(relay: Relay, msg_id: str) -> list[dict[str, Any]]:
    """Where message ``msg_id`` is, among what can be found by id in O(1) per queue:
    the dead letters and the delayed set. A ready or in-flight message sits in a list or
    a consumer's hash, which cannot be searched by id without reading them whole."""
    conn = relay.connection
    found: list[dict[str, Any]] = []
    for name in monitor.queue_names(relay):
        for k in relay.queue(name).shard_keys():
            record = conn.call("HGET", k.dead_data, msg_id)
            if record is not None:
                score = conn.call("ZSCORE", k.dead, msg_id)
                row = _safe_dead_dict(msg_id, float(score or 0), record)
                found.append(row | {"queue": name, "state": "dead"})
            entry = conn.call("HGET", k.delayed_data, msg_id)
            if entry is not None:
                due = conn.call("ZSCORE", k.delayed, msg_id)
                found.append(
                    _message_dict(
                        name, entry, "delayed", float(due) / 1000 if due else None
                    )
                )
    return found
