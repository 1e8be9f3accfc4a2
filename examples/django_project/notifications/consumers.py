"""Background handlers, found by redrelay at startup and run by `manage.py relay_worker`.

This is the seed tutorial's listener thread, done right: no `pubsub.listen()` loop to
write, start and keep alive. The worker's one listener thread reconnects and
resubscribes after a Redis restart, reports lost messages instead of hiding them, and
runs this function on a thread of its own, with Django's database connections cleaned
up around each call.
"""

import logging

from redrelay import Message
from redrelay.contrib.django import subscriber

log = logging.getLogger("notifications")


@subscriber("notifications")
def on_notification(message: Message) -> None:
    log.info("Received: %s", message.body["text"])
