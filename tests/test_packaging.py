"""Adding redrelay to another project (issue 16, item 7): the wheel that ``scripts/wheel``
builds installs into a fresh virtualenv outside the repository, with the ``flask``
extra, and a Flask app written from docs/flask.md runs its ``flask relay`` commands.

Slow (a wheel build and a pip install: about 10 s here); the packages come from the
machine's configured index, as they would for a user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from redrelay import Relay

ROOT = Path(__file__).resolve().parent.parent

APP = textwrap.dedent(
    """
    from flask import Flask
    from redrelay.contrib.flask import RedRelay

    broker = RedRelay()

    @broker.consumer("emails")
    def send_email(message):
        print("sending", message.body)

    def create_app():
        app = Flask(__name__)
        app.config.from_prefixed_env()   # FLASK_REDRELAY_URL, FLASK_REDRELAY_NAMESPACE
        broker.init_app(app)
        return app
    """
)


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_virtualenv_outside_the_repo(
    tmp_path: Path, relay: Relay, redrelay_url: str
) -> None:
    assert not tmp_path.is_relative_to(ROOT)
    wheel = run([str(ROOT / "scripts" / "wheel"), str(tmp_path / "dist")], ROOT)
    wheel_path = wheel.strip().splitlines()[-1]
    assert wheel_path.endswith(".whl")
    # A virtualenv without pip of its own (its ensurepip took 10 s on a busy machine):
    # this interpreter's pip installs into it, as `pip --python` does for any target.
    run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
        tmp_path,
    )
    bin_dir = tmp_path / "venv" / "bin"
    pip = [sys.executable, "-m", "pip", "--python", str(bin_dir / "python")]
    run([*pip, "install", "-q", f"{wheel_path}[flask]"], tmp_path)

    (tmp_path / "shop.py").write_text(APP)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDRELAY_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(
        FLASK_REDRELAY_URL=redrelay_url,
        FLASK_REDRELAY_NAMESPACE=relay.namespace,
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
    )
    where = run(
        [str(bin_dir / "python"), "-c", "import redrelay; print(redrelay.__file__)"],
        tmp_path,
        env,
    )
    assert str(tmp_path / "venv") in where  # the installed copy, not this checkout
    run(
        ["flask", "--app", "shop", "relay", "put", "emails", '{"to": "ada"}'],
        tmp_path,
        env,
    )
    stats = run(["flask", "--app", "shop", "relay", "stats"], tmp_path, env)
    assert "emails" in stats
    assert relay.queue("emails").stats().ready == 1
