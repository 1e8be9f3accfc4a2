"""An ASGI (Starlette) app that enqueues with ``await queue.aput(...)``, runs ``async def``
jobs in the worker and streams their progress over server-sent events.

See ``app.py`` and ``docs/asyncio.md``; run it with ``scripts/example-asgi``.
"""
