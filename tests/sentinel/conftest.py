"""Fixtures of the replication tests: a primary with a replica, and three Sentinels.

Everything runs on loopback TCP ports (Sentinel and replication need TCP), with the
system ``redis-server`` (see :func:`redrelay._server.find_redis_server`).
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from redrelay import BrokerUnavailable
from redrelay._server import AdminClient, RedisServer, free_port

from ..faults.history import History
from ..processes import Sentinel, wait_for

SERVICE = "relaymain"
#: Sentinel settings: a primary is down after 1 s without a reply.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
#: Redis 7 waits 5 s before a diskless full sync, for more replicas to join.
NO_SYNC_DELAY = ["--repl-diskless-sync-delay", "0"]


def replication(url: str) -> dict[str, str]:
    with AdminClient(url, timeout=2.0) as client:
        return client.info("replication")


@dataclass
class Pair:
    """A primary and one replica (``replicaof``), both with the AOF off."""

    primary: RedisServer
    replica: RedisServer

    def wait_synced(self, timeout: float = 20.0) -> None:
        """Until the replica's link is up and it has the primary's offset."""

        def synced() -> bool:
            if replication(self.replica.url).get("master_link_status") != "up":
                return False
            info = replication(self.primary.url)
            return info.get("connected_slaves") == "1" and info.get(
                "slave0", ""
            ).endswith(f"offset={info['master_repl_offset']},lag=0")

        wait_for(synced, timeout, 0.05, "the replica to sync")

    def pause_replica(self) -> None:
        assert self.replica.pid is not None
        signal_process(self.replica.pid, signal.SIGSTOP)

    def resume_replica(self) -> None:
        assert self.replica.pid is not None
        signal_process(self.replica.pid, signal.SIGCONT)


def signal_process(pid: int, sig: int) -> None:
    import os

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


@pytest.fixture
def history(redis_server_factory: Callable[..., RedisServer]) -> Iterator[History]:
    """The record of the run, on a server no fault touches (see tests/faults)."""
    h = History(
        redis_server_factory(appendonly=False).url, f"sentinel-{secrets.token_hex(4)}"
    )
    yield h
    h.close()


@pytest.fixture
def pair(redis_server_factory: Callable[..., RedisServer]) -> Iterator[Pair]:
    primary = redis_server_factory(
        unix_socket=False, appendonly=False, extra_args=NO_SYNC_DELAY
    )
    replica = redis_server_factory(
        unix_socket=False,
        appendonly=False,
        # NO_SYNC_DELAY: after a failover the replica is the primary others sync from.
        extra_args=["--replicaof", "127.0.0.1", str(primary.port), *NO_SYNC_DELAY],
    )
    p = Pair(primary, replica)
    p.wait_synced()
    yield p
    p.resume_replica()  # a SIGSTOPped server cannot shut down


@dataclass
class Sentinels:
    """Three ``redis-server --sentinel`` processes watching ``SERVICE``."""

    ports: list[int]
    processes: list[Sentinel] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def primary_address(self, port: int | None = None) -> tuple[str, int] | None:
        """Where a Sentinel (the first by default) says the primary is."""
        url = f"redis://127.0.0.1:{port or self.ports[0]}"
        with AdminClient(url, timeout=1.0) as client:
            reply = client.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        if not isinstance(reply, list) or len(reply) != 2:
            return None
        host, port_ = reply
        assert isinstance(host, bytes) and isinstance(port_, bytes)
        return host.decode(), int(port_)

    def ready(self) -> bool:
        """Every Sentinel knows the other two and the replica."""
        for port in self.ports:
            try:
                with AdminClient(f"redis://127.0.0.1:{port}", timeout=1.0) as client:
                    master = client.command("SENTINEL", "MASTER", SERVICE)
                    replicas = client.command("SENTINEL", "REPLICAS", SERVICE)
            except BrokerUnavailable:
                return False  # not listening yet
            assert isinstance(master, list)
            fields = dict(zip(master[::2], master[1::2], strict=True))
            if fields.get(b"num-other-sentinels") != b"2":
                return False
            if not isinstance(replicas, list) or len(replicas) != 1:
                return False
        return True

    def close(self) -> None:
        for process in self.processes:
            process.close()


@pytest.fixture
def sentinels(pair: Pair, tmp_path: Path) -> Iterator[Sentinels]:
    group = Sentinels(ports=[free_port() for _ in range(3)])
    try:
        for n, port in enumerate(group.ports):
            group.processes.append(
                Sentinel(
                    tmp_path / f"sentinel-{n}",
                    port,
                    [
                        f"sentinel monitor {SERVICE} 127.0.0.1 {pair.primary.port} 2",
                        f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                        f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                        f"sentinel parallel-syncs {SERVICE} 1",
                    ],
                )
            )
        started = time.monotonic()
        wait_for(group.ready, 30, 0.1, "the Sentinels to find each other")
        print(f"sentinels ready in {time.monotonic() - started:.1f}s")
        yield group
    finally:
        group.close()
