"""Names cannot reach keys or channels outside their namespace (pure, no Redis)."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from redrelay import InvalidName, Relay
from redrelay.protocol.keys import (
    MAX_NAME_LENGTH,
    QueueKeys,
    channel_key,
    epoch_key,
    queues_key,
    validate_name,
)

#: What validate_name accepts, written independently of its regex.
_ALLOWED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-"

valid_names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_ALLOWED[:62]),
    st.text(alphabet=_ALLOWED, max_size=MAX_NAME_LENGTH - 1),
)
#: Anything at all, and valid names with one hostile character put somewhere in them.
hostile = st.one_of(
    st.text(max_size=MAX_NAME_LENGTH + 5),
    st.builds(
        lambda name, char, at: name[:at] + char + name[at:],
        valid_names,
        st.sampled_from(list("{}*?[]\\ \n\r\t\x00/\"'") + ["\u00e9", "\u200b"]),
        st.integers(0, MAX_NAME_LENGTH),
    ),
)


def _all_keys(keys: QueueKeys) -> list[str]:
    consumer = uuid.uuid4().hex[:16]  # as Lease.join makes them
    return [
        keys.ready,
        keys.delayed,
        keys.delayed_data,
        keys.leases,
        keys.consumers,
        keys.dead,
        keys.dead_data,
        keys.stats,
        keys.history,
        keys.inflight(consumer),
        keys.started(consumer),
        keys.dedup("0" * 32),
    ]


def _hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: between the first { and the next }."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start + 1)]


@given(namespace=hostile | valid_names, name=hostile | valid_names)
@example(namespace="redrelay", name="emails")
@example(namespace="a:b", name="c.d-e_f:g")
def test_accepted_names_keep_every_key_inside_the_queue(
    namespace: str, name: str
) -> None:
    try:
        validate_name("namespace", namespace)
        validate_name("queue", name)
    except InvalidName:
        return
    prefix = f"{namespace}:{{{name}}}:"
    for key in _all_keys(QueueKeys.of(namespace, name)):
        assert key.startswith(prefix)
        assert key.count("{") == 1 and key.count("}") == 1
        assert _hash_tag(key) == name  # one Cluster slot per queue
    for key in (queues_key(namespace), epoch_key(namespace)):
        assert key.startswith(f"{namespace}:") and not set("{}") & set(key)


@given(namespace=valid_names, name=hostile | valid_names)
def test_accepted_channel_names_stay_in_the_namespace_and_match_only_themselves(
    namespace: str, name: str
) -> None:
    try:
        validate_name("channel", name)
    except InvalidName:
        return
    key = channel_key(namespace, name)
    assert key == f"{namespace}:{name}"
    assert not set("*?[]\\") & set(key)  # SUBSCRIBE and ACL rules see no glob


@given(name=valid_names)
def test_every_valid_name_is_accepted(name: str) -> None:
    assert validate_name("queue", name) == name


@pytest.mark.parametrize(
    "name",
    [
        "{emails}",
        "a}b",
        "a{b",
        "*",
        "emails*",
        "a?",
        "[ab]",
        "with space",
        "line\nbreak",
        "cr\r",
        "tab\t",
        "nul\x00",
        "back\\slash",
        "caf\u00e9",
        "",
        "-leading-dash",
        ":leading-colon",
        "x" * (MAX_NAME_LENGTH + 1),
    ],
)
@pytest.mark.parametrize("kind", ["queue", "channel", "namespace"])
def test_hostile_names_are_refused(kind: str, name: str) -> None:
    with pytest.raises(InvalidName, match=re.escape(f"invalid {kind} name")):
        validate_name(kind, name)


@pytest.mark.parametrize("name", [b"emails", None, 3, ["a"]])
def test_names_must_be_str(name: object) -> None:
    with pytest.raises(InvalidName, match="must be a str"):
        validate_name("queue", name)


def test_the_public_entry_points_validate() -> None:
    relay = Relay("redis://127.0.0.1:1")  # no I/O before first use
    with pytest.raises(InvalidName):
        relay.queue("a}b")
    with pytest.raises(InvalidName):
        relay.channel("news feed")
    with pytest.raises(InvalidName):
        relay.subscriber("{x}*", pattern=True)
    with pytest.raises(InvalidName):
        Relay("redis://127.0.0.1:1", namespace="app}{")
    assert relay._connection is None
    relay.close()


@given(pattern=hostile | st.text(alphabet=_ALLOWED + "*?[]^", min_size=1))
def test_accepted_patterns_have_no_braces_and_stay_in_the_namespace(
    pattern: str,
) -> None:
    try:
        validate_name("channel pattern", pattern, pattern=True)
    except InvalidName:
        return
    assert not set("{} \n\\") & set(pattern)
    assert channel_key("app", pattern).startswith("app:")


def test_namespaces_that_nest_share_channels() -> None:
    """Why the namespace rule below matters: today these are one Redis channel."""
    assert channel_key("shop", "eu:orders") == channel_key("shop:eu", "orders")


def test_namespaces_cannot_nest() -> None:
    with pytest.raises(InvalidName, match="namespace"):
        Relay("redis://127.0.0.1:1", namespace="shop:eu")
