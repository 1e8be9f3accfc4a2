"""Settings, the lazily built relays, declarations and autodiscovery."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from redrelay import ConfigurationError, InvalidName, Message, Relay
from redrelay.contrib.django import (
    InvalidRelaySettings,
    consumer,
    get_relay,
    subscriber,
)
from redrelay.contrib.django.conf import OPTION_KEYS, relay_settings
from redrelay.contrib.django.relays import db_connections
from redrelay.relay import RelayState


def test_get_relay_is_built_lazily_from_settings_and_shared(
    namespace: str, redrelay_url: str
) -> None:
    relay = get_relay()
    assert relay is get_relay("default")
    assert relay.namespace == namespace
    assert relay.url == redrelay_url
    assert relay.consumer_defaults["lease"] == 2.0
    relay.queue("plain").put({"n": 1})
    assert relay.queue("plain").stats().ready == 1


def test_a_settings_change_closes_the_relay_and_the_next_one_follows_it(
    namespace: str, redrelay_url: str
) -> None:
    before = get_relay()
    with override_settings(
        REDRELAY={"default": {"URL": redrelay_url, "NAMESPACE": f"{namespace}-other"}}
    ):
        inside = get_relay()
        assert inside is not before
        assert inside.namespace == f"{namespace}-other"
        assert before.state is RelayState.CLOSED
    after = get_relay()
    assert after.namespace == namespace
    assert inside.state is RelayState.CLOSED


def test_other_settings_changes_leave_the_relay_alone() -> None:
    before = get_relay()
    with override_settings(USE_I18N=False):
        assert get_relay() is before


def test_without_the_setting_there_is_one_default_alias(settings: Any) -> None:
    del settings.REDRELAY
    config = relay_settings()
    assert (config.url, config.namespace, config.outbox) == (None, "redrelay", False)


def test_an_unknown_alias_is_an_improperly_configured_error() -> None:
    with pytest.raises(
        InvalidRelaySettings, match="no alias 'replica'.*'default'"
    ) as info:
        get_relay("replica")
    assert isinstance(info.value, ImproperlyConfigured)
    assert isinstance(info.value, ConfigurationError)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("redis://x", "must be a dict of aliases"),
        ({"default": "redis://x"}, r"REDRELAY\['default'\] must be a dict"),
        ({"default": {"URL": "http://x"}}, "unsupported Redis URL"),
        ({"default": {"OUTBX": True}}, "unknown key 'OUTBX'.*Did you mean 'OUTBOX'"),
        (
            {"default": {"OPTIONS": {"retires": 3}}},
            "unknown option 'retires'.*'retries'",
        ),
        ({"default": {"OPTIONS": {"lease": 0.01}}}, "lease= must be at least"),
        ({"default": {"NAMESPACE": "a b"}}, "invalid namespace name"),
        ({"default": {"OUTBOX": "yes"}}, "OUTBOX'] must be True or False"),
        (
            {"default": {"SSE_AUTHORIZE": "no.such.thing"}},
            "cannot import 'no.such.thing'",
        ),
    ],
)
def test_invalid_settings_fail_with_what_and_how_to_fix(
    settings: Any, value: object, match: str
) -> None:
    settings.REDRELAY = value
    with pytest.raises(InvalidRelaySettings, match=match):
        get_relay()


def test_options_are_every_relay_and_consumer_keyword() -> None:
    assert {
        "codec",
        "max_message_size",
        "dedup_ttl",
        "on_gap",
        "data_dir",
    } <= OPTION_KEYS
    assert {
        "retries",
        "lease",
        "concurrency",
        "prefetch",
        "max_deliveries",
    } <= OPTION_KEYS
    assert not {"url", "namespace", "self", "consumer_defaults"} & OPTION_KEYS


def test_on_gap_may_be_a_dotted_path(settings: Any, redrelay_url: str) -> None:
    settings.REDRELAY = {
        "default": {"URL": redrelay_url, "OPTIONS": {"on_gap": "logging.warning"}}
    }
    import logging

    assert get_relay().on_gap is logging.warning


def test_consumers_py_of_installed_apps_is_autodiscovered(app_relay: Relay) -> None:
    from tests.contrib.django.testapp import consumers

    assert app_relay.consumers["jobs"].handler is consumers.job
    assert [(s.channel, s.handler) for s in app_relay.subscribers] == [
        ("news", consumers.news)
    ]


def test_the_tasks_backend_registers_a_consumer_per_task_queue(
    app_relay: Relay,
) -> None:
    assert {"tasks.default", "tasks.other"} <= set(app_relay.consumers)
    assert app_relay.consumers["tasks.default"].options.prefetch == 1


@pytest.mark.usefixtures("declarations")
def test_declarations_reach_relays_built_before_and_after(redrelay_url: str) -> None:
    before = get_relay()

    @consumer("late-queue", retries=7)
    def late(message: Message) -> None:
        pass

    @subscriber("late.*", pattern=True)
    def late_sub(message: Message) -> None:
        pass

    assert before.consumers["late-queue"].options.retries == 7
    assert any(s.handler is late_sub and s.pattern for s in before.subscribers)
    with override_settings(REDRELAY={"default": {"URL": redrelay_url}}):
        rebuilt = get_relay()
        assert rebuilt is not before
        assert rebuilt.consumers["late-queue"].handler is late


@pytest.mark.usefixtures("declarations")
def test_a_topic_subscriber_declaration(app_relay: Relay) -> None:
    @subscriber("orders", group="billing", start="beginning", retries=2)
    def bill(message: Message) -> None:
        pass

    (sub,) = [s for s in app_relay.topic_subscribers if s.handler is bill]
    assert (sub.topic.name, sub.group, sub.start, sub.options.retries) == (
        "orders", "billing", "0", 2,
    )  # fmt: skip


@pytest.mark.usefixtures("declarations")
def test_a_declaration_for_another_alias_stays_with_it(redrelay_url: str) -> None:
    @consumer("side-queue", alias="side")
    def side(message: Message) -> None:
        pass

    assert "side-queue" not in get_relay().consumers
    with override_settings(
        REDRELAY={"default": {"URL": redrelay_url}, "side": {"URL": redrelay_url}}
    ):
        assert get_relay("side").consumers["side-queue"].handler is side


@pytest.mark.usefixtures("declarations")
def test_a_bad_declaration_names_the_handler() -> None:
    @consumer("jobs")  # the test app already consumes "jobs"
    def duplicate(message: Message) -> None:
        pass

    with pytest.raises(
        InvalidRelaySettings, match=r"@consumer\('jobs'\) on .*duplicate"
    ):
        get_relay()


def test_decorators_validate_names_at_once() -> None:
    with pytest.raises(InvalidName, match="invalid queue name"):
        consumer("no spaces")
    with pytest.raises(InvalidName, match="invalid channel name"):
        subscriber("a*b")


def test_handlers_run_inside_the_database_connection_context(
    app_relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert db_connections in app_relay.handler_contexts
    calls: list[str] = []
    monkeypatch.setattr(
        "redrelay.contrib.django.relays.close_old_connections",
        lambda: calls.append("close"),
    )
    seen: list[list[str]] = []
    app_relay.consumer("ctx")(lambda m: seen.append(list(calls)))
    app_relay.queue("ctx").put({"n": 1})
    app_relay.drain(["ctx"])
    assert seen == [["close"]]
    assert calls == ["close", "close"]


def test_db_connections_closes_even_when_the_handler_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(
        "redrelay.contrib.django.relays.close_old_connections",
        lambda: calls.append("close"),
    )
    with contextlib.suppress(RuntimeError), db_connections(Message(id="x", body=None)):
        raise RuntimeError("boom")
    assert calls == ["close", "close"]


def test_public_names_are_sorted_and_exist() -> None:
    import redrelay.contrib.django as package

    assert package.__all__ == sorted(package.__all__)
    assert all(hasattr(package, name) for name in package.__all__)


def test_importing_reads_no_setting_and_does_no_io(
    subprocess_env: dict[str, str],
) -> None:
    """Without DJANGO_SETTINGS_MODULE, any settings access would raise."""
    import subprocess
    import sys

    env = {k: v for k, v in subprocess_env.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import redrelay.contrib.django, redrelay.contrib.django.conf, "
        "redrelay.contrib.django.relays, redrelay.contrib.django.outbox, "
        "redrelay.contrib.django.views, redrelay.contrib.django.checks, "
        "redrelay.contrib.django.tasks, redrelay.contrib.django.apps\n"
        "import redrelay.contrib.django.relays as r\n"
        "assert not r._relays\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
