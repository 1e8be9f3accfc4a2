"""A failure's traceback starts at the handler, not in redrelay's own calling frames.

A new user's one-line error was logged (and dead-lettered) with five frames of
``handlers.invoke``/``_within``/``_call`` above their code; every handler path now cuts
them: the fast path (no handler contexts), the contexts path (Flask's app context),
``async def`` handlers and ``relay.drain()``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import pytest

from redrelay import Message, Relay
from redrelay.worker.runner import Runner

from .helpers import wait_for


def first_frame(traceback_text: str) -> str:
    """The first ``File ...`` line of a formatted traceback."""
    return next(
        line for line in traceback_text.splitlines() if line.strip().startswith("File ")
    )


@pytest.mark.parametrize("path", ["fast", "contexts", "async"])
def test_the_traceback_starts_at_the_handler(
    make_relay: Callable[..., Relay],
    run: Callable[[Relay], Runner],
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    relay = make_relay(retries=1, backoff=0.01)
    if path == "contexts":
        relay.handler_contexts.append(lambda message: contextlib.nullcontext())

    def boom() -> None:
        raise ValueError("from the handler")

    if path == "async":

        @relay.consumer("tb")
        async def ahandler(message: Message) -> None:
            boom()

    else:

        @relay.consumer("tb")
        def handler(message: Message) -> None:
            boom()

    caplog.set_level(logging.INFO, "redrelay")
    relay.queue("tb").put({})
    run(relay)
    queue = relay.queue("tb")
    wait_for(lambda: queue.stats().dead == 1, what="the dead letter")
    [letter] = queue.dead_letters()
    assert (
        letter.traceback is not None
        and "ValueError: from the handler" in letter.traceback
    )
    top = first_frame(letter.traceback)
    assert __file__ in top and ("in handler" in top or "in ahandler" in top), top
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is not None]
    assert logged, [r.getMessage() for r in caplog.records]
    for record in logged:
        text = logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
        assert __file__ in first_frame(text), text


def test_a_topic_groups_traceback_starts_at_the_handler(
    make_relay: Callable[..., Relay], run: Callable[[Relay], Runner]
) -> None:
    relay = make_relay()

    @relay.subscriber("events", group="g", retries=0, start="beginning")
    def handler(message: Message) -> None:
        raise ValueError("from the handler")

    relay.topic("events").publish({})
    runner = run(relay)  # queues=None: its topic groups run too
    assert runner.topics is not None
    group = wait_for(
        lambda: next(
            (g for g in relay.topic("events").stats().groups if g.dead == 1), None
        ),
        what="the dead letter",
    )
    assert group.group == "g"
    [letter] = relay.topic("events").dead_letters("g")
    assert letter.traceback is not None
    top = first_frame(letter.traceback)
    assert __file__ in top and "in handler" in top, top


def test_drain_failures_start_at_the_handler(relay: Relay) -> None:
    @relay.consumer("tb", retries=0)
    def handler(message: Message) -> Any:
        raise ValueError("from the handler")

    relay.queue("tb").put({})
    [failure, *_] = relay.drain(raise_on_failure=False).failures
    top = first_frame(failure.traceback)
    assert __file__ in top and "in handler" in top, top


def test_an_error_of_redrelays_own_keeps_its_frames(relay: Relay) -> None:
    """A task call with a body that is not one: Reject, raised in redrelay's wrapper."""

    @relay.task(queue="calls")
    def add(a: int, b: int) -> int:
        return a + b

    relay.queue("calls").put({"not": "a call"})
    relay.drain(raise_on_failure=False)
    [letter] = relay.queue("calls").dead_letters()
    assert letter.traceback is not None and "redrelay" in first_frame(letter.traceback)
