"""``redis+sentinel://`` URLs: parsed, checked (naming what is wrong) and redacted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from redrelay import BrokerUnavailable, ConfigurationError, Relay
from redrelay._server import AdminClient, RedisServer, free_port
from redrelay.io.sentinel import parse_sentinel_url
from redrelay.io.sync import redact

from ..processes import Sentinel, wait_for


def test_full_form() -> None:
    url = (
        "redis+sentinel://ada:s3cret@10.0.0.1:26379,sentinel-b,[::1]:26380/orders/2"
        "?sentinel_username=watch&sentinel_password=t0ken"
    )
    parsed = parse_sentinel_url(url)
    assert parsed.sentinels == (
        ("10.0.0.1", 26379),
        ("sentinel-b", 26379),
        ("::1", 26380),
    )
    assert (parsed.service, parsed.db) == ("orders", 2)
    assert (parsed.username, parsed.password) == ("ada", "s3cret")
    assert (parsed.sentinel_username, parsed.sentinel_password) == ("watch", "t0ken")
    shown = redact(url)
    assert "s3cret" not in shown and "t0ken" not in shown
    assert shown.startswith("redis+sentinel://ada:***@10.0.0.1:26379,sentinel-b,")


def test_short_form() -> None:
    parsed = parse_sentinel_url("redis+sentinel://h1/main")
    assert parsed.sentinels == (("h1", 26379),)
    assert (parsed.service, parsed.db, parsed.username, parsed.password) == (
        "main",
        0,
        None,
        None,
    )
    assert parse_sentinel_url("redis+sentinel://:pw@h1/main").password == "pw"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h1", "no service name"),
        ("redis+sentinel://h1/", "no service name"),
        ("redis+sentinel:///main", "empty host"),
        ("redis+sentinel://h1:0/main", "1-65535"),
        ("redis+sentinel://h1:x/main", "1-65535"),
        ("redis+sentinel://h1/main/one", "database must be a number"),
        ("redis+sentinel://h1/main/0/1", "too many path parts"),
        ("redis+sentinel://h1/main?password=x", "unknown query parameters"),
    ],
)
def test_bad_urls_are_refused_by_relay(url: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why) as info:
        Relay(url)
    assert "redis+sentinel://[user:password@]host1:26379" in str(info.value)


def test_password_never_shown_in_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        Relay("redis+sentinel://u:hunter2@h1:99999/main")
    assert "hunter2" not in str(info.value)
    relay = Relay("redis+sentinel://u:hunter2@127.0.0.1:1/main")
    assert "hunter2" not in repr(relay)


def test_no_sentinel_answers_is_broker_unavailable() -> None:
    relay = Relay(
        f"redis+sentinel://u:hunter2@127.0.0.1:{free_port()}/main", connect_retries=0
    )
    with pytest.raises(BrokerUnavailable) as info:
        relay.queue("q").put(1)
    assert "hunter2" not in str(info.value)
    assert "main" in str(info.value)


def test_passwords_reach_the_servers_and_the_sentinel(
    redis_server_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    """user:password@ goes to the primary, sentinel_password= to the Sentinels."""
    primary = redis_server_factory(unix_socket=False, appendonly=False)
    with AdminClient(
        primary.url
    ) as admin:  # after start(): it PINGs without a password
        admin.command("CONFIG", "SET", "requirepass", "srv-pw")
    port = free_port()
    sentinel = Sentinel(
        tmp_path / "sentinel",
        port,
        [
            "requirepass sent-pw",
            f"sentinel monitor main 127.0.0.1 {primary.port} 1",
            "sentinel auth-pass main srv-pw",
        ],
    )
    try:
        base = f"redis+sentinel://:srv-pw@127.0.0.1:{port}/main"

        def put() -> str | None:
            try:
                return Relay(f"{base}?sentinel_password=sent-pw").queue("q").put(1)
            except BrokerUnavailable:
                return None  # the Sentinel is not listening yet

        assert wait_for(put, 20, 0.1, "a put through the Sentinel")
        with pytest.raises(BrokerUnavailable, match="sentinel_password") as info:
            Relay(f"{base}?sentinel_password=wrong", connect_retries=0).queue("q").put(
                1
            )
        assert "wrong" not in str(info.value) and "srv-pw" not in str(info.value)
        wrong_server_pw = base.replace("srv-pw", "nope") + "?sentinel_password=sent-pw"
        with pytest.raises(BrokerUnavailable, match="refused the credentials") as info:
            Relay(wrong_server_pw, connect_retries=0).queue("q").put(1)
        assert "nope" not in str(info.value)
    finally:
        sentinel.close()
