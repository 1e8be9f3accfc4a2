"""Reading the results layout with plain redis-py commands, independently of redrelay's
own readers: a message's record (``job``), else the result buckets (docs/results.md,
"Where it is stored"), found by SCAN rather than through the ``results`` index."""

from __future__ import annotations

import redis

from redrelay.protocol.keys import QueueKeys

_STATES = {b"o": b"ok", b"f": b"fail", b"x": b"x"}


def buckets(client: redis.Redis, keys: QueueKeys) -> list[bytes]:
    """Every result bucket key of the queue."""
    return sorted(client.scan_iter(match=f"{keys.prefix}:results:*", count=1000))


def bucket_holding(client: redis.Redis, keys: QueueKeys, msg_id: str) -> bytes | None:
    """The bucket key whose hash has ``msg_id`` (None: in none)."""
    held = [b for b in buckets(client, keys) if client.hexists(b, msg_id)]
    assert len(held) <= 1, f"{msg_id} is in {len(held)} buckets"
    return held[0] if held else None


def stored(
    client: redis.Redis, keys: QueueKeys, ids: list[str]
) -> dict[str, tuple[bytes | None, bytes | None]]:
    """``(state, value)`` of each id: its record's, else its bucket's (state ``ok``,
    ``fail`` or ``x``), else ``(None, None)``. A finished message must not have both."""
    pipe = client.pipeline(transaction=False)
    for msg_id in ids:
        pipe.hmget(keys.job(msg_id), "s", "v")
    records = dict(zip(ids, pipe.execute(), strict=True))
    found: dict[str, bytes] = {}
    for bucket in buckets(client, keys):
        for field, packed in client.hgetall(bucket).items():
            msg_id = field.decode()
            assert msg_id not in found, f"{msg_id} finished twice"
            found[msg_id] = packed
    out: dict[str, tuple[bytes | None, bytes | None]] = {}
    for msg_id in ids:
        state, value = records[msg_id]
        packed = found.get(msg_id)
        if packed is not None:
            assert state is None, f"{msg_id} has a result and a record ({state!r})"
            state, value = _STATES[packed[:1]], packed[1:]
        out[msg_id] = (state, value)
    return out
