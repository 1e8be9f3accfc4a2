"""A local Redis Cluster of real ``redis-server`` processes, for tests and benchmarks.

Each node is a :class:`~redrelay._server.RedisServer` started with ``--cluster-enabled
yes`` on a free loopback port (its cluster bus on another free port, since ``port +
10000`` may not exist); ``redis-cli --cluster create`` then splits the 16384 slots between
the primaries. Not for production: no replicas, no persistence by default.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

from ._server import RedisServer, find_redis_server, free_port
from .errors import BrokerUnavailable, ConfigurationError
from .io.admin import AdminClient

__all__ = ["LocalCluster", "find_redis_cli"]


def find_redis_cli() -> str:
    """The ``redis-cli`` beside the ``redis-server`` in use, else the one on PATH."""
    beside = Path(find_redis_server()).with_name("redis-cli")
    if beside.exists():
        return str(beside)
    found = shutil.which("redis-cli")
    if found is None:
        raise ConfigurationError(
            "redis-cli not found: a local Redis Cluster is created with "
            "'redis-cli --cluster create'; install redis-tools"
        )
    return found


class LocalCluster:
    """``nodes`` cluster primaries on 127.0.0.1, created and checked (``cluster_state:ok``).

    Usage::

        with LocalCluster(tmp_path, nodes=3) as cluster:
            relay = Relay(cluster.url)   # redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        nodes: int = 3,
        appendonly: bool = False,
        node_timeout_ms: int = 2000,
    ) -> None:
        if nodes < 3:
            raise ConfigurationError(
                f"nodes= must be at least 3 (redis-cli --cluster create needs 3 primaries), got {nodes}"
            )
        self.directory = Path(directory).absolute()
        self.servers: list[RedisServer] = []
        for n in range(nodes):
            node_dir = self.directory / f"node{n}"
            bus = free_port()
            self.servers.append(
                RedisServer(
                    node_dir,
                    unix_socket=False,
                    appendonly=appendonly,
                    extra_args=[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(node_dir / "nodes.conf"),
                        "--cluster-node-timeout",
                        str(node_timeout_ms),
                        "--cluster-port",
                        str(bus),
                    ],
                )  # fmt: skip
            )

    @property
    def url(self) -> str:
        """``redis+cluster://`` naming every node, so a client starts while one is down."""
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.servers)
        return f"redis+cluster://{nodes}"

    def node_urls(self) -> list[str]:
        """Plain ``redis://`` URLs of the nodes (each one server)."""
        return [s.url for s in self.servers]

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Start every node, create the cluster, and wait for ``cluster_state:ok``."""
        for server in self.servers:
            _start_node(server)
        addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
        created = subprocess.run(
            [find_redis_cli(), "--cluster", "create", *addresses]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if created.returncode != 0:
            self.stop()
            raise BrokerUnavailable(
                "redis-cli --cluster create failed: "
                + created.stdout.decode(errors="replace")[-2000:]
                + created.stderr.decode(errors="replace")[-2000:]
            )
        self.wait_ok(timeout)
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and knows all slots."""
        deadline = time.monotonic() + timeout
        while True:
            states = [self._state(s) for s in self.servers if s.running()]
            if states and all(states):
                return
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"the local cluster did not reach cluster_state:ok in {timeout}s"
                )
            time.sleep(0.05)

    @staticmethod
    def _state(server: RedisServer) -> bool:
        try:
            with AdminClient(server.url) as client:
                info = client.command("CLUSTER", "INFO")
        except (BrokerUnavailable, OSError):
            return False
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text and "cluster_slots_assigned:16384" in text

    def stop(self) -> None:
        """Stop every node (idempotent)."""
        for server in self.servers:
            server.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _start_node(server: RedisServer, attempts: int = 3) -> None:
    """Start one node; if its port or bus port was taken between choosing and binding
    (another process got it first), choose both again."""
    for attempt in range(attempts):
        try:
            server.start()
            return
        except BrokerUnavailable as exc:
            if "Address already in use" not in str(exc) or attempt == attempts - 1:
                raise
            args = list(server.extra_args)
            args[args.index("--cluster-port") + 1] = str(free_port())
            server.extra_args = tuple(args)
            server._port = None  # command_line() picks a new one
