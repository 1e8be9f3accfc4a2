"""Where the embedded server starts, and who may start it (issue 16, item 8).

The data directory belongs to the app (beside the module that creates the Relay), a
read-only command never starts a server, and ``embedded=False`` makes a missing URL an
error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from redrelay import ConfigurationError, Relay, embedded
from redrelay._server import _socket_path_for, pid_alive
from redrelay.cli import cli

APP = textwrap.dedent(
    """
    from redrelay import Relay

    relay = Relay(namespace="shop")
    """
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder holding an app module ``shopapp.py``; its embedded server is stopped
    at teardown."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "shopapp.py").write_text(APP)
    try:
        yield folder
    finally:
        data = folder / ".redrelay"
        state = embedded._read_state(data)
        embedded.stop(data)
        if state is not None and pid_alive(state["pid"]):
            os.kill(state["pid"], signal.SIGKILL)


def run_python(code: str, cwd: Path, env: dict[str, str], app: Path) -> str:
    env = dict(env, PYTHONPATH=os.pathsep.join([str(app), env["PYTHONPATH"]]))
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_data_dir_is_beside_the_app_module_whatever_the_directory(
    app_dir: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """A web process and a worker started from different folders share one server."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = "from shopapp import relay; print(relay.connection.url)"
    first = run_python(code, app_dir, subprocess_env, app_dir)
    second = run_python(code, elsewhere, subprocess_env, app_dir)
    # Inside the data dir, or /tmp/redrelay-<hash>/ when that path is too long for a socket.
    assert first == second == f"unix://{_socket_path_for(app_dir / '.redrelay')}"
    assert not (elsewhere / ".redrelay").exists()


def test_a_relay_made_in_a_repl_uses_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # exec without __file__: what a REPL or `python -c` is.
    scope: dict[str, object] = {"Relay": Relay}
    exec("relay = Relay()", scope)
    assert scope["relay"].data_dir == str(tmp_path / ".redrelay")  # type: ignore[attr-defined]
    monkeypatch.setenv("REDRELAY_DATA_DIR", str(tmp_path / "data"))
    assert Relay().data_dir == str(tmp_path / "data")
    assert Relay(data_dir="x").data_dir == "x"


@pytest.mark.parametrize(
    "args",
    [
        ["stats"],
        ["doctor"],
        ["dead", "list", "emails"],
        ["tail", "news", "-n", "1"],
        ["publish", "news", "1"],
        ["topics"],
    ],
)
def test_read_only_commands_never_start_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "no embedded redis-server running" in result.output
    assert "--url" in result.output
    assert not (tmp_path / ".redrelay").exists()


def test_commands_find_the_apps_running_server_from_a_folder_below(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch, subprocess_env: dict[str, str]
) -> None:
    code = "from shopapp import relay; relay.queue('emails').put(1)"
    run_python(code, app_dir, subprocess_env, app_dir)
    below = app_dir / "templates"
    below.mkdir()
    monkeypatch.chdir(below)
    result = CliRunner().invoke(cli, ["--namespace", "shop", "stats"])
    assert result.exit_code == 0, result.output
    assert "emails" in result.output
    assert not (below / ".redrelay").exists()
    # --data-dir names it from anywhere.
    monkeypatch.chdir(app_dir.parent)
    data = str(app_dir / ".redrelay")
    result = CliRunner().invoke(
        cli, ["--data-dir", data, "--namespace", "shop", "stats"]
    )
    assert result.exit_code == 0, result.output
    assert "emails" in result.output


def test_without_a_url_embedded_false_is_an_error_naming_the_setting(
    tmp_path: Path,
) -> None:
    relay = Relay(embedded=False, data_dir=str(tmp_path))
    with pytest.raises(ConfigurationError, match="REDRELAY_URL") as info:
        relay.queue("emails").put(1)
    assert "embedded=True" in str(info.value)
    assert not (tmp_path / "server.json").exists()


def test_embedded_false_uses_the_url_when_there_is_one(
    redrelay_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDRELAY_URL", redrelay_url)
    with Relay(embedded=False) as relay:
        assert relay.connection.url == redrelay_url


def test_embedded_stop_finds_the_apps_server_by_group_option_or_from_below(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = app_dir / ".redrelay"
    embedded.embedded_url(data)
    monkeypatch.chdir(app_dir.parent)
    status = CliRunner().invoke(cli, ["--data-dir", str(data), "embedded", "status"])
    assert status.exit_code == 0 and "running" in status.output
    stopped = CliRunner().invoke(cli, ["--data-dir", str(data), "embedded", "stop"])
    assert "embedded redis-server stopped" in stopped.output
    assert embedded.running_url(data) is None
    embedded.embedded_url(data)
    below = app_dir / "static"
    below.mkdir()
    monkeypatch.chdir(below)
    stopped = CliRunner().invoke(cli, ["embedded", "stop"])
    assert "embedded redis-server stopped" in stopped.output, stopped.output
    assert embedded.running_url(data) is None
