"""A recording of every channel message of a relay, for tests and ``relay.drain()``."""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING

from ..errors import DrainTimeout
from ..handlers import Subscriber
from ..message import Message
from ..protocol.envelope import new_id

if TYPE_CHECKING:
    from ..relay import Relay

__all__ = ["ChannelRecorder"]

#: The channel of :meth:`ChannelRecorder.sync`'s markers (never recorded).
_MARKER_CHANNEL = "redrelay-drain-sync"

#: How long the drain waits for its channel recorder's subscription to be confirmed.
_SUBSCRIBE_TIMEOUT = 5.0


class ChannelRecorder:
    """Records every message published on the relay's channels, from ``start()`` on.

    A real pattern subscription (``<namespace>:*``, the worker's own listener code), so
    it sees what any process publishes. Give it to ``relay.drain(channels=...)`` to run
    the channel subscribers on what it recorded, or read :meth:`messages`.

    Example::

        with ChannelRecorder(relay) as recorded:
            client.post("/orders/")
        relay.drain(channels=recorded)      # subscribers run on what was published
    """

    def __init__(self, relay: Relay) -> None:
        from ..listener import Listener

        self.relay = relay
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._taken = 0
        self._marker: str | None = None
        self._running = False
        #: Messages recorded elsewhere, handed to the next ``take()`` first.
        self.pending: list[Message] = []
        self._marker_key = relay.channel(_MARKER_CHANNEL).key
        recorder = Subscriber(channel="*", pattern=True, handler=self._record)
        self._listener = Listener(relay, [recorder], contexts=[], queue_size=100_000)

    def _record(self, message: Message) -> None:
        with self._lock:
            if message.channel == _MARKER_CHANNEL:
                if message.body == self._marker:
                    self._marker = None
                return
            self._messages.append(message)

    @property
    def running(self) -> bool:
        """Started and not stopped: still recording."""
        return self._running

    def start(self) -> ChannelRecorder:
        """Subscribe; return once Redis confirmed it (so no later publish is missed)."""
        self._running = True
        self._listener.start()
        if not self._listener.connected.wait(_SUBSCRIBE_TIMEOUT):
            self._listener.stop()
            raise DrainTimeout(
                f"the channel recorder was not subscribed after {_SUBSCRIBE_TIMEOUT}s"
            )
        return self

    def stop(self) -> None:
        """Unsubscribe; what was recorded stays readable."""
        self._running = False
        self._listener.stop()

    def __enter__(self) -> ChannelRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.sync()
        self.stop()

    def sync(self, timeout: float = _SUBSCRIBE_TIMEOUT) -> None:
        """Return once everything published before this call was recorded.

        Publishes a marker on a channel of its own: Redis sends a subscription its
        messages in the order it ran the ``PUBLISH`` commands, so once the marker is
        here, so is every message published before it.
        """
        token = secrets.token_hex(8)
        with self._lock:
            self._marker = token
        # Encoded (and signed) without the envelope hooks: the marker is the drain's
        # own traffic, not the app's, so tracing must not see a publish here.
        entry = self.relay.encode_envelope({"i": new_id(), "b": token, "t": 0})
        self.relay.connection.call("PUBLISH", self._marker_key, entry)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._marker is None:
                    return
            time.sleep(0.002)
        raise DrainTimeout(f"channel messages did not arrive within {timeout}s")

    def messages(self, channel: str | None = None) -> list[Message]:
        """What was recorded (on ``channel`` only, if given), oldest first."""
        with self._lock:
            found = list(self._messages)
        return [m for m in found if channel is None or m.channel == channel]

    def take(self) -> list[Message]:
        """The messages recorded since the last ``take()`` (and any handed back)."""
        with self._lock:
            new = self.pending + self._messages[self._taken :]
            self.pending = []
            self._taken = len(self._messages)
        return new
