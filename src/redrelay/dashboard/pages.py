"""Server-rendered HTML of the dashboard pages. Every value goes through :func:`h`.

Message bodies, headers, reasons and tracebacks are hostile input: they are escaped
here (and truncated in data.py), and the pages carry no inline script or style, so the
Content-Security-Policy can forbid both.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

__all__ = [
    "audit_page",
    "error_page",
    "layout",
    "message_page",
    "overview_page",
    "queue_page",
    "result_page",
    "workers_page",
]


def h(value: object) -> str:
    """Escape for HTML text and attribute values (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def layout(root: str, title: str, body: str, *, live: bool = False) -> str:
    nav = "".join(
        f'<a href="{h(root)}{path}">{label}</a>'
        for path, label in (
            ("/", "Overview"),
            ("/workers", "Workers"),
            ("/messages", "Messages"),
            ("/audit", "Audit log"),
            ("/metrics", "Metrics"),
        )
    )
    script = (
        f'<script src="{h(root)}/static/dashboard.js" defer></script>' if live else ""
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{h(title)} · redrelay</title>"
        # An empty inline icon: else browsers fetch /favicon.ico, outside the mount,
        # and log its 404 on every page (CSP img-src allows data:).
        '<link rel="icon" href="data:,">'
        f'<link rel="stylesheet" href="{h(root)}/static/dashboard.css">{script}</head>'
        f'<body data-root="{h(root)}"><header><strong>redrelay</strong><nav>{nav}</nav>'
        f'<span id="live" class="live"></span></header><main><h1>{h(title)}</h1>{body}'
        "</main></body></html>"
    )


def _table(heads: Iterable[str], rows: Iterable[str], cls: str = "") -> str:
    head = "".join(f"<th>{h(x)}</th>" for x in heads)
    return f'<table class="{h(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def sparkline(points: list[int], width: int = 120, height: int = 24) -> str:
    """An inline SVG polyline (no script, no style attribute)."""
    top = max(points) if points and max(points) > 0 else 1
    step = width / max(1, len(points) - 1)
    coords = " ".join(
        f"{i * step:.1f},{height - (p / top) * (height - 2) - 1:.1f}"
        for i, p in enumerate(points)
    )
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<polyline fill="none" stroke="currentColor" points="{h(coords)}"/></svg>'
    )


def overview_page(root: str, data: dict[str, Any]) -> str:
    rows = []
    for q in data["queues"]:
        n = h(q["name"])
        cells = "".join(
            f'<td class="num" data-q="{n}" data-f="{f}">{h(q[f])}</td>'
            for f in ("ready", "delayed", "in_flight", "dead", "consumers")
        )
        rows.append(
            f'<tr><td><a href="{h(root)}/queues/{h(quote(q["name"]))}">{n}</a></td>{cells}'
            f'<td class="num" data-q="{n}" data-f="oldest_age">{_age(q["oldest_age"])}</td>'
            f'<td class="num" data-q="{n}" data-f="acked_rate">{q["acked_rate"]:.2f}</td>'
            f'<td data-q="{n}" data-f="history">{sparkline(q["history"])}</td></tr>'
        )
    body = (
        _table(
            [
                "queue",
                "ready",
                "delayed",
                "in flight",
                "dead",
                "consumers",
                "oldest",
                "acked/s",
                "last hour",
            ],
            rows,
            "queues",
        )
        if rows
        else '<p class="empty">No queues yet: a queue appears once something is put on it or a worker consumes it.</p>'
    )
    topic_rows = [
        f"<tr><td>{h(t['name'])}</td><td>{h(g['group'])}</td>"
        + "".join(
            f'<td class="num" data-t="{h(t["name"])}/{h(g["group"])}" data-f="{f}">{h("-" if g[f] is None else g[f])}</td>'
            for f in ("lag", "pending", "retrying", "dead", "consumers")
        )
        + f'<td class="num" data-t="{h(t["name"])}/{h(g["group"])}" data-f="acked_rate">{g["acked_rate"]:.2f}</td>'
        + f'<td data-t="{h(t["name"])}/{h(g["group"])}" data-f="history">{sparkline(g["history"])}</td>'
        + "</tr>"
        for t in data["topics"]
        for g in t["groups"]
    ]
    if topic_rows:
        body += "<h2>Topics</h2>" + _table(
            [
                "topic",
                "group",
                "lag",
                "pending",
                "retrying",
                "dead",
                "consumers",
                "acked/s",
                "last hour",
            ],
            topic_rows,
        )
    ch = data["channels"]
    if ch["counts"] or ch["recent"]:
        subs = ch["subscribers"]
        body += "<h2>Channels</h2>" + _table(
            ["channel", "subscribers", "gap reports", "messages lost"],
            [
                f"<tr><td>{h(c)}</td><td class=num>{h(subs.get(c, 0))}</td>"
                f"<td class=num>{h(v['gaps'])}</td><td class=num>{h(v['lost'])}</td></tr>"
                for c, v in sorted(ch["counts"].items())
            ],
        )
        body += (
            f"<p class=meta>Pattern subscriptions on the server: {h(ch['pattern_subscriptions'])} "
            "(the SSE hubs subscribe to a pattern; they are not counted per channel).</p>"
        )
        body += (
            "<ul class=gaps>"
            + "".join(
                f"<li>{_when(r['at'])}: {h(r['report'])}</li>" for r in ch["recent"]
            )
            + "</ul>"
        )
    body += f'<p class="meta">Workers: <span data-f="workers">{h(data["workers"])}</span> · namespace {h(data["namespace"])}</p>'
    return layout(root, "Overview", body, live=True)


