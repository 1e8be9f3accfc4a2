"""The bare at-least-once loop: the practical limit of one Python process draining a queue.

    python bench/bare_loop.py URL READY_KEY

One Lua script moves up to 200 entries from the list into an in-flight hash (the same
move redrelay's fetch makes, without leases, priorities or limits), then each entry's
JSON payload is decoded with orjson and the no-op handler (:func:`bench._common.tick`)
runs, then one ``HDEL`` per batch acks them. No handler threads, no retries, no
recovery: what is left of a broker when everything but delivery is taken out.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import redis

from bench._common import tick

MOVE = """
local items = redis.call('RPOP', KEYS[1], tonumber(ARGV[1]))
if not items then return {} end
local args = {}
for i = 1, #items do
  args[#args + 1] = ARGV[2] .. i
  args[#args + 1] = items[i]
end
redis.call('HSET', KEYS[2], unpack(args))
return items
"""
#: Length of a fresh redrelay entry's header (``\\x1frr1:0:0:j``): the payload follows.
HEADER = 10


def main() -> None:
    url, ready = sys.argv[1], sys.argv[2]
    client = redis.Redis.from_url(url)
    move = client.register_script(MOVE)
    inflight = ready + ":bare-inflight"
    batch = 0
    loads = orjson.loads
    while True:
        batch += 1
        prefix = f"{batch}:"
        items = move(keys=[ready, inflight], args=[200, prefix])
        if not items:
            client.brpoplpush(ready, ready, 0.5)  # wait for work without taking it
            continue
        for item in items:
            loads(item[HEADER:])
            tick()
        client.hdel(inflight, *[prefix + str(i) for i in range(1, len(items) + 1)])


if __name__ == "__main__":
    main()
