"""A Flask app whose background jobs run on redrelay, with live progress over SSE.

See ``app.py`` and ``docs/flask.md``; run it with ``scripts/example-flask``.
"""
