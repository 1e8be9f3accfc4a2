"""Passwords in the Redis URL never reach error messages, logs or reprs."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest

from redrelay import BrokerUnavailable, Relay
from redrelay.io.sync import redact
from redrelay.worker.epoch import EpochWatch

from .conftest import NamespaceUser


def test_redact_hides_the_password_of_the_userinfo() -> None:
    assert redact("redis://app:s3cret@h:6379/0") == "redis://app:***@h:6379/0"
    assert redact("rediss://:s3cret@h:6380") == "rediss://:***@h:6380"
    assert redact("unix:///run/redis.sock") == "unix:///run/redis.sock"


def test_errors_name_the_server_not_the_password(ns_user: NamespaceUser) -> None:
    url = ns_user.url.replace(ns_user.password, "not-the-password")
    with (
        Relay(url, namespace=ns_user.namespace, connect_retries=0) as relay,
        pytest.raises(BrokerUnavailable) as refused,
    ):
        relay.queue("q").put(1)
    assert "not-the-password" not in str(refused.value)
    assert f"{ns_user.user}:***@" in str(refused.value)


def test_credentials_in_the_query_string_work(ns_user: NamespaceUser) -> None:
    """redis-py also takes ``?username=...&password=...``; redrelay passes them on."""
    port = urlsplit(ns_user.url).port
    url = (
        f"redis://127.0.0.1:{port}?username={ns_user.user}&password={ns_user.password}"
    )
    with Relay(url, namespace=ns_user.namespace) as relay:
        relay.queue("q").put(1)
        assert relay.queue("q").stats().ready == 1


def test_a_password_in_the_query_string_is_redacted(ns_user: NamespaceUser) -> None:
    port = urlsplit(ns_user.url).port
    url = f"redis://127.0.0.1:{port}?username={ns_user.user}&password=not-the-password"
    with (
        Relay(url, namespace=ns_user.namespace, connect_retries=0) as relay,
        pytest.raises(BrokerUnavailable) as refused,
    ):
        relay.queue("q").put(1)
    assert "not-the-password" not in str(refused.value)


def test_the_repr_of_a_relay_hides_the_password(ns_user: NamespaceUser) -> None:
    with Relay(ns_user.url, namespace=ns_user.namespace) as relay:
        assert ns_user.password not in repr(relay)


def test_the_data_loss_report_hides_the_password(
    ns_user: NamespaceUser, caplog: pytest.LogCaptureFixture
) -> None:
    with Relay(ns_user.url, namespace=ns_user.namespace) as relay:
        watch = EpochWatch(relay.connection, relay.namespace)
        assert watch.check()
        ns_user.admin("DEL", f"{relay.namespace}:epoch")
        with caplog.at_level(logging.ERROR, logger="redrelay.worker"):
            assert not watch.check()
    (line,) = [r.getMessage() for r in caplog.records]
    assert "lost its data" in line
    assert ns_user.password not in line
