"""The embedded development server: shared, daemonized, announced once."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redrelay import embedded
from redrelay._server import AdminClient, pid_alive

#: Started by a subprocess: wait for a "go" file, then ask for the URL twice.
CHILD = textwrap.dedent(
    """
    import logging, os, sys, time
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    go = sys.argv[1]
    while not os.path.exists(go):
        time.sleep(0.005)
    from redrelay.embedded import embedded_url
    print(embedded_url())
    print(embedded_url())
    """
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose embedded server is stopped at teardown, come what may."""
    directory = tmp_path / "data"
    try:
        yield directory
    finally:
        state = embedded._read_state(directory.absolute())
        embedded.stop(directory)
        if state is not None and pid_alive(state["pid"]):
            os.kill(state["pid"], signal.SIGKILL)


def call(url: str, *args: str | int) -> object:
    with AdminClient(url) as client:
        return client.command(*args)


def server_pids(directory: Path) -> list[int]:
    """Pids of live redis-servers on ``directory``'s socket.

    redis-server rewrites its process title to ``redis-server unixsocket:<path>``
    when it listens on no TCP port.
    """
    title = f"unixsocket:{directory / 'redis.sock'}"
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,stat=,args="],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pids = []
    for line in out.splitlines():
        pid, state, args = line.split(None, 2)
        if not state.startswith("Z") and args.split()[-1:] == [title]:
            pids.append(int(pid))
    return pids


def test_starts_a_daemonized_server_with_aof(data_dir: Path) -> None:
    url = embedded.embedded_url(data_dir)
    assert url == f"unix://{data_dir / 'redis.sock'}"
    assert call(url, "PING") == b"PONG"
    assert call(url, "CONFIG", "GET", "appendonly") == [b"appendonly", b"yes"]
    assert call(url, "CONFIG", "GET", "appendfsync") == [b"appendfsync", b"everysec"]
    state = json.loads((data_dir / "server.json").read_text())
    assert state["url"] == url
    assert pid_alive(state["pid"])
    assert state["version"].count(".") == 2
    assert os.access(state["binary"], os.X_OK)
    assert (data_dir / ".gitignore").read_text().endswith("*\n")
    assert server_pids(data_dir) == [state["pid"]]


def test_the_same_server_is_returned_again(data_dir: Path) -> None:
    first = embedded.embedded_url(data_dir)
    pid = json.loads((data_dir / "server.json").read_text())["pid"]
    assert embedded.embedded_url(data_dir) == first
    assert json.loads((data_dir / "server.json").read_text())["pid"] == pid


def test_announced_once_per_process(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="redrelay.embedded")
    url = embedded.embedded_url(data_dir)
    embedded.embedded_url(data_dir)
    records = [r for r in caplog.records if r.name == "redrelay.embedded"]
    assert len(records) == 1
    line = records[0].getMessage()
    assert records[0].levelno == logging.WARNING
    assert re.match(r"redrelay: started embedded redis-server \d+\.\d+\.\d+ at ", line)
    assert url in line
    assert "AOF on" in line
    assert "REDRELAY_URL" in line
    # Not a .redrelay the CLI finds from here (a new user's Flask instance folder):
    # the command to stop it names it.
    assert f"stop it with 'redrelay --data-dir {data_dir} embedded stop'" in line


def test_the_stop_hint_of_a_redrelay_folder_here_needs_no_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / ".redrelay"
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # a folder below: the CLI finds it too
    caplog.set_level(logging.WARNING, logger="redrelay.embedded")
    try:
        embedded.embedded_url(directory)
    finally:
        embedded.stop(directory)
    [record] = [r for r in caplog.records if r.name == "redrelay.embedded"]
    assert "stop it with 'redrelay embedded stop'" in record.getMessage()


def test_data_dir_from_the_environment(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDRELAY_DATA_DIR", str(data_dir))
    url = embedded.embedded_url()
    assert url == f"unix://{data_dir / 'redis.sock'}"
    assert embedded.status() is not None


def test_default_data_dir_is_dot_redrelay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger="redrelay.embedded")
    try:
        url = embedded.embedded_url()
        assert url == f"unix://{tmp_path / '.redrelay' / 'redis.sock'}"
        assert "data in ./.redrelay," in caplog.records[0].getMessage()
    finally:
        assert embedded.stop()


def test_status(data_dir: Path) -> None:
    assert embedded.status(data_dir) is None
    url = embedded.embedded_url(data_dir)
    call(url, "SET", "a", "1")
    call(url, "SET", "b", "2")
    info = embedded.status(data_dir)
    assert info is not None
    state = json.loads((data_dir / "server.json").read_text())
    assert info["pid"] == state["pid"]
    assert info["url"] == url
    assert info["version"] == state["version"]
    assert info["data_dir"] == str(data_dir)
    assert info["keys"] == 2
    assert info["used_memory"] > 0
    assert info["aof"] is True


