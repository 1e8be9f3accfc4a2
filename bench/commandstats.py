"""What Redis does per message during one drain: ``INFO commandstats`` deltas.

    .venv/bin/python bench/commandstats.py --result-ttl 3600 --n 50000
    PYTHONPATH=/work/main/src .venv/bin/python bench/commandstats.py --result-ttl 3600
    .venv/bin/python bench/commandstats.py --result-ttl 3600 --tracked

Starts its own ``redis-server`` (no persistence, loopback TCP), queues ``n`` messages as
``bench/limit.py`` does (``--tracked``: through ``relay.queue(name, results=True)``, so
each has a record, as in the Flask and Django setups), resets the stats, and drains them
with ``bench/limit.py``'s worker (``--result-ttl``: the consumer stores its results).
Prints the rate and the CPU per message of the worker and of redis-server (as
``bench/limit.py``), then every command's wall-clock µs per message inside Redis
(``EVALSHA`` includes what its scripts call; on a loaded machine every figure is
inflated by the time Redis waits for a core). With ``PYTHONPATH`` set to another tree's
``src``, the fill and the worker run from that tree.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench import limit
from redrelay import Relay
from redrelay._server import RedisServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--result-ttl", default="", help="seconds (unset: no results)")
    parser.add_argument("--tracked", action="store_true", help="a tracking producer")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="redrelay-commandstats-"))
    server = RedisServer(workdir / "redis", unix_socket=False, appendonly=False)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        if args.tracked:
            relay = Relay(server.url)
            q = relay.queue(limit.QUEUE, results=True)
            for first in range(0, args.n, 1000):
                q.put_many([{"n": i} for i in range(first, min(args.n, first + 1000))])
            relay.close()
        else:
            limit.fill(server.url, args.n, 0)
        client.config_resetstat()
        env = {"BENCH_RESULT_TTL": args.result_ttl} if args.result_ttl else {}
        argv = [a.replace("{url}", server.url) for a in limit.WORKER]
        got = limit.drain(server.url, workdir, "drain", argv, env, args.n)
        if got is None:
            sys.exit("the drain did not finish")
        rate, worker_us, redis_us = got
        print(
            f"{rate:,.0f} msg/s; CPU us/msg: worker {worker_us:.1f}, redis {redis_us:.1f}"
        )
        stats = client.info("commandstats")
        for name, v in sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:15]:
            print(f"{name.removeprefix('cmdstat_'):24s} calls {v['calls']:8d}  "
                  f"us/msg {v['usec'] / args.n:7.3f}")  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    main()
