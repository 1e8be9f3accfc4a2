"""Framework integrations, each imported on its own so the core never needs a framework.

- :mod:`redrelay.contrib.sse`: server-sent events from channels, for any framework.
- :mod:`redrelay.contrib.flask`: the Flask extension (``pip install 'redrelay[flask]'``).
- :mod:`redrelay.contrib.django`: the Django app (``pip install 'redrelay[django]'``).
"""
