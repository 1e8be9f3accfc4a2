"""``redrelay status``, ``result`` and ``cancel`` through click's CliRunner."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import CliRunner

from redrelay import Message, Relay
from redrelay.cli import cli


def test_status_result_and_cancel(
    make_relay: Callable[..., Relay], redrelay_url: str
) -> None:
    relay = make_relay(retries=0)

    @relay.consumer("jobs", result_ttl=60)
    def job(message: Message) -> object:
        if message.body == "boom":
            raise KeyError("missing")
        return {"echo": message.body}

    q = relay.queue("jobs")
    ok, bad, later = q.put("hi"), q.put("boom"), q.put("x", delay=60)

    def run(*args: str) -> tuple[int, str, str]:
        got = CliRunner().invoke(
            cli, ["--url", redrelay_url, "--namespace", relay.namespace, *args]
        )
        return got.exit_code, got.stdout, got.stderr

    assert run("status", "jobs", ok) == (0, "queued\n", "")
    assert run("result", "jobs", ok)[0] == 3  # not finished, and --timeout 0
    assert run("cancel", "jobs", later) == (0, "cancelled\n", "")
    assert run("cancel", "jobs", later)[0] == 1  # already cancelled
    relay.drain(["jobs"], timeout=10, raise_on_failure=False)
    code, out, _ = run("result", "jobs", ok, "--timeout", "5")
    assert (code, out) == (0, '{\n  "echo": "hi"\n}\n')
    code, _, err = run("result", "jobs", bad)
    assert code == 1 and "builtins.KeyError" in err and "Traceback" in err
    assert run("status", "jobs", later)[1] == "cancelled\n"
    code, _, err = run("result", "jobs", "nope")
    assert (code, "unknown" in err) == (2, True)
