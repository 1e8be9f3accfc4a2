"""``relay.drain()``: run everything in this process until nothing is left, for tests.

Three things make it a test tool rather than a worker that stops (issue 16):

- **Failures raise.** Every exception a handler raised (other than the flow-control
  :class:`~redrelay.Retry`), every failure a handler recorded without raising (a
  ``django.tasks`` task that ends ``FAILED``: ``failures.report_handled``) and every
  message dead-lettered during the drain is collected; at the end :class:`~redrelay.DrainFailed` lists them with the traceback,
  unless ``raise_on_failure=False``.
- **A virtual clock.** When the only work left is waiting (a retry's backoff, a
  ``delay=``/``eta=``, ``Retry(delay=)``), the waiting set's due times are moved back
  (``advance.lua``) so the earliest is due now, the others keep their order and
  distance. Nothing waits on the wall clock; turn it off with ``virtual_clock=False``.
- **Subscribers.** Channel messages published during the drain (and those recorded by
  a :class:`ChannelRecorder` passed as ``channels=``) are given to the relay's channel
  subscribers in the drain's thread (``subscribers="run"``; patterns matched with
  :mod:`fnmatch`) or only collected in the report (``"capture"``). Topic subscribers
  run through the worker's code; a group that does not exist yet reads the stream from
  its start (a test namespace holds only the test's entries; ``replay_topics=False``
  keeps the declared ``start=``). With ``"capture"`` they do not run and the report
  lists the topics' entries instead. With ``queues=``, as with ``redrelay worker -q``,
  only those queues run, and channel messages are only captured.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import functools
import inspect
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..errors import DrainFailed, DrainTimeout, Retry
from ..failures import drain_sinks
from ..handlers import Consumer, handler_traceback, invoke
from ..message import Message
from ..protocol.envelope import decode_entry
from ..topic import pairs, text
from .recorder import ChannelRecorder
from .runner import Runner

if TYPE_CHECKING:
    from ..relay import Relay
    from ..topic import TopicSubscription

__all__ = ["ChannelRecorder", "DrainReport", "Failure", "drain"]

SubscriberMode = Literal["run", "capture", "off"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """One handler failure seen by a drain."""

    #: ``"queue emails"``, ``"topic orders/audit"``, ``"channel news"`` or, for a
    #: message dead-lettered without its handler failing here, ``"dead queue emails"``.
    where: str
    message: Message | None
    error: str
    traceback: str


@dataclasses.dataclass(slots=True)
class DrainReport:
    """What a drain did: its failures, and what was published on channels and topics."""

    failures: list[Failure] = dataclasses.field(default_factory=list)
    #: Channel name -> messages published on it during the drain (and recorded before).
    channels: dict[str, list[Message]] = dataclasses.field(default_factory=dict)
    #: Topic name -> its entries (``subscribers="capture"`` only).
    topics: dict[str, list[Message]] = dataclasses.field(default_factory=dict)
    #: Times the virtual clock moved, and by how many seconds in all.
    advanced: float = 0.0


def _failure(where: str, message: Message, exc: BaseException) -> Failure:
    return Failure(
        where=where,
        message=message,
        error=f"{type(exc).__name__}: {exc}",
        traceback="".join(
            traceback.format_exception(type(exc), exc, handler_traceback(exc))
        ),
    )


def _recording(
    handler: Callable[..., Any], where: str, failures: list[Failure]
) -> Callable[..., Any]:
    """``handler``, noting each exception it raises (then re-raising it)."""

    def note(message: Message, exc: BaseException) -> None:
        if not isinstance(exc, Retry):
            failures.append(_failure(where, message, exc))

    # BaseException, as the worker: a handler's sys.exit() is its failure (issue 18).
    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def arecorded(message: Message) -> Any:
            try:
                return await handler(message)
            except asyncio.CancelledError:
                raise  # the drain's own stop, or the handler's: the worker decides
            except BaseException as exc:  # noqa: B036 - noted, then re-raised
                note(message, exc)
                raise

        return arecorded

    @functools.wraps(handler)
    def recorded(message: Message) -> Any:
        try:
            return handler(message)
        except BaseException as exc:  # noqa: B036 - noted, then re-raised
            note(message, exc)
            raise

    return recorded


def drain(
    relay: Relay,
    *,
    queues: Iterable[str] | None = None,
    timeout: float = 10.0,
    raise_on_failure: bool = True,
    virtual_clock: bool = True,
    subscribers: SubscriberMode = "run",
    channels: ChannelRecorder | None = None,
    replay_topics: bool = True,
) -> DrainReport:
    """Run consumers (and subscribers) until nothing is ready, waiting or in flight.

    See the module docstring. Returns a :class:`DrainReport`.

    :raises DrainFailed: a handler failed or a message was dead-lettered (and
        ``raise_on_failure``); everything else was still drained.
    :raises DrainTimeout: work was left after ``timeout`` seconds.
    """
    if subscribers not in ("run", "capture", "off"):
        raise ValueError(
            f"subscribers= must be 'run', 'capture' or 'off', got {subscribers!r}"
        )
    report = DrainReport()
    queue_list = list(queues) if queues is not None else None
    runner = Runner(
        relay,
        queues=queue_list,
        subscribers=False,
        poll=0.01,
        topics=subscribers == "run" and queue_list is None,
    )
    runner.consumers = [_wrap_consumer(c, report.failures) for c in runner.consumers]
    if runner.topics is not None:
        runner.topics.subs = [
            _wrap_topic(s, report.failures, replay_topics) for s in runner.topics.subs
        ]
    if queue_list is not None and subscribers == "run":
        subscribers = "capture"  # queues= runs those queues only, as in a worker's -q
    with contextlib.ExitStack() as stack:
        for context in relay.drain_contexts:
            stack.enter_context(context())
        stack.enter_context(_handled_failures(relay, report.failures))
        return _drain(
            relay, runner, report, timeout, raise_on_failure, virtual_clock,
            subscribers, channels, capture_topics=queue_list is None,
        )  # fmt: skip


@contextlib.contextmanager
def _handled_failures(relay: Relay, failures: list[Failure]) -> Iterator[None]:
    """Collect the failures handlers record without raising (``report_handled``)."""

    def note(where: str, message: Message, exc: BaseException) -> None:
        failures.append(_failure(where, message, exc))

    drain_sinks[id(relay)] = note
    try:
        yield
    finally:
        drain_sinks.pop(id(relay), None)


def _drain(
    relay: Relay,
    runner: Runner,
    report: DrainReport,
    timeout: float,
    raise_on_failure: bool,
    virtual_clock: bool,
    subscribers: SubscriberMode,
    channels: ChannelRecorder | None,
    *,
    capture_topics: bool,
) -> DrainReport:
    dead_before = _dead_counts(runner)
    own = None
    earlier: list[Message] = []
    if subscribers != "off":
        if channels is not None and not channels.running:
            earlier = channels.take()  # recorded before; the drain records the rest
            channels = None
        if channels is None:
            own = channels = ChannelRecorder(relay).start()
        channels.pending[:0] = earlier
    try:
        if runner.consumers or runner.topics is not None:
            runner.start()
        try:
            _loop(relay, runner, report, channels, subscribers, timeout, virtual_clock)
        finally:
            if runner.consumers or runner.topics is not None:
                runner.stop(grace=timeout)
    finally:
        if own is not None:
            own.stop()
    if subscribers == "capture" and capture_topics:
        report.topics = _topic_entries(relay)
    report.failures.extend(_new_dead(runner, dead_before, report.failures))
    if report.failures and raise_on_failure:
        raise DrainFailed(report)
    return report


def _loop(
    relay: Relay,
    runner: Runner,
    report: DrainReport,
    channels: ChannelRecorder | None,
    mode: SubscriberMode,
    timeout: float,
    virtual_clock: bool,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        delivered = _deliver(relay, channels, report, mode)
        busy, waiting = _snapshot(relay, runner)
        if not delivered and not busy:
            if not waiting:
                # Idle: one last look for what handlers published just now.
                if channels is not None:
                    channels.sync()
                if not _deliver(relay, channels, report, mode):
                    return
                continue
            if virtual_clock:
                _advance(relay, runner, report)
        if time.monotonic() > deadline:
            raise DrainTimeout(
                f"not empty after {timeout}s: {_left(runner)}{_rate_hint(runner)}"
            )
        time.sleep(0.005)


def _deliver(
    relay: Relay,
    channels: ChannelRecorder | None,
    report: DrainReport,
    mode: SubscriberMode,
) -> int:
    """Hand newly recorded channel messages to the matching subscribers (in order)."""
    if channels is None:
        return 0
    new = channels.take()
    for message in new:
        report.channels.setdefault(message.channel or "", []).append(message)
        if mode != "run":
            continue
        for sub in relay.subscribers:
            name = message.channel or ""
            if sub.channel == name or (
                sub.pattern and fnmatch.fnmatchcase(name, sub.channel)
            ):
                try:
                    invoke(sub.handler, message, relay.handler_contexts, None)
                except KeyboardInterrupt:
                    raise  # this is the test's own thread: Ctrl-C must stop it
                except BaseException as exc:  # noqa: B036 - sys.exit() too, as a worker
                    # not retried, as in a worker: reported
                    report.failures.append(_failure(f"channel {name}", message, exc))
    return len(new)


def _wrap_consumer(consumer: Consumer, failures: list[Failure]) -> Consumer:
    handler = _recording(consumer.handler, f"queue {consumer.name}", failures)
    return dataclasses.replace(consumer, handler=handler)


def _wrap_topic(
    sub: TopicSubscription, failures: list[Failure], replay: bool
) -> TopicSubscription:
    handler = _recording(sub.handler, f"topic {sub.name}", failures)
    if not replay:
        return dataclasses.replace(sub, handler=handler)
    # A group the drain creates reads the stream from its start: in a test, whatever
    # was published before the drain is what the test wants handled.
    return dataclasses.replace(sub, handler=handler, start="0")


def _snapshot(relay: Relay, runner: Runner) -> tuple[bool, bool]:
    """(busy, waiting): work ready or running; work waiting for a due time.

    Each queue's numbers come from one stats script and each group's from one MULTI,
    so a message moving between places is never missed in between (a retry taken from
    the waiting set just after it was counted as not waiting).
    """
    busy = runner.pending() > 0
    waiting = False
    for consumer in runner.consumers:
        stats = consumer.queue.stats()
        busy = busy or bool(stats.ready or stats.in_flight)
        waiting = waiting or bool(stats.delayed)
    if runner.topics is not None:
        for sub in runner.topics.subs:
            caught_up, pending, retrying = _group_state(relay, sub)
            # Entries waiting for a retry stay pending, parked: they wait, not run.
            busy = busy or not caught_up or pending > retrying
            waiting = waiting or retrying > 0
    return busy, waiting


def _group_state(relay: Relay, sub: TopicSubscription) -> tuple[bool, int, int]:
    """(read to the end, pending entries, entries waiting to be retried), atomically."""
    stream = sub.topic.keys.stream
    groups, last, retrying = relay.connection.pipeline(
        [
            ("XINFO", "GROUPS", stream),
            ("XREVRANGE", stream, "+", "-", "COUNT", 1),
            ("ZCARD", sub.keys.retry),
        ],
        transaction=True,
    )
    for info in map(pairs, groups):
        if text(info["name"]) == sub.group:
            delivered = _stream_id(text(info["last-delivered-id"]))
            caught_up = not last or delivered >= _stream_id(last[0][0].decode())
            return caught_up, int(info["pending"]), int(retrying)
    return False, 0, int(retrying)


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def _advance(relay: Relay, runner: Runner, report: DrainReport) -> bool:
    """Move the virtual clock to the next due time; True if anything became due."""
    keys: list[str] = [
        k.delayed for c in runner.consumers for k in c.queue.shard_keys()
    ]
    if runner.topics is not None:
        keys += [s.keys.retry for s in runner.topics.subs]
    shifts = [int(relay.connection.run("advance", [key], [])) for key in keys]
    moved = max(shifts, default=0)
    report.advanced += moved / 1000
    return moved > 0


def _left(runner: Runner) -> dict[str, Any]:
    left: dict[str, Any] = {
        c.name: dataclasses.asdict(c.queue.stats()) for c in runner.consumers
    }
    if runner.topics is not None:
        left.update(runner.topics.backlog())
    return left


def _rate_hint(runner: Runner) -> str:
    """Why a rate-limited queue is not drained yet: the virtual clock skips waiting
    sets (backoff, delays), not rate limits, which hold in real time."""
    limited = [
        f"{c.name} ({c.options.limits.spec()})"
        for c in runner.consumers
        if c.options.limits.rate or c.options.limits.key_rate
    ]
    if not limited:
        return ""
    return (
        f"; rate-limited: {', '.join(limited)}: drain() hands out messages at that "
        "rate in real time (the virtual clock skips backoff and delays only): raise "
        "timeout=, put fewer messages, or declare the consumer without the limit in "
        "the test"
    )


def _dead_counts(runner: Runner) -> dict[str, int]:
    counts = {f"queue {c.name}": c.queue.stats().dead for c in runner.consumers}
    if runner.topics is not None:
        for sub in runner.topics.subs:
            counts[f"topic {sub.name}"] = _group_dead(sub)
    return counts


def _group_dead(sub: TopicSubscription) -> int:
    for g in sub.topic.stats().groups:
        if g.group == sub.group:
            return g.dead
    return 0


def _new_dead(
    runner: Runner, before: dict[str, int], seen: Sequence[Failure]
) -> list[Failure]:
    """Dead letters added during the drain whose handler did not fail here (malformed
    entries, ``max_deliveries``, bad signatures): failures too."""
    found: list[Failure] = []
    for consumer in runner.consumers:
        where = f"queue {consumer.name}"
        added = consumer.queue.stats().dead - before.get(where, 0)
        if added <= 0:
            continue
        failed_ids = {f.message.id for f in seen if f.message and f.where == where}
        for letter in consumer.queue.dead_letters(limit=added):
            if letter.id not in failed_ids:
                found.append(
                    Failure(
                        where=f"dead {where}",
                        message=None,
                        error=f"message {letter.id} dead-lettered: {letter.reason}",
                        traceback=letter.traceback or "",
                    )
                )
    return found


def _topic_entries(relay: Relay) -> dict[str, list[Message]]:
    """Every entry of the topics the relay subscribes to (capture mode)."""
    out: dict[str, list[Message]] = {}
    for topic in {s.topic.name: s.topic for s in relay.topic_subscribers}.values():
        entries = relay.connection.call("XRANGE", topic.keys.stream, "-", "+")
        messages = out.setdefault(topic.name, [])
        for stream_id, fields in entries:
            env = decode_entry(fields[b"e"]).envelope or {}
            messages.append(
                Message(
                    id=str(env.get("i", stream_id)),
                    body=env.get("b"),
                    headers=env.get("h") or {},
                    topic=topic.name,
                    stream_id=stream_id.decode(),
                )
            )
    return out
