"""``redrelay demo``: a self-checking tour of what redrelay promises.

On the embedded server (or ``--url``) the demo starts two real worker processes
(``python -m redrelay worker redrelay.demo:create_relay``), produces a few thousand jobs
(about 5 % fail once, 1 % always fail, 8 % are delayed by 1-3 s), publishes its progress
on the channel ``demo-progress`` and prints it from a subscriber, SIGKILLs one worker
mid-run and starts a replacement, then checks that every job was either processed or
dead-lettered. Each handler records the id it processed in a Redis set, so the check
works across processes; one processed twice (at-least-once, after the kill) is counted
as a duplicate, not an error. Exit status 0 means nothing was lost.

Everything lives in the namespace ``redrelay-demo``, which the demo clears when it
starts (so it can run again) and leaves behind when it ends (so ``redrelay --namespace
redrelay-demo dead list jobs`` shows the dead letters).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from ..message import Message
from ..protocol.transitions import Backoff
from ..relay import Relay

__all__ = ["NAMESPACE", "QUEUE", "DemoFailure", "create_relay", "run"]

#: The demo's namespace; cleared at the start of every run.
NAMESPACE = "redrelay-demo"
#: The demo's work queue.
QUEUE = "jobs"
#: The channel on which the demo publishes its progress.
PROGRESS_CHANNEL = "demo-progress"
#: Lease of the demo's consumers: short, so the recovery after the kill shows in seconds.
LEASE = 2.0
#: Worker processes running at any time.
WORKERS = 2
#: Longest wait for the queue to empty once everything is produced.
DRAIN_TIMEOUT = 45.0
#: Seconds over which the jobs are produced.
PRODUCE_SECONDS = 4.0
#: Seconds between progress notifications.
PROGRESS_INTERVAL = 0.5
#: Set of the ids the handlers processed; counter of ids processed again.
PROCESSED_KEY = f"{NAMESPACE}:demo:processed"
DUPLICATES_KEY = f"{NAMESPACE}:demo:duplicates"


class DemoFailure(Exception):
    """The failure a demo job raises on purpose."""


def create_relay(url: str | None = None) -> Relay:
    """The demo's relay and its consumer; ``redrelay worker redrelay.demo:create_relay``.

    Building it does no I/O. The handler sleeps a few milliseconds (so a kill lands
    mid-run), fails as its job's ``kind`` says, and records the id it processed.

    :param url: Redis URL; default ``$REDRELAY_URL``, else the embedded server.
    """
    relay = Relay(
        url,
        namespace=NAMESPACE,
        lease=LEASE,
        heartbeat=LEASE / 5,
        retries=2,
        backoff=Backoff(base=0.2, max=1.0),
        prefetch=20,
        concurrency=4,
    )

    @relay.consumer(QUEUE)
    def job(message: Message) -> None:
        body = message.body
        time.sleep(body["ms"] / 1000)
        if body["kind"] == "poison":
            raise DemoFailure(f"job {body['n']} always fails")
        if body["kind"] == "flaky" and message.failures == 0:
            raise DemoFailure(f"job {body['n']} fails on its first try")
        if not relay.connection.call("SADD", PROCESSED_KEY, message.id):
            relay.connection.call("INCR", DUPLICATES_KEY)

    return relay


def run(
    url: str | None = None,
    *,
    messages: int = 3000,
    echo: Callable[[str], None] = print,
) -> int:
    """Run the demo and print as it goes; returns the exit status (0: nothing lost).

    :param url: Redis URL; default ``$REDRELAY_URL``, else the embedded server.
    :param messages: how many jobs to produce.
    :param echo: where lines go (called from two threads, one whole line at a time).
    :raises BrokerUnavailable: Redis cannot be reached.
    :raises KeyboardInterrupt: on Ctrl-C or SIGTERM, after stopping the workers.
    """
    relay = create_relay(url)
    # SIGTERM unwinds like Ctrl-C, so the workers (in sessions of their own, out of
    # reach of the terminal's signals) are stopped instead of left running.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        from .tour import Tour

        return Tour(relay, messages, echo, shown_url=url).run()
    finally:
        relay.close()
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
