"""The asyncio API on a cluster is refused, clearly, with a redis-py too old for it."""

from __future__ import annotations

import pytest

from redrelay import ConfigurationError
from redrelay.io.cluster import check_async_cluster

CLUSTER = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"


@pytest.mark.parametrize("old", ["5.2.1", "6.4.0", "7.1.0"])
def test_an_old_redis_py_is_refused_on_a_cluster_url(old: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_async_cluster(CLUSTER, old)
    text = str(refused.value)
    assert f"redis-py {old} is installed" in text
    assert "needs redis-py >= 8.0" in text and "sync API" in text


@pytest.mark.parametrize("fine", ["8.0.0", "8.2.0", "10.0.0b1"])
def test_a_recent_one_is_not(fine: str) -> None:
    check_async_cluster(CLUSTER, fine)
    check_async_cluster("rediss+cluster://h:1", fine)


def test_a_single_server_or_sentinel_url_is_never_refused() -> None:
    for url in ("redis://localhost:6379/0", "redis+sentinel://h:26379/mymaster"):
        check_async_cluster(url, "5.2.1")
