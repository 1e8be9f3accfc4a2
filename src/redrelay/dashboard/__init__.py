"""The redrelay dashboard: one framework-free core, mounted four ways.

- ``redrelay dashboard [--url URL] [--host 127.0.0.1] [--port 8765]`` (standalone),
- :func:`redrelay.dashboard.flask.blueprint` (Flask),
- ``redrelay.dashboard.django`` URLs (Django, staff only by default),
- :func:`redrelay.dashboard.asgi.app` (any ASGI server).

Layout: ``http`` (the request/response it speaks), ``core`` (routing, access, CSRF,
actions), ``data`` (what each page reads, O(1)/O(log n) per queue), ``pages`` (HTML,
everything escaped), ``live`` (the shared 2 s snapshot, SSE), ``audit`` (the capped
audit stream), ``wsgi`` (WSGI app and standalone server), and the framework mounts.
"""

from __future__ import annotations

from .core import Dashboard as Dashboard
from .http import Request as Request
from .http import Response as Response

__all__ = ["Dashboard", "Request", "Response"]