def _message_rows(messages: list[dict[str, Any]]) -> list[str]:
    return [
        f"<tr><td><code>{h(m['id'])}</code></td><td>{_when(m.get('enqueued_at'))}</td>"
        f"<td>{_when(m.get('due')) if m.get('due') else '-'}</td>"
        f"<td><pre class=body>{h(m['body'])}</pre></td></tr>"
        for m in messages
    ]


def _form(
    root: str,
    action: str,
    csrf: tuple[str, str],
    fields: dict[str, str],
    label: str,
    cls: str = "",
) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{h(k)}" value="{h(v)}">'
        for k, v in {csrf[0]: csrf[1], **fields}.items()
    )
    return (
        f'<form method="post" action="{h(root)}{h(action)}" class="inline">{hidden}'
        f'<button type="submit" class="{h(cls)}">{h(label)}</button></form>'
    )


def _dead_actions(
    root: str,
    base: str,
    csrf: tuple[str, str] | None,
    fields: dict[str, str],
    suffix: str = "",
) -> str:
    """The requeue and purge buttons of some dead letters (none without a CSRF token:
    a read-only mount)."""
    if csrf is None:
        return ""
    return _form(root, base + "/requeue", csrf, fields, "Requeue" + suffix) + _form(
        root, base + "/purge", csrf, fields, "Purge" + suffix, "danger"
    )


def _flow(s: dict[str, Any]) -> str:
    """Priorities and flow limits (docs/flow-control.md), for a queue that uses them."""
    if not (s.get("limits") or s.get("prioritized") or s.get("parked")):
        return ""
    c = s["counters"]
    keys = ", ".join(_short(k) for k in s["parked_keys"])
    if s["parked_key_count"] > len(s["parked_keys"]):
        keys += f" (+{s['parked_key_count'] - len(s['parked_keys'])})"
    parts = [
        ("limits", s["limits"] or "none"),
        ("prioritized", s["prioritized"]),
        ("parked", s["parked"]),
        ("parked keys", keys or "-"),
        ("held by rate", c.get("held_rate", 0)),
        ("held by concurrency", c.get("held_concurrency", 0)),
    ]
    return (
        '<p class="counts flow">'
        + " · ".join(f"{label}: <b>{h(value)}</b>" for label, value in parts)
        + "</p>"
    )


