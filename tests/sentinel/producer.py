"""A producer process for the failover test: ``python -m tests.sentinel.producer``.

Puts ``{"n": i}`` on queue ``work`` through ``REDRELAY_URL`` until ``PRODUCER_COUNT`` puts
were acknowledged or ``PRODUCER_SECONDS`` passed, ``PRODUCER_INTERVAL`` apart. Every
acknowledged put is recorded on the history server as ``"<id> <acked at> <sent at>"``
(unix times: when the call returned, and when it began) in ``<namespace>:acked``; every call that raised (an unknown outcome) in
``<namespace>:unknown``. A call that raises is not retried: the next one is a new message.
"""

from __future__ import annotations

import os
import time

import redis

from redrelay import BrokerError, BrokerUnavailable, Relay


def main() -> None:
    namespace = os.environ["FAULTS_NAMESPACE"]
    history = redis.Redis.from_url(os.environ["FAULTS_HISTORY_URL"])
    count = int(os.environ.get("PRODUCER_COUNT", "2000"))
    interval = float(os.environ.get("PRODUCER_INTERVAL", "0.005"))
    deadline = time.monotonic() + float(os.environ.get("PRODUCER_SECONDS", "60"))
    queue = Relay(namespace=namespace).queue("work")
    acked = 0
    n = 0
    while acked < count and time.monotonic() < deadline:
        n += 1
        sent = time.time()
        try:
            msg_id = queue.put({"n": n})
        except (BrokerUnavailable, BrokerError) as exc:
            history.rpush(f"{namespace}:unknown", f"{n} {time.time():.6f} {exc}")
            time.sleep(0.05)
            continue
        history.rpush(f"{namespace}:acked", f"{msg_id} {time.time():.6f} {sent:.6f}")
        acked += 1
        time.sleep(interval)


if __name__ == "__main__":
    main()
