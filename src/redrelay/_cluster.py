"""A local Redis Cluster of real ``redis-server`` processes, for tests and benchmarks.

Each node is a :class:`~redrelay._server.RedisServer` started with ``--cluster-enabled
yes`` on a free loopback port (its cluster bus on another free port, since ``port +
10000`` may not exist); ``redis-cli --cluster create`` then splits the 16384 slots between
the primaries, and gives each primary ``replicas`` replicas if asked. With ``tls=`` the
nodes speak TLS only, to clients, to each other (``tls-cluster``) and to their replicas
(``tls-replication``), and each keeps a plain Unix socket for the helper's own checks.
Not for production: no persistence by default.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from ._server import RedisServer, find_redis_server, free_port
from .errors import BrokerUnavailable, ConfigurationError
from .io.admin import AdminClient

__all__ = ["ClusterTls", "LocalCluster", "NodeRole", "find_redis_cli"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterTls:
    """The PEM files of a TLS cluster: every node's certificate and key, and the CA that
    signed them (clients check the nodes against it; the nodes check each other)."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRole:
    """One line of ``CLUSTER NODES``: a node's id, client port, role and slots."""

    id: str
    port: int
    primary: bool
    #: The id of its primary, for a replica; "" for a primary.
    primary_id: str
    failed: bool
    slots: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, line: str) -> NodeRole:
        fields = line.split()
        flags = fields[2].split(",")
        slots = []
        for part in fields[8:]:
            if part.startswith("["):  # a slot being migrated: not served here yet
                continue
            low, _, high = part.partition("-")
            slots.append((int(low), int(high or low)))
        return cls(
            id=fields[0],
            port=int(fields[1].split("@")[0].rpartition(":")[2]),
            primary="master" in flags,
            primary_id="" if fields[3] == "-" else fields[3],
            failed="fail" in flags or "fail?" in flags,
            slots=tuple(slots),
        )


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
        replicas: int = 0,
        tls: ClusterTls | None = None,
    ) -> None:
        if nodes < 3:
            raise ConfigurationError(
                f"nodes= must be at least 3 (redis-cli --cluster create needs 3 primaries), got {nodes}"
            )
        if replicas < 0:
            raise ConfigurationError(f"replicas= must be 0 or more, got {replicas}")
        self.directory = Path(directory).absolute()
        self.replicas = replicas
        self.tls = tls
        self.servers: list[RedisServer] = []
        for n in range(nodes * (1 + replicas)):
            node_dir = self.directory / f"node{n}"
            args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", str(node_timeout_ms),
                "--cluster-port", str(free_port()),
            ]  # fmt: skip
            if tls is not None:
                args += [
                    "--tls-port", str(free_port()),
                    "--tls-cert-file", str(tls.cert),
                    "--tls-key-file", str(tls.key),
                    "--tls-ca-cert-file", str(tls.ca),
                    "--tls-auth-clients", "optional",
                    "--tls-cluster", "yes",
                    "--tls-replication", "yes",
                ]  # fmt: skip
            self.servers.append(
                RedisServer(
                    node_dir,
                    # TLS nodes: no plain TCP port; a plain Unix socket for our checks
                    unix_socket=tls is not None,
                    appendonly=appendonly,
                    extra_args=args,
                )
            )

    def port_of(self, server: RedisServer) -> int:
        """The client port of a node (its TLS port on a TLS cluster)."""
        if self.tls is None:
            assert server.port is not None, "the node has no port yet: start it first"
            return server.port
        args = list(server.extra_args)
        return int(args[args.index("--tls-port") + 1])

    @property
    def url(self) -> str:
        """``redis+cluster://`` (``rediss+cluster://?ssl_ca_certs=`` with TLS) naming
        every node, so a client starts while one is down."""
        nodes = ",".join(f"127.0.0.1:{self.port_of(s)}" for s in self.servers)
        if self.tls is None:
            return f"redis+cluster://{nodes}"
        return f"rediss+cluster://{nodes}?ssl_ca_certs={quote(str(self.tls.ca))}"

    def node_urls(self) -> list[str]:
        """URLs of the nodes, each one server (``unix://`` on a TLS cluster)."""
        return [s.url for s in self.servers]

    def roles(self) -> list[NodeRole]:
        """The nodes as a running node sees them (``CLUSTER NODES``)."""
        for server in self.servers:
            if not server.running():
                continue
            try:
                with AdminClient(server.url) as client:
                    reply = client.command("CLUSTER", "NODES")
            except BrokerUnavailable:
                continue
            text = reply.decode() if isinstance(reply, bytes) else str(reply)
            return [NodeRole.parse(line) for line in text.splitlines() if line]
        raise BrokerUnavailable("no node of the local cluster answers")

    def server_at(self, port: int) -> RedisServer:
        """The node whose client port is ``port``."""
        for server in self.servers:
            if self.port_of(server) == port:
                return server
        raise KeyError(port)

    def primary_of(self, key: str) -> RedisServer:
        """The node that serves ``key``'s slot now."""
        with AdminClient(next(s for s in self.servers if s.running()).url) as client:
            slot = int(client.command("CLUSTER", "KEYSLOT", key))
        for role in self.roles():
            if role.primary and any(lo <= slot <= hi for lo, hi in role.slots):
                return self.server_at(role.port)
        raise BrokerUnavailable(f"no primary serves slot {slot} (of {key!r})")

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        """The replicas of ``primary``, as the cluster knows them now."""
        roles = self.roles()
        port = self.port_of(primary)
        (me,) = [r for r in roles if r.port == port]
        return [self.server_at(r.port) for r in roles if r.primary_id == me.id]

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Start every node, create the cluster, and wait for ``cluster_state:ok``."""
        for server in self.servers:
            _start_node(server)
        addresses = [f"127.0.0.1:{self.port_of(s)}" for s in self.servers]
        tls = [] if self.tls is None else ["--tls", "--cacert", str(self.tls.ca)]
        created = subprocess.run(
            [find_redis_cli(), *tls, "--cluster", "create", *addresses]
            + ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
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
        """Wait until every running node reports ``cluster_state:ok`` and knows all
        slots, and every running replica's link to its primary is up."""
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
                replication = client.command("INFO", "replication")
        except (BrokerUnavailable, OSError):
            return False
        text = info.decode() if isinstance(info, bytes) else str(info)
        role = (
            replication.decode() if isinstance(replication, bytes) else str(replication)
        )
        synced = "role:master" in role or "master_link_status:up" in role
        return (
            "cluster_state:ok" in text
            and "cluster_slots_assigned:16384" in text
            and synced
        )

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
            for option in ("--cluster-port", "--tls-port"):
                if option in args:
                    args[args.index(option) + 1] = str(free_port())
            server.extra_args = tuple(args)
            server._port = None  # command_line() picks a new one