def test_stop(data_dir: Path) -> None:
    assert embedded.stop(data_dir) is False
    embedded.embedded_url(data_dir)
    pid = json.loads((data_dir / "server.json").read_text())["pid"]
    assert embedded.stop(data_dir) is True
    assert not pid_alive(pid)
    assert not (data_dir / "server.json").exists()
    assert embedded.status(data_dir) is None
    assert embedded.stop(data_dir) is False


def test_data_survives_stop_and_start(data_dir: Path) -> None:
    url = embedded.embedded_url(data_dir)
    call(url, "RPUSH", "q", "hello")
    embedded.stop(data_dir)
    assert embedded.embedded_url(data_dir) == url
    assert call(url, "LRANGE", "q", 0, -1) == [b"hello"]


def test_a_crashed_server_is_started_again(data_dir: Path) -> None:
    url = embedded.embedded_url(data_dir)
    pid = json.loads((data_dir / "server.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10  # the crash happened a while ago
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"redis-server {pid} outlived SIGKILL 10 s"
        time.sleep(0.001)
    assert embedded.embedded_url(data_dir) == url
    new_pid = json.loads((data_dir / "server.json").read_text())["pid"]
    assert new_pid != pid
    assert call(url, "PING") == b"PONG"


def test_a_stale_state_file_is_replaced(data_dir: Path) -> None:
    data_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"pid": dead.pid, "url": f"unix://{data_dir / 'redis.sock'}"}
    (data_dir / "server.json").write_text(json.dumps(stale))
    (data_dir / "redis.sock").touch()  # a socket file left by a crash
    assert embedded.status(data_dir) is None
    url = embedded.embedded_url(data_dir)
    assert call(url, "PING") == b"PONG"
    assert json.loads((data_dir / "server.json").read_text())["pid"] != dead.pid


def test_a_server_without_state_file_is_adopted(data_dir: Path) -> None:
    url = embedded.embedded_url(data_dir)
    pid = json.loads((data_dir / "server.json").read_text())["pid"]
    (data_dir / "server.json").unlink()
    assert embedded.embedded_url(data_dir) == url
    assert json.loads((data_dir / "server.json").read_text())["pid"] == pid
    assert server_pids(data_dir) == [pid]


def test_stop_without_state_file(data_dir: Path) -> None:
    embedded.embedded_url(data_dir)
    pid = json.loads((data_dir / "server.json").read_text())["pid"]
    (data_dir / "server.json").unlink()
    assert embedded.stop(data_dir) is True
    assert not pid_alive(pid)


def test_a_long_data_dir_path(tmp_path: Path) -> None:
    directory = tmp_path / ("long-" * 20) / ("path-" * 10)
    try:
        url = embedded.embedded_url(directory)
        assert url.startswith("unix:///tmp/redrelay-")
        call(url, "SET", "k", "v")
        assert {"appendonly.aof", "appendonlydir"} & set(os.listdir(directory))
        status = embedded.status(directory)
        assert status is not None and status["keys"] == 1
    finally:
        assert embedded.stop(directory)
    socket_dir = Path(url.removeprefix("unix://")).parent
    assert not (socket_dir / "redis.sock").exists()


def test_processes_share_one_server(
    data_dir: Path, subprocess_env: dict[str, str]
) -> None:
    """Processes started together share one server; each announces it once."""
    env = dict(subprocess_env, REDRELAY_DATA_DIR=str(data_dir))
    go = data_dir.parent / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    go.touch()
    outputs = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0] * 4, outputs

    urls = {line for out, _ in outputs for line in out.split()}
    assert urls == {f"unix://{data_dir / 'redis.sock'}"}
    announcements = [
        [line.split(" ", 1) for line in err.splitlines() if " redrelay: " in line]
        for _, err in outputs
    ]
    assert all(len(lines) == 1 for lines in announcements), outputs
    # (level, verb): only the process that started it says so at WARNING (printed by
    # default); the others, joining it, at INFO.
    seen = sorted((lines[0][0], lines[0][1].split()[1]) for lines in announcements)
    assert seen == [("INFO", "using")] * 3 + [("WARNING", "started")]

    # The server outlived the process that started it, and there is only one.
    state = json.loads((data_dir / "server.json").read_text())
    assert server_pids(data_dir) == [state["pid"]]
    assert call(state["url"], "PING") == b"PONG"
