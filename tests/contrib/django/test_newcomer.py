"""What new Django users tripped over (issue 16, items 8, 9, 13, 14): ``START_IN_PROCESS``
runs consumers in the processes that serve requests and only there; the embedded server
only when asked; read-only commands start nothing; ``relay_queue``; no tracebacks
without a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.request
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from redrelay import ConfigurationError, Relay
from redrelay._server import free_port
from redrelay.contrib.django import get_relay
from redrelay.contrib.django.conf import relay_settings

from ...processes import ROOT, python_env, wait_for
from .conftest import runs


def django_env(url: str, namespace: str, **extra: str) -> dict[str, str]:
    return python_env(
        {
            "DJANGO_SETTINGS_MODULE": "tests.contrib.django.settings",
            "RRDJ_URL": url,
            "RRDJ_NAMESPACE": namespace,
            **extra,
        }
    )


@pytest.mark.django_db(transaction=True)
def test_the_first_request_starts_them_and_its_publish_is_heard(
    settings: Any, namespace: str, app_relay: Relay
) -> None:
    settings.REDRELAY = {
        "default": {**settings.REDRELAY["default"], "START_IN_PROCESS": True}
    }
    relay = get_relay()
    assert relay._runner is None  # nothing before a request
    assert Client().get("/order/").status_code == 200
    heard = [r for r in runs(relay) if r[0] == "news"]
    wait_for(lambda: [r for r in runs(relay) if r[0] == "news"], 10, what="heard")
    heard = [r for r in runs(relay) if r[0] == "news"]
    assert [(r[2], r[3]) for r in heard] == [(os.getpid(), "heard")]
    wait_for(lambda: ("jobs", "done") in {(r[0], r[3]) for r in runs(relay)}, 10)
    Client().get("/order/?fail=1")  # a second request starts nothing more
    assert relay.publish("news", {"n": 2}) == 1  # one subscription in this process


def test_not_started_without_the_setting(namespace: str) -> None:
    Client().get("/events/bad name/")  # any request
    assert get_relay()._runner is None


def test_manage_py_shell_starts_nothing(redrelay_url: str, namespace: str) -> None:
    code = (
        "from redrelay.contrib.django import get_relay; "
        "print('receivers', get_relay().publish('news', 1))"
    )
    done = subprocess.run(
        [sys.executable, "-m", "django", "shell", "-c", code],
        cwd=ROOT,
        env=django_env(redrelay_url, namespace, RRDJ_IN_PROCESS="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "receivers 0" in done.stdout


def test_runserver_runs_them_in_the_serving_child_only(
    redrelay_url: str, namespace: str, app_relay: Relay
) -> None:
    """The autoreloader's parent imports the project too: it must not subscribe."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=django_env(redrelay_url, namespace, RRDJ_IN_PROCESS="1"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:

            def get() -> int:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/order/", timeout=10
                    ) as response:
                        return int(response.status)
                except OSError:
                    return 0

            wait_for(lambda: get() == 200, 60, what="runserver answers")
            wait_for(lambda: [r for r in runs(app_relay) if r[0] == "news"], 10)
            heard = [r for r in runs(app_relay) if r[0] == "news"]
            assert len(heard) == 1, heard
            assert heard[0][2] != server.pid  # the child, not the autoreloader parent
            assert app_relay.publish("news", {"n": 2}) == 1
        finally:
            os.killpg(server.pid, 15)
            server.wait(20)
            log.seek(0)
            output = log.read().decode(errors="replace")
        assert "Traceback" not in output, output


def test_without_a_url_and_debug_off_it_is_an_error_unless_embedded(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.DEBUG = False
    settings.BASE_DIR = tmp_path
    settings.REDRELAY = {"default": {}}
    assert relay_settings().relay_kwargs()["embedded"] is True  # the test runner's
    monkeypatch.delattr("django.core.mail.outbox")  # as in production
    from redrelay.contrib.django.relays import reset_relays

    reset_relays()
    with pytest.raises(ConfigurationError, match="REDRELAY_URL"):
        get_relay().queue("jobs").put(1)
    assert not (tmp_path / ".redrelay").exists()
    settings.REDRELAY = {"default": {"EMBEDDED": True}}
    kwargs = relay_settings().relay_kwargs()
    assert kwargs["embedded"] is True
    assert kwargs["data_dir"] == str(tmp_path / ".redrelay")  # beside the project


def test_read_only_commands_never_start_the_embedded_server(
    settings: Any, tmp_path: Path
) -> None:
    settings.DEBUG = True
    settings.BASE_DIR = tmp_path
    settings.REDRELAY = {"default": {}}
    for command in (["relay_stats"], ["relay_dead", "list", "jobs"]):
        with pytest.raises(CommandError, match="never starts one"):
            call_command(*command, stdout=StringIO())
    assert not (tmp_path / ".redrelay").exists()


def test_relay_dead_purge_without_a_terminal_is_one_line(
    app_relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_relay.queue("jobs").put(1)

    def no_terminal(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", no_terminal)
    with pytest.raises(CommandError, match="pass --noinput; nothing was deleted"):
        call_command("relay_dead", "purge", "jobs", "--all", stdout=StringIO())


def test_relay_queue_purge_and_delete(
    app_relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = app_relay.queue("jobs")
    q.put_many([1, 2])
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="cancelled; nothing was changed"):
        call_command("relay_queue", "purge", "jobs", stdout=StringIO())
    assert q.stats().ready == 2
    out = StringIO()
    call_command("relay_queue", "purge", "jobs", "--noinput", stdout=out)
    assert "purged 2 ready messages of 'jobs'" in out.getvalue()
    q.put(3)
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    out = StringIO()
    call_command("relay_queue", "delete", "jobs", stdout=out)
    assert "deleted queue 'jobs' (1 messages)" in out.getvalue()
    assert app_relay.stats() == []