def _short(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def queue_page(root: str, data: dict[str, Any], csrf: tuple[str, str] | None) -> str:
    s, name = data["stats"], data["name"]
    base = f"/queues/{quote(name)}"
    body = (
        '<p class="counts">'
        + " · ".join(
            f"{label}: <b>{h(s[f])}</b>"
            for f, label in (
                ("ready", "ready"),
                ("delayed", "delayed"),
                ("in_flight", "in flight"),
                ("dead", "dead"),
                ("consumers", "consumers"),
            )
        )
        + f" · oldest: <b>{_age(s['oldest_age'])}</b></p>"
    )
    body += _flow(s)
    body += f"<h2>Dead letters ({h(s['dead'])})</h2>"
    if csrf is not None and s["dead"]:
        body += (
            '<p class="actions">'
            + _dead_actions(root, base, csrf, {"scope": "all"}, " all")
            + "</p>"
        )
    if data["dead_groups"]:
        group_rows = [
            f"<tr><td><code>{h(g['error'])}</code></td><td class=num>{h(g['count'])}</td><td>"
            + _dead_actions(root, base, csrf, {"scope": "group", "error": g["error"]})
            + "</td></tr>"
            for g in data["dead_groups"]
        ]
        body += (
            f"<p class=meta>By error type, among the newest {h(data['dead_sampled'])}:</p>"
            + _table(["error", "count", ""], group_rows, "groups")
        )
    dead_rows = [
        f"<tr><td><code>{h(d['id'])}</code></td><td>{_when(d['dead_at'])}</td><td class=num>{h(d['attempt'])}</td>"
        f"<td><div class=reason>{h(d['reason'])}</div>"
        + (
            f"<details><summary>traceback</summary><pre>{h(d['traceback'])}</pre></details>"
            if d["traceback"]
            else ""
        )
        + f"<pre class=body>{h(d['body'])}</pre></td><td>"
        + _dead_actions(root, base, csrf, {"scope": "one", "id": d["id"]})
        + "</td></tr>"
        for d in data["dead"]
    ]
    if dead_rows:
        body += _table(
            ["id", "died", "attempt", "reason and body", ""], dead_rows, "dead"
        )
        off = data["dead_offset"]
        if len(data["dead"]) == 50:
            body += f'<p><a href="{h(root)}{h(base)}?dead_offset={off + 50}">older dead letters</a></p>'
    body += "<h2>Next ready</h2>" + (
        _table(["id", "enqueued", "due", "body"], _message_rows(data["ready"]))
        if data["ready"]
        else "<p class=empty>Nothing ready.</p>"
    )
    body += "<h2>Delayed</h2>" + (
        _table(["id", "enqueued", "due", "body"], _message_rows(data["delayed"]))
        if data["delayed"]
        else "<p class=empty>Nothing delayed.</p>"
    )
    lease_rows = [
        f"<tr><td><code>{h(c['id'])}</code></td><td>{h(c['host'])}</td><td class=num>{h(c['pid'])}</td>"
        f"<td class=num>{h(c['in_flight'])}</td><td>{_when(c['lease_until'])}</td></tr>"
        for c in data["leases"]
    ]
    body += "<h2>Leases</h2>" + (
        _table(["consumer", "host", "pid", "holds", "lease until"], lease_rows)
        if lease_rows
        else "<p class=empty>No consumer holds a lease.</p>"
    )
    return layout(root, f"Queue {name}", body)


def workers_page(root: str, workers: list[dict[str, Any]]) -> str:
    rows = [
        f"<tr><td>{h(w['host'])}</td><td class=num>{h(w['pid'])}</td><td>{h(', '.join(w['queues']))}</td>"
        f"<td class=num>{h(w['consumers'])}</td><td class=num>{h(w['concurrency'] or '-')}</td>"
        f"<td>{_when(w['started'])}</td><td>{_when(w['last_heartbeat'])}</td><td>{_when(w['heartbeat_until'])}</td>"
        f"<td class=num>{h(w['in_flight'])}</td></tr>"
        for w in workers
    ]
    body = (
        _table(
            [
                "host",
                "pid",
                "queues",
                "consumers",
                "concurrency",
                "started",
                "last heartbeat",
                "lease until",
                "in flight",
            ],
            rows,
        )
        if rows
        else "<p class=empty>No worker holds a live lease.</p>"
    )
    return layout(root, "Workers", body)


def message_page(root: str, msg_id: str, found: list[dict[str, Any]]) -> str:
    body = (
        f'<form method="get" action="{h(root)}/messages"><input name="id" value="{h(msg_id)}" '
        'placeholder="message id" size=40><button type="submit">Find</button></form>'
        "<p class=meta>Finds dead and delayed messages by id (O(1) per queue); ready and in-flight messages are not indexed by id.</p>"
    )
    for m in found:
        body += (
            f'<h2>{h(m["state"])} in <a href="{h(root)}/queues/{h(quote(m["queue"]))}">{h(m["queue"])}</a></h2>'
            f"<dl><dt>id</dt><dd><code>{h(m['id'])}</code></dd>"
            + (f"<dt>reason</dt><dd>{h(m['reason'])}</dd>" if "reason" in m else "")
            + (
                f"<dt>traceback</dt><dd><pre>{h(m['traceback'])}</pre></dd>"
                if m.get("traceback")
                else ""
            )
            + "".join(
                f"<dt>header {h(k)}</dt><dd>{h(v)}</dd>"
                for k, v in m.get("headers", {}).items()
            )
            + f"<dt>body</dt><dd><pre class=body>{h(m['body'])}</pre></dd></dl>"
        )
    if msg_id and not found:
        body += "<p class=empty>Not found among dead and delayed messages.</p>"
    return layout(root, "Message lookup", body)


def audit_page(root: str, entries: list[dict[str, Any]]) -> str:
    rows = [
        f"<tr><td>{_when(e['at'])}</td><td>{h(e.get('who'))}</td><td>{h(e.get('action'))}</td>"
        f"<td>{h(e.get('target'))}</td><td>{h(e.get('detail'))}</td></tr>"
        for e in entries
    ]
    body = (
        _table(["when", "who", "action", "target", "outcome"], rows)
        if rows
        else "<p class=empty>No operator action yet.</p>"
    )
    return layout(root, "Audit log", body)


def result_page(
    root: str, title: str, text: str, back: str, more: str | None = None
) -> str:
    body = f'<p class=result>{h(text)}</p>{more or ""}<p><a href="{h(root)}{h(back)}">back</a></p>'
    return layout(root, title, body)


def error_page(root: str, status: int, text: str) -> str:
    return layout(root, f"{status}", f"<p class=error>{h(text)}</p>")
