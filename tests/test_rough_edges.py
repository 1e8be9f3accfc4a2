"""Small things new users tripped over (issue 16, item 14): argument messages and a
dedup-suppressed put that can be told apart."""

from __future__ import annotations

import asyncio
import logging
import pickle

import pytest
from click.testing import CliRunner

from redrelay import ConfigurationError, MessageId, Relay
from redrelay.cli import cli


@pytest.mark.parametrize(
    ("delay", "text"),
    [
        (-5, "delay= must be 0 or more seconds (a finite number), got -5"),
        (float("inf"), "delay= must be 0 or more seconds (a finite number), got inf"),
        (float("nan"), "delay= must be 0 or more seconds"),
    ],
)
def test_a_bad_delay_says_what_is_allowed(
    relay: Relay, delay: float, text: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        relay.queue("emails").put(1, delay=delay)
    assert text in str(info.value)
    assert relay.stats() == []  # nothing was written


def test_lease_zero_says_more_than_0() -> None:
    with pytest.raises(ConfigurationError, match="lease= must be more than 0 seconds"):
        Relay("redis://x", lease=0)


def test_a_put_suppressed_by_its_dedup_key_is_a_duplicate(relay: Relay) -> None:
    q = relay.queue("emails")
    first = q.put({"to": "eve"}, dedup_key="welcome:eve")
    again = q.put({"to": "eve"}, dedup_key="welcome:eve")
    assert isinstance(first, MessageId) and isinstance(first, str)
    assert first.duplicate is False
    assert again.duplicate is True
    assert again == first  # the earlier message's id
    assert q.stats().ready == 1
    plain = q.put(2)
    assert plain.duplicate is False
    delayed = q.put(3, delay=30, dedup_key="later")
    assert q.put(3, delay=30, dedup_key="later").duplicate is True
    assert delayed.duplicate is False
    copy = pickle.loads(pickle.dumps(again))
    assert copy == again and copy.duplicate is True


def test_aput_reports_duplicates_too(relay: Relay) -> None:
    async def main() -> tuple[bool, bool]:
        q = relay.queue("emails")
        first = await q.aput(1, dedup_key="k")
        again = await q.aput(1, dedup_key="k")
        await relay.aclose()
        return first.duplicate, again.duplicate

    assert asyncio.run(main()) == (False, True)


def test_worker_takes_v_after_the_command_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", logging.WARNING)
    result = CliRunner().invoke(
        cli, ["--url", "redis://127.0.0.1:9", "worker", "no_such_module:relay", "-vv"]
    )
    assert "no such option" not in result.output.lower()
    assert result.exit_code == 2 and "cannot import 'no_such_module'" in result.output
    assert root.level == logging.DEBUG


def test_log_lines_name_queues_not_keys() -> None:
    from redrelay.protocol.keys import QueueKeys
    from redrelay.sharding import shard_keys

    assert QueueKeys.of("redrelay", "emails").name == "emails"
    assert [k.name for k in shard_keys("shop", "hot", 2)] == ["hot#0", "hot#1"]
