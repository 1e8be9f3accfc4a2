"""redrelay as a Redis ACL user limited to its namespace (docs/security.md, "ACL").

The user may touch only ``~<ns>:*`` keys and ``&<ns>:*`` channels, with only the
commands in :data:`helpers.REDRELAY_COMMANDS`; the server's ``default`` user is off.
The queue behaviour tests of ``tests/test_queue.py`` run again here as that user (the
``relay`` and ``make_relay`` fixtures are overridden below), then the worker, channels,
the epoch check, and what must be refused.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.exceptions as rex

from redrelay import (
    BrokerError,
    BrokerUnavailable,
    Message,
    Relay,
)
from redrelay.handlers import Subscriber
from redrelay.listener import Listener
from redrelay.worker.epoch import EpochWatch
from redrelay.worker.supervisor import server_warnings

from ..channel_helpers import Collector, wait_for

# The queue behaviours, collected again in this module: here they run as the limited user
# (priorities and flow limits too: their scripts use only the listed commands).
from ..test_queue import (  # noqa: F401
    test_bad_input_is_refused_and_nothing_written,
    test_dead_letters_requeue_and_purge,
    test_dedup_key,
    test_delayed_messages_wait_then_run,
    test_failures_retry_with_backoff_then_dead_letter_with_traceback,
    test_fifo_for_first_deliveries,
    test_handler_contexts_wrap_consumers_and_async_handlers_run,
    test_malformed_entries_are_dead_lettered_not_fatal,
    test_put_many_is_all_or_nothing,
    test_put_returns_id_and_message_carries_everything,
    test_raw_entry_that_fails_is_retried_and_dead_lettered_with_its_bytes,
    test_retried_message_goes_to_the_back,
    test_retry_and_reject_exceptions,
    test_signature_survives_retries,
    test_signed_relay_runs_only_signed_envelopes,
    test_stats_oldest_age_and_consumers,
)
from ..worker.test_limits import (  # noqa: F401
    test_concurrency_cap_in_one_process,
    test_hot_key_does_not_hold_back_cold_keys,
    test_tight_rate_never_uses_up_retries,
)
from ..worker.test_priority import (  # noqa: F401
    test_dead_letter_requeued_at_its_priority,
    test_peek_shows_the_run_order,
    test_put_many_with_priority_and_the_zero_fast_path,
    test_retried_released_and_recovered_keep_their_priority,
)
from .conftest import AclServer, NamespaceUser
from .helpers import REDRELAY_COMMANDS, ROOT, Worker, acl_setuser, user_url

DOCS = ROOT / "docs" / "security.md"

FAST_LISTENER: dict[str, Any] = {
    "ping_interval": 0.2,
    "ping_timeout": 0.5,
    "backoff_base": 0.02,
    "backoff_cap": 0.2,
    "poll_interval": 0.02,
}


@pytest.fixture
def make_relay(ns_user: NamespaceUser) -> Iterator[Callable[..., Relay]]:
    """Relays that log in as the namespace's user (overrides the plugin's fixture)."""
    made: list[Relay] = []

    def make(**kwargs: Any) -> Relay:
        kwargs.setdefault("namespace", ns_user.namespace)
        relay = Relay(ns_user.url, **kwargs)
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.close()
    # A refused command can hide behind a retry or a warning: the server's log cannot.
    assert ns_user.denials() == []


@pytest.fixture
def relay(make_relay: Callable[..., Relay]) -> Relay:
    """A relay as the namespace's user (overrides the plugin's fixture)."""
    return make_relay()


def _stranger(ns_user: NamespaceUser, namespace: str = "other") -> Relay:
    return Relay(ns_user.url, namespace=namespace, connect_retries=0)


# -- what the user may do ----------------------------------------------------------------


def test_the_documented_acl_rules_are_the_tested_ones() -> None:
    lines = [
        line
        for line in DOCS.read_text(encoding="utf-8").splitlines()
        if line.startswith(("ACL SETUSER myapp ", "user myapp "))
    ]
    assert len(lines) == 2, (
        "docs/security.md: the ACL SETUSER line and the aclfile line"
    )
    for line in lines:
        words = line.split()
        assert {"on", "~myapp:*", "&myapp:*", "-@all"} <= set(words)
        assert [w[1:] for w in words if w.startswith("+")] == list(REDRELAY_COMMANDS)


def test_the_user_is_really_limited(relay: Relay, ns_user: NamespaceUser) -> None:
    """The fixture's user is what the docs describe: no admin commands, no other keys."""
    conn = relay.connection
    for command in (
        ("FLUSHALL",),
        ("KEYS", "*"),
        ("CONFIG", "GET", "requirepass"),
        ("SET", "elsewhere", "1"),
        ("PUBLISH", "elsewhere", "1"),
    ):
        with pytest.raises(BrokerError, match="no permissions"):
            conn.call(*command)
    assert sorted(ns_user.denials(reset=True)) == [
        "channel elsewhere",
        "command config|get",
        "command flushall",
        "command keys",
        "key elsewhere",
    ]


