"""What new Flask users tripped over (issue 16, items 8, 9 and 14): the embedded server
only when asked (in debug, testing, or REDRELAY_EMBEDDED) and in the app's instance
folder; in-process subscribers that hear the first request's publish."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from redrelay import ConfigurationError, Message
from redrelay.contrib.flask import RedRelay

from ...processes import wait_for
from .conftest import MakeApp


def bare_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask("shop", instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    RedRelay(app)
    return app


def test_without_a_url_outside_debug_and_testing_it_is_an_error(tmp_path: Path) -> None:
    app = bare_app(tmp_path)
    relay = app.extensions["redrelay"].relay
    assert relay.embedded is False
    with pytest.raises(ConfigurationError, match="REDRELAY_URL") as info:
        relay.queue("emails").put(1)
    assert "REDRELAY_EMBEDDED = True" in str(info.value)
    assert not (tmp_path / "instance").exists()  # no server was started


@pytest.mark.parametrize(
    "config", [{"TESTING": True}, {"DEBUG": True}, {"REDRELAY_EMBEDDED": "true"}]
)
def test_embedded_in_debug_testing_or_when_asked_in_the_instance_folder(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    app = bare_app(tmp_path, **config)
    relay = app.extensions["redrelay"].relay
    assert relay.embedded is True
    assert relay.data_dir == str(tmp_path / "instance" / ".redrelay")


def test_data_dir_from_the_environment_or_the_setting_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDRELAY_DATA_DIR", str(tmp_path / "env"))
    assert bare_app(tmp_path).extensions["redrelay"].relay.data_dir == str(
        tmp_path / "env"
    )
    app = bare_app(tmp_path, REDRELAY_DATA_DIR=str(tmp_path / "cfg"))
    assert app.extensions["redrelay"].relay.data_dir == str(tmp_path / "cfg")


def test_the_first_requests_publish_reaches_in_process_subscribers(
    make_app: MakeApp,
) -> None:
    ext = RedRelay()
    heard: list[tuple[int, Any]] = []

    @ext.subscriber("news")
    def on_news(message: Message) -> None:
        heard.append((os.getpid(), message.body))

    app = make_app(ext, REDRELAY_START_IN_PROCESS=True)

    @app.get("/")
    def index() -> str:
        return str(ext.publish("news", "first"))

    response = app.test_client().get("/")
    assert response.text == "1"  # one subscriber was listening when it published
    wait_for(lambda: heard, 10, what="the first request's message")
    assert heard == [(os.getpid(), "first")]
    assert app.test_client().get("/").text == "1"  # started once per process


# -- flask relay, as a user runs it (a real `flask` process) --------------------------------

APPS = {
    "noinit": "from flask import Flask\napp = Flask(__name__)\n",
    "badurl": (
        "from flask import Flask\nfrom redrelay.contrib.flask import RedRelay\n"
        "def create_app():\n    app = Flask(__name__)\n"
        "    app.config['REDRELAY_URL'] = 'http://localhost:6379'\n"
        "    RedRelay(app)\n    return app\n"
    ),
    "prod": (
        "from flask import Flask\nfrom redrelay.contrib.flask import RedRelay\n"
        "app = Flask(__name__)\nRedRelay(app)\n"
    ),
    "dev": (
        "from flask import Flask\nfrom redrelay.contrib.flask import RedRelay\n"
        "app = Flask(__name__)\napp.config['REDRELAY_EMBEDDED'] = True\nRedRelay(app)\n"
    ),
}


def flask(tmp_path: Path, app: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / f"{app}.py").write_text(APPS[app])
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDRELAY_")}
    src = str(Path(__file__).resolve().parents[3] / "src")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), src])
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", app, "relay", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("app", "text"),
    [
        ("noinit", "has no RedRelay: call broker.init_app(app)"),
        ("badurl", "unsupported Redis URL 'http://localhost:6379'"),
        ("prod", "no Redis URL: set REDRELAY_URL"),
    ],
)
def test_flask_relay_errors_are_one_line(tmp_path: Path, app: str, text: str) -> None:
    done = flask(tmp_path, app, "stats")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0]


def test_flask_relay_read_only_commands_never_start_the_embedded_server(
    tmp_path: Path,
) -> None:
    done = flask(tmp_path, "dev", "stats")
    assert done.returncode == 2
    assert "never starts one" in done.stderr
    assert not (tmp_path / "instance").exists()
    help_text = flask(tmp_path, "dev", "worker", "-v", "--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "-v, --verbose" in help_text.stdout
