"""A relay for scheduler kill tests: one schedule ticking every second, nothing else.

Environment: REDRELAY_URL, TEST_NAMESPACE.
"""

from __future__ import annotations

import os

from redrelay import Relay

relay = Relay(
    os.environ.get("REDRELAY_URL"), namespace=os.environ.get("TEST_NAMESPACE", "t")
)
# misfire="all": a worker that lags on a loaded machine still enqueues every tick, so
# the test can ask for the exact sequence.
relay.schedule("tick", "* * * * * *", queue="ticks", misfire="all", catchup=1000)