def test_channels_with_a_listener(relay: Relay) -> None:
    exact, matched = Collector(), Collector()
    listener = Listener(
        relay,
        [
            Subscriber(channel="news", pattern=False, handler=exact),
            Subscriber(channel="orders.*", pattern=True, handler=matched),
        ],
        **FAST_LISTENER,
    )
    with listener:
        assert listener.connected.wait(10), "the listener did not subscribe"
        assert relay.publish("news", {"n": 1}) == 1
        assert relay.publish("orders.created", "o-1") == 1
        assert [m.body for m in exact.wait(1)] == [{"n": 1}]
        (m,) = matched.wait(1)
        assert (m.channel, m.body) == ("orders.created", "o-1")
        time.sleep(3 * FAST_LISTENER["ping_interval"])  # idle: the listener PINGs
    assert listener.stop()
    assert (listener.gaps, listener.reconnects, listener.decode_errors) == (0, 0, 0)


def test_a_pattern_not_granted_literally_is_refused(
    relay: Relay, ns_user: NamespaceUser, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis checks PSUBSCRIBE patterns literally: ``&<ns>:*`` does not cover ``<ns>:x.*``."""
    caplog.set_level(logging.WARNING, logger="redrelay.channel")
    listener = Listener(
        relay,
        [Subscriber(channel="audit.*", pattern=True, handler=print)],
        **FAST_LISTENER,
    )
    with listener:
        assert not listener.connected.wait(0.5)
    assert any("no permissions" in r.getMessage() for r in caplog.records)
    assert ns_user.denials(reset=True)[0] == f"channel {relay.namespace}:audit.*"


def test_graceful_stop_gives_back_unstarted_deliveries(relay: Relay) -> None:
    started = threading.Event()

    @relay.consumer("q", prefetch=10, concurrency=1)
    def slow(message: Message) -> None:
        started.set()
        time.sleep(0.2)

    queue = relay.queue("q")
    queue.put_many(range(10))
    relay.start()
    assert started.wait(10)
    relay.stop(grace=5)  # release.lua gives back the 9 unstarted, leave.lua the lease
    stats = queue.stats()
    assert (stats.ready, stats.in_flight, stats.consumers) == (9, 0, 0)


def test_stats_of_every_queue_and_peek(relay: Relay) -> None:
    relay.queue("a").put(1)
    relay.queue("b").put_many([2, 3])
    assert [(s.name, s.ready) for s in relay.stats()] == [("a", 1), ("b", 2)]
    assert [m.body for m in relay.queue("b").peek()] == [2, 3]


def test_epoch_check(relay: Relay, ns_user: NamespaceUser) -> None:
    watch = EpochWatch(relay.connection, relay.namespace)
    assert watch.check() and watch.check()
    ns_user.admin("DEL", f"{relay.namespace}:epoch")  # as if Redis lost its data
    assert not watch.check()
    assert watch.wipes == 1


def test_server_warnings_say_they_could_not_check(
    relay: Relay, ns_user: NamespaceUser
) -> None:
    """CONFIG GET is not granted: the worker says it could not check, and runs on."""
    (line,) = server_warnings(relay.connection)
    assert "cannot read the server's configuration" in line
    assert ns_user.denials(reset=True) == ["command config|get"]


def test_worker_process_recovers_a_sigkilled_worker(ns_user: NamespaceUser) -> None:
    ns = ns_user.namespace
    record_url = ns_user.admin.url
    env = {"TEST_NAMESPACE": ns, "TEST_RECORD_URL": record_url}
    with Relay(ns_user.url, namespace=ns) as producer:
        queue = producer.queue("work")
        ids = queue.put_many([{"op": "sleep", "s": 0.05} for _ in range(40)])
        first = Worker("tests.security.acl_app:relay", ns_user.url, **env)
        second: Worker | None = None
        try:
            wait_for(lambda: len(_runs(record_url, ns)) >= 6, timeout=20)
            first.kill()
            held = queue.stats().in_flight
            assert held > 0, "the killed worker held nothing"
            second = Worker("tests.security.acl_app:relay", ns_user.url, **env)
            wait_for(lambda: _done(record_url, ns) >= set(ids), timeout=30)
            wait_for(lambda: queue.stats().counters.get("acked") == len(ids))
            stats = queue.stats()
            assert (stats.ready, stats.in_flight, stats.dead) == (0, 0, 0)
            assert stats.counters["recovered"] == held
            # its subscriber runs under the same user
            wait_for(lambda: producer.publish("events.deploy", "v2") == 1, timeout=10)
            wait_for(
                lambda: _lrange(record_url, f"{ns}:test:events") == ["events.deploy v2"]
            )
            assert second.stop() == 0
            output = second.output()
            assert "cannot read the server's configuration" in output
            assert "no permissions" not in output and "Traceback" not in output
            # the CONFIG GET of the server check is the only thing refused
            assert set(ns_user.denials()) == {"command config|get"}
        finally:
            first.close()
            if second is not None:
                second.close()


def test_tighter_key_rules_are_enough(
    acl_server: AclServer,
) -> None:
    """``~<ns>:{* ~<ns>:queues ~<ns>:epoch`` is all redrelay touches (docs/security.md)."""
    token = secrets.token_hex(6)
    ns, user, password = f"sec-{token}", f"app-{token}", secrets.token_hex(16)
    rules = (f"{ns}:{{*", f"{ns}:queues", f"{ns}:epoch")
    acl_server.admin(*acl_setuser(user, password, ns, keys=rules))
    url = user_url(acl_server.server, user, password)
    with Relay(url, namespace=ns) as relay:
        seen: list[Any] = []
        relay.consumer("q", retries=0)(lambda m: seen.append(m.body))
        relay.queue("q").put(1)
        relay.queue("q").put(2, delay=0.05)
        relay.drain()
        assert seen == [1, 2] and [s.name for s in relay.stats()] == ["q"]
        assert EpochWatch(relay.connection, ns).check()
    # A nested namespace ("<ns>:nested") that ~<ns>:* would cover cannot be made:
    # namespace names may not contain ':' (tests/security/test_names.py).


# -- what the user may not do ------------------------------------------------------------


def test_another_namespace_is_refused_with_a_redrelay_error(
    ns_user: NamespaceUser, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = _stranger(ns_user)
    calls: list[Callable[[], object]] = [
        lambda: stranger.queue("q").put(1),  # LPUSH
        lambda: stranger.queue("q").put(1, delay=5),  # a script
        lambda: stranger.queue("q").put_many([1, 2]),  # MULTI
        lambda: stranger.queue("q").stats(),
        lambda: stranger.stats(),
        lambda: stranger.publish("news", 1),
    ]
    for call in calls:
        with pytest.raises(BrokerError, match="no permissions") as refused:
            call()
        assert not isinstance(refused.value, redis.RedisError)
        assert isinstance(refused.value.__cause__, rex.NoPermissionError)
    assert ns_user.admin("KEYS", "other:*") == []
    # operators see it in ACL LOG (the first key a put touches registers the queue)
    assert "key other:{q}:shards" in ns_user.denials()

    caplog.set_level(logging.WARNING, logger="redrelay.channel")
    listener = Listener(
        stranger,
        [Subscriber(channel="news", pattern=False, handler=print)],
        **FAST_LISTENER,
    )
    with listener:
        assert not listener.connected.wait(0.5)
    assert any("no permissions" in r.getMessage() for r in caplog.records)
    stranger.close()


def test_a_worker_in_another_namespace_exits_with_one_line(
    ns_user: NamespaceUser,
) -> None:
    env = {"TEST_NAMESPACE": "other", "TEST_RECORD_URL": ns_user.admin.url}
    worker = Worker("tests.security.acl_app:relay", ns_user.url, **env)
    try:
        assert worker.proc.wait(20) == 2
        output = worker.output()
        assert "Error: " in output and "no permissions" in output
        assert "Traceback" not in output
    finally:
        worker.close()


def test_nopermission_error_says_how_to_fix(ns_user: NamespaceUser) -> None:
    with _stranger(ns_user) as stranger, pytest.raises(BrokerError) as refused:
        stranger.queue("q").put(1)
    message = str(refused.value)
    assert "~other:*" in message and "&other:*" in message


@pytest.mark.parametrize("case", ["wrong password", "unknown user", "disabled user"])
def test_wrong_credentials_are_refused_clearly(
    ns_user: NamespaceUser, case: str
) -> None:
    user, password = ns_user.user, ns_user.password
    if case == "wrong password":
        password = "not-the-password"
    elif case == "unknown user":
        user = "nobody"
    else:
        ns_user.admin("ACL", "SETUSER", user, "off")
    url = ns_user.url.replace(
        f"{ns_user.user}:{ns_user.password}", f"{user}:{password}"
    )
    start = time.monotonic()
    with (
        Relay(url, namespace=ns_user.namespace, connect_retries=1) as stranger,
        pytest.raises(BrokerUnavailable, match="refused the credentials") as refused,
    ):
        stranger.queue("q").put(1)
    assert time.monotonic() - start < 20
    assert password not in str(refused.value)  # the URL is redacted
    assert "check the user and password in the URL" in str(refused.value)
    assert isinstance(refused.value.__cause__, rex.AuthenticationError)


def test_no_credentials_are_refused_clearly(ns_user: NamespaceUser) -> None:
    url = ns_user.url.replace(f"{ns_user.user}:{ns_user.password}@", "")
    with (
        Relay(url, namespace=ns_user.namespace, connect_retries=0) as anonymous,
        pytest.raises(BrokerUnavailable) as refused,
    ):
        anonymous.queue("q").put(1)
    assert "refused the credentials (Authentication required" in str(refused.value)


# -- helpers -------------------------------------------------------------------------------


def _lrange(url: str, key: str) -> list[str]:
    with redis.Redis.from_url(url) as client:
        return [item.decode() for item in client.lrange(key, 0, -1)]


def _runs(url: str, namespace: str) -> list[list[str]]:
    return [line.split() for line in _lrange(url, f"{namespace}:test:runs")]


def _done(url: str, namespace: str) -> set[str]:
    return {run[0] for run in _runs(url, namespace) if run[2] == "done"}


def test_async_calls_work_as_the_user_and_are_refused_like_sync(
    relay: Relay, ns_user: NamespaceUser
) -> None:
    stranger = _stranger(ns_user)

    async def main() -> list[str]:
        await relay.queue("q").aput(1)
        await relay.queue("q").aput(2, delay=30)
        await relay.queue("q").aput_many([3, 4])
        await relay.apublish("news", 1)
        assert (await relay.queue("q").astats()).ready == 3
        refusals = []
        for call in (
            lambda: stranger.queue("q").aput(1),
            lambda: stranger.queue("q").aput(1, delay=5),
            lambda: stranger.queue("q").aput_many([1, 2]),
            lambda: stranger.astats(),
            lambda: stranger.apublish("news", 1),
        ):
            with pytest.raises(BrokerError, match="no permissions") as refused:
                await call()
            assert isinstance(refused.value.__cause__, rex.NoPermissionError)
            refusals.append(str(refused.value))
        await relay.aclose()
        await stranger.aclose()
        return refusals

    refusals = asyncio.run(main())
    assert all("~other:*" in text and "&other:*" in text for text in refusals)
    assert ns_user.admin("KEYS", "other:*") == []
    assert "key other:{q}:shards" in ns_user.denials(reset=True)  # then reset: expected
