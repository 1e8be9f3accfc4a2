"""The ``redrelay`` command line, against the session's real ``redis-server``.

In-process commands run through click's CliRunner; ``worker`` and ``tail`` run as real
subprocesses, so signals and exit statuses are the real ones.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from redrelay import Message, Relay
from redrelay._server import RedisServer, free_port
from redrelay.cli import cli, format_age, table
from redrelay.handlers import Subscriber
from redrelay.listener import Listener
from redrelay.worker.runner import Runner

from .processes import wait_for as _wait_for

ROOT = Path(__file__).resolve().parent.parent


# -- helpers ------------------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, what: str = ""
) -> Any:
    """:func:`tests.worker.helpers.wait_for` with this module's default timeout."""
    return _wait_for(predicate, timeout, what=what)


class Proc:
    """A ``python -m redrelay ...`` subprocess whose output lines are collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "redrelay", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.readers = [
            threading.Thread(target=self._read, args=(name,), daemon=True)
            for name in ("stdout", "stderr")
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.popen, name)
        for line in stream:
            self.lines[name].append(line.rstrip("\n"))
            if name == "stdout":
                self.out.put(line.rstrip("\n"))

    def wait_line(
        self, pattern: str, *, stream: str = "stderr", timeout: float = 15.0
    ) -> str:
        """The first line of ``stream`` matching ``pattern`` (waiting for it, bounded)."""
        found = wait_for(
            lambda: next(
                (ln for ln in self.lines[stream] if re.search(pattern, ln)), None
            ),
            timeout,
            f"{pattern!r} on {stream}: {self.lines}",
        )
        return str(found)

    def next_stdout(self, timeout: float = 10.0) -> str:
        return self.out.get(timeout=timeout)

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        return self.popen.wait(timeout)

    def close(self) -> None:
        # SIGTERM first: a `--processes` supervisor killed outright would orphan its
        # children, which run in sessions of their own.
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        for reader in self.readers:
            reader.join(5)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def start(subprocess_env: dict[str, str]) -> Iterator[Callable[..., Proc]]:
    """Start ``python -m redrelay ARGS`` subprocesses; every one is killed at teardown."""
    procs: list[Proc] = []

    def factory(*args: str, **env: str) -> Proc:
        full = dict(subprocess_env)
        full["PYTHONPATH"] = os.pathsep.join([str(ROOT), full.get("PYTHONPATH", "")])
        full.update(env)
        proc = Proc(list(args), full)
        procs.append(proc)
        return proc

    yield factory
    for proc in procs:
        proc.close()


@pytest.fixture
def invoke(redrelay_url: str) -> Callable[..., Result]:
    """Run ``redrelay --url <test server> ARGS`` in-process."""

    def run(
        *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        return CliRunner().invoke(
            cli, ["--url", redrelay_url, *args], input=input, env=env
        )

    return run


def row(output: str, first: str) -> list[str]:
    """The cells of the table line whose first cell is ``first``."""
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{output}")


def one_error_line(result: Result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def failing_relay(make_relay: Callable[..., Relay], queue_name: str = "jobs") -> Relay:
    relay = make_relay(retries=1, backoff=0.0)

    @relay.consumer(queue_name)
    def fail(message: Message) -> None:
        raise RuntimeError(f"boom {message.body}")

    return relay


# -- output helpers -----------------------------------------------------------------------


def test_format_age() -> None:
    assert [format_age(s) for s in (None, 4.24, 185, 7800, 3 * 86400 + 4 * 3600)] == [
        "-",
        "4.2s",
        "3m05s",
        "2h10m",
        "3d04h",
    ]


def test_table_aligns_numbers_right() -> None:
    text = table(["name", "n"], [["a", 5], ["long", 123]])
    assert text.splitlines() == ["name    n", "a       5", "long  123"]


# -- stats ---------------------------------------------------------------------------------


def test_stats_shows_depths_consumers_and_counters(
    make_relay: Callable[..., Relay], invoke: Callable[..., Result]
) -> None:
    relay = make_relay(retries=0)
    seen: list[str] = []

    @relay.consumer("work")
    def handle(message: Message) -> None:
        seen.append(message.body)
        if message.body == "bad":
            raise RuntimeError("bad body")

    relay.queue("work").put_many(["a", "b", "bad"])
    relay.drain(timeout=10, raise_on_failure=False)
    emails = relay.queue("emails")
    emails.put_many([{"n": 1}, {"n": 2}, {"n": 3}])
    emails.put({"n": 4}, delay=60)

    result = invoke("--namespace", relay.namespace, "stats")
    assert result.exit_code == 0, result.output
    # queue  ready  delayed  in flight  dead  consumers  oldest
    assert row(result.output, "emails")[1:6] == ["3", "1", "0", "0", "0"]
    assert row(result.output, "work")[1:7] == ["0", "0", "0", "1", "0", "-"]
    assert re.match(r"\d+\.\ds$", row(result.output, "emails")[6])
    # counters  acked  retried  dead  recovered  rejected (the second table's rows)
    counter_rows = result.output.split("\n\n")[1]
    assert row(counter_rows, "work")[1:] == ["2", "0", "1", "0", "0"]
    assert row(counter_rows, "emails")[1:] == ["0", "0", "0", "0", "0"]

    as_json = invoke("--namespace", relay.namespace, "stats", "--json", "work")
    assert as_json.exit_code == 0, as_json.output
    (work,) = json.loads(as_json.output)
    assert work["name"] == "work"
    assert (work["ready"], work["dead"], work["consumers"]) == (0, 1, 0)
    assert work["counters"]["acked"] == 2 and work["counters"]["dead"] == 1


def test_stats_counts_consumers_and_in_flight(
    make_relay: Callable[..., Relay], invoke: Callable[..., Result]
) -> None:
    relay = make_relay(concurrency=1, prefetch=5)
    release = threading.Event()
    running = threading.Event()

    @relay.consumer("slow")
    def slow(message: Message) -> None:
        running.set()
        release.wait(10)

    relay.queue("slow").put_many(list(range(8)))
    relay.start()
    try:
        assert running.wait(10)
        result = invoke("--namespace", relay.namespace, "stats", "slow")
        assert result.exit_code == 0, result.output
        # 5 fetched (1 running, 4 waiting on the same thread), 3 still ready, 1 consumer
        assert row(result.output, "slow")[1:6] == ["3", "0", "5", "0", "1"]
    finally:
        release.set()
        relay.stop()


def test_stats_empty_namespace_and_unknown_queue(
    relay: Relay, invoke: Callable[..., Result]
) -> None:
    result = invoke("--namespace", relay.namespace, "stats")
    assert result.exit_code == 0
    assert "no queues in namespace" in result.output
    relay.queue("known").put(1)
    unknown = invoke("--namespace", relay.namespace, "stats", "nope")
    assert unknown.exit_code == 2
    assert "no queue 'nope'" in one_error_line(unknown)
    assert "known: known" in unknown.output


def test_url_and_namespace_from_environment_and_subcommand(
    relay: Relay, redrelay_url: str
) -> None:
    relay.queue("envq").put_many([1, 2])
    runner = CliRunner()
    from_env = runner.invoke(
        cli,
        ["stats"],
        env={"REDRELAY_URL": redrelay_url, "REDRELAY_NAMESPACE": relay.namespace},
    )
    assert from_env.exit_code == 0, from_env.output
    assert row(from_env.output, "envq")[1] == "2"
    # options after the subcommand override the group's and the environment's
    overridden = runner.invoke(
        cli,
        ["stats", "--url", redrelay_url, "--namespace", relay.namespace],
        env={"REDRELAY_URL": "redis://127.0.0.1:1/0", "REDRELAY_NAMESPACE": "other"},
    )
    assert overridden.exit_code == 0, overridden.output
    assert row(overridden.output, "envq")[1] == "2"


# -- errors --------------------------------------------------------------------------------


def test_unreachable_redis_is_one_line_exit_2() -> None:
    port = free_port()
    for args in (["stats"], ["doctor"], ["put", "q", "1"], ["publish", "c", "1"]):
        result = CliRunner().invoke(
            cli, ["--url", f"redis://127.0.0.1:{port}/0", *args]
        )
        assert result.exit_code == 2, (args, result.output)
        line = one_error_line(result)
        assert "cannot reach Redis" in line and "--url" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--url", "http://example.com", "stats"], "unsupported Redis URL"),
        (["put", "bad name", "1"], "invalid queue name"),
        (["put", "q", "{not json"], "not valid JSON"),
        (["put", "q", "1", "--header", "novalue"], "is not KEY=VALUE"),
        (["dead", "requeue", "q"], "give the ids"),
        (["worker", "tests.apps.worker_app:relay", "--url", "http://x"], "unsupported"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    invoke: Callable[..., Result], relay: Relay, args: list[str], needle: str
) -> None:
    relay.queue("q").put(1)
    result = invoke("--namespace", relay.namespace, *args)
    assert result.exit_code == 2, result.output
    assert needle in one_error_line(result)


# -- put and publish -----------------------------------------------------------------------


def test_put_prints_the_id_and_enqueues(
    relay: Relay, invoke: Callable[..., Result]
) -> None:
    ns = ("--namespace", relay.namespace)
    result = invoke(
        *ns, "put", "emails", '{"to": "ada@example.com"}', "-H", "trace=abc"
    )
    assert result.exit_code == 0, result.output
    msg_id = result.output.strip()
    raw = invoke(*ns, "put", "emails", "plain text", "--raw")
    stdin = invoke(*ns, "put", "emails", "-", input="[1, 2]")
    assert raw.exit_code == 0 and stdin.exit_code == 0, raw.output + stdin.output
    messages = relay.queue("emails").peek(10)
    assert [(m.id, m.body, m.headers) for m in messages] == [
        (msg_id, {"to": "ada@example.com"}, {"trace": "abc"}),
        (raw.output.strip(), "plain text", {}),
        (stdin.output.strip(), [1, 2], {}),
    ]
    delayed = invoke(*ns, "put", "emails", "1", "--delay", "30")
    assert delayed.exit_code == 0
    stats = relay.queue("emails").stats()
    assert (stats.ready, stats.delayed) == (3, 1)


def test_publish_reaches_a_subscriber(
    relay: Relay, invoke: Callable[..., Result]
) -> None:
    got: queue.Queue[Message] = queue.Queue()
    listener = Listener(
        relay, [Subscriber(channel="news", pattern=False, handler=got.put)]
    )
    listener.start()
    try:
        assert listener.connected.wait(10)
        result = invoke("--namespace", relay.namespace, "publish", "news", '{"a": 1}')
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "1 subscribers received it"
        message = got.get(timeout=10)
        assert (message.channel, message.body) == ("news", {"a": 1})
    finally:
        listener.stop()
    nobody = invoke("--namespace", relay.namespace, "publish", "news", "x", "--raw")
    assert nobody.output.strip() == "0 subscribers received it"


# -- tail ----------------------------------------------------------------------------------


def test_tail_prints_messages_until_ctrl_c(
    relay: Relay, redrelay_url: str, start: Callable[..., Proc]
) -> None:
    proc = start(
        "--url",
        redrelay_url,
        "--namespace",
        relay.namespace,
        "tail",
        "orders.*",
        "--pattern",
    )
    proc.wait_line(r"tailing pattern 'orders\.\*'")
    relay.publish("orders.created", {"id": 7})
    relay.publish("orders.paid", "done", headers={"k": "v"})
    first, second = proc.next_stdout(), proc.next_stdout()
    assert first.endswith('orders.created {"id":7}'), first
    assert second.endswith('orders.paid "done" {"k":"v"}'), second
    proc.signal(signal.SIGINT)
    assert proc.wait() == 0
    assert not any("Traceback" in ln for ln in proc.lines["stderr"])


def test_tail_count_json_in_process(
    relay: Relay, invoke: Callable[..., Result]
) -> None:
    stop = threading.Event()

    def publish_until_stopped() -> None:
        while not stop.wait(0.05):
            relay.publish("ticks", {"t": 1})

    publisher = threading.Thread(target=publish_until_stopped, daemon=True)
    publisher.start()
    try:
        result = invoke(
            "--namespace", relay.namespace, "tail", "ticks", "--count", "2", "--json"
        )
    finally:
        stop.set()
        publisher.join(5)
    assert result.exit_code == 0, result.output
    records = [orjson.loads(ln) for ln in result.stdout.splitlines()]
    assert len(records) == 2
    assert records[0]["channel"] == "ticks" and records[0]["body"] == {"t": 1}


def test_tail_sigterm_exits_0(
    relay: Relay, redrelay_url: str, start: Callable[..., Proc]
) -> None:
    proc = start("--url", redrelay_url, "--namespace", relay.namespace, "tail", "x")
    proc.wait_line("tailing channel 'x'")
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0


# -- dead letters --------------------------------------------------------------------------


def test_dead_list_requeue_purge(
    make_relay: Callable[..., Relay], invoke: Callable[..., Result]
) -> None:
    relay = failing_relay(make_relay)
    q = relay.queue("jobs")
    ids = q.put_many([f"m{i}" for i in range(6)])
    relay.drain(timeout=10, raise_on_failure=False)
    assert q.stats().dead == 6
    ns = ("--namespace", relay.namespace)

    listed = invoke(*ns, "dead", "list", "jobs")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split()[:4] == ["id", "dead", "at", "attempt"]
    assert {ln.split()[0] for ln in lines[1:]} == set(ids)
    cells = row(listed.output, ids[0])
    assert cells[3] == "2"  # attempt: first try + one retry
    assert (
        "failed 2 times (retries=1); last error: RuntimeError: boom m0" in listed.output
    )

    limited = invoke(*ns, "dead", "list", "jobs", "--limit", "2", "--traceback")
    assert "2 of 6 dead letters shown" in limited.output
    assert "Traceback (most recent call last)" in limited.output
    assert 'body: "m5"' in limited.output  # newest first
    as_json = json.loads(invoke(*ns, "dead", "list", "jobs", "--json").output)
    assert {d["body"] for d in as_json} == {f"m{i}" for i in range(6)}

    requeued = invoke(*ns, "dead", "requeue", "jobs", ids[0], ids[1], "nosuchid")
    assert requeued.exit_code == 0, requeued.output
    assert "requeued 2 dead letters" in requeued.output
    assert "1 were not dead letters" in requeued.output
    stats = q.stats()
    assert (stats.ready, stats.dead) == (2, 4)
    assert {m.id for m in q.peek()} == {ids[0], ids[1]}

    everything = invoke(*ns, "dead", "requeue", "jobs", "--all")
    assert everything.exit_code == 0, everything.output
    assert "requeued 4 dead letters" in everything.output
    assert (q.stats().ready, q.stats().dead) == (6, 0)

    relay.drain(timeout=10, raise_on_failure=False)
    purged = invoke(*ns, "dead", "purge", "jobs", ids[2])
    assert "purged 1 dead letters" in purged.output
    refused = invoke(*ns, "dead", "purge", "jobs", "--all", input="n\n")
    assert (
        refused.exit_code == 2
        and "not confirmed, nothing was changed" in refused.output
    )
    assert q.stats().dead == 5
    confirmed = invoke(*ns, "dead", "purge", "jobs", "--all", input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "purged 5 dead letters" in confirmed.output
    assert q.stats().dead == 0
    assert "no dead letters" in invoke(*ns, "dead", "list", "jobs").output


def test_dead_bulk_work_in_chunks_with_a_progress_bar(
    make_relay: Callable[..., Relay],
    invoke: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from redrelay.cli import dead as dead_cli

    monkeypatch.setattr(dead_cli, "CHUNK", 7)
    relay = failing_relay(make_relay)
    q = relay.queue("jobs")
    q.put_many(list(range(30)))
    relay.drain(timeout=15, raise_on_failure=False)
    calls: list[int] = []
    original = type(q).requeue_dead

    def counting(self: Any, ids: Any = None) -> int:
        calls.append(len(ids))
        return original(self, ids)

    monkeypatch.setattr(type(q), "requeue_dead", counting)
    result = invoke("--namespace", relay.namespace, "dead", "requeue", "jobs", "--all")
    assert result.exit_code == 0, result.output
    assert calls == [7, 7, 7, 7, 2]
    assert "requeueing 30 dead letters" in result.stderr
    assert "requeued 30 dead letters" in result.stdout
    relay.drain(timeout=15, raise_on_failure=False)
    purged = invoke(
        "--namespace", relay.namespace, "dead", "purge", "jobs", "--all", "--yes"
    )
    assert purged.exit_code == 0 and "purged 30 dead letters" in purged.stdout
    assert q.stats().dead == 0


# -- doctor --------------------------------------------------------------------------------


def test_doctor_reports_server_and_warnings(
    relay: Relay, invoke: Callable[..., Result]
) -> None:
    relay.queue("a").put(1)
    result = invoke("--namespace", relay.namespace, "doctor")
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"^version\s+Redis \d+\.\d+", out, re.M)
    assert re.search(r"^mode\s+standalone$", out, re.M)
    assert re.search(r"^maxmemory-policy\s+noeviction$", out, re.M)
    assert re.search(r"^persistence\s+none$", out, re.M)
    assert re.search(rf"^namespace\s+'{relay.namespace}': 1 queues$", out, re.M)
    # the test server runs without persistence: that is a warning
    assert re.search(r"^warning: Redis has no persistence", out, re.M)
    strict = invoke("doctor", "--strict")
    assert strict.exit_code == 1


def test_doctor_ok_on_a_safe_server(redis_server_factory: Callable[..., Any]) -> None:
    server = redis_server_factory(appendonly=True)
    result = CliRunner().invoke(cli, ["doctor", "--strict", "--url", server.url])
    assert result.exit_code == 0, result.output
    assert re.search(r"^persistence\s+AOF \(appendfsync \w+\)$", result.output, re.M)
    assert "ok: no setting found that can lose messages" in result.output


# -- embedded ------------------------------------------------------------------------------


def test_embedded_status_and_stop(tmp_path: Path) -> None:
    from redrelay.embedded import embedded_url

    data_dir = str(tmp_path / "emb")
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["embedded", "status", "--data-dir", data_dir]).exit_code
        == 1
    )
    url = embedded_url(data_dir)
    try:
        status = runner.invoke(cli, ["embedded", "status", "--data-dir", data_dir])
        assert status.exit_code == 0, status.output
        assert "running" in status.output and url in status.output
        as_json = runner.invoke(
            cli, ["embedded", "status", "--data-dir", data_dir, "--json"]
        )
        assert json.loads(as_json.output)["url"] == url
    finally:
        stopped = runner.invoke(cli, ["embedded", "stop", "--data-dir", data_dir])
    assert stopped.exit_code == 0 and "stopped" in stopped.output
    after = runner.invoke(cli, ["embedded", "status", "--data-dir", data_dir])
    assert after.exit_code == 1 and "not running" in after.output
    again = runner.invoke(cli, ["embedded", "stop", "--data-dir", data_dir])
    assert again.exit_code == 0 and "not running" in again.output


# -- worker --------------------------------------------------------------------------------


def test_worker_bad_target_is_one_line_exit_2(start: Callable[..., Proc]) -> None:
    proc = start("--url", "redis://127.0.0.1:1/0", "worker", "nosuch:relay")
    assert proc.wait() == 2
    wait_for(lambda: proc.lines["stderr"], 5, "stderr")
    assert len(proc.lines["stderr"]) == 1, proc.lines
    assert proc.lines["stderr"][0].startswith("Error: cannot import 'nosuch'")
    not_relay = start("worker", "os:path")
    assert not_relay.wait() == 2
    wait_for(lambda: not_relay.lines["stderr"], 5, "stderr")
    assert not_relay.lines["stderr"] == [
        "Error: 'os:path' is a module, not a redrelay.Relay"
    ]


def test_worker_keeps_retrying_an_unreachable_redis_then_stops_on_sigterm(
    start: Callable[..., Proc], redis_server_factory: Callable[..., RedisServer]
) -> None:
    """It keeps trying (the repeated warning is rate-limited, so what shows it is that
    a Redis started later on that port is found), then stops cleanly."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = start(
        "worker", "tests.apps.worker_app:relay", "--url", url, REDRELAY_URL=url
    )
    proc.wait_line(r"Redis unavailable .*cannot reach Redis")
    assert proc.popen.poll() is None
    redis_server_factory(unix_socket=False, port=port, appendonly=False)
    proc.wait_line(r"ready: queues", timeout=30)
    proc.signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert not any("Traceback" in ln for ln in proc.lines["stderr"])


def _runs(relay: Relay) -> list[list[str]]:
    raw = relay.connection.call("LRANGE", f"{relay.namespace}:test:runs", 0, -1)
    return [r.decode().split() for r in raw]


def test_worker_sigterm_is_graceful(
    relay: Relay, redrelay_url: str, start: Callable[..., Proc]
) -> None:
    q = relay.queue("work")
    first, *rest = q.put_many([{"op": "sleep", "s": 1.5}] + [{"op": "ok"}] * 5)
    proc = start(
        "--url",
        redrelay_url,
        "worker",
        "tests.apps.worker_app:relay",
        REDRELAY_URL=redrelay_url,
        TEST_NAMESPACE=relay.namespace,
        TEST_CONCURRENCY="1",
        TEST_PREFETCH="10",
        TEST_LEASE="10",
    )
    wait_for(lambda: [first, "start"] in [[r[0], r[2]] for r in _runs(relay)], 15)
    proc.signal(signal.SIGTERM)
    # the five fetched-but-unstarted messages are back in ready at once, while the first runs
    wait_for(lambda: q.stats().ready == 5, 1.0, "unstarted deliveries given back")
    assert proc.wait(15) == 0
    events = [(r[0], r[2]) for r in _runs(relay)]
    assert events == [(first, "start"), (first, "done")]
    stats = q.stats()
    assert (stats.ready, stats.in_flight, stats.consumers) == (5, 0, 0)
    assert stats.counters.get("acked") == 1
    assert {m.id for m in q.peek(10)} == set(rest)


def test_worker_processes_2_starts_two_workers(
    relay: Relay, redrelay_url: str, start: Callable[..., Proc]
) -> None:
    q = relay.queue("work")
    proc = start(
        "--url",
        redrelay_url,
        "worker",
        "tests.apps.worker_app:relay",
        "--processes",
        "2",
        REDRELAY_URL=redrelay_url,
        TEST_NAMESPACE=relay.namespace,
    )

    def pids() -> set[int]:
        infos = relay.connection.call("HVALS", q.keys.consumers)
        return {orjson.loads(i)["pid"] for i in infos}

    children = wait_for(lambda: pids() if len(pids()) == 2 else None, 20, "two workers")
    assert proc.popen.pid not in children
    ids = q.put_many([{"op": "ok"}] * 20)
    wait_for(lambda: q.stats().counters.get("acked") == 20, 15, "20 acks")
    assert {r[1] for r in _runs(relay)} <= {str(p) for p in children}
    assert {r[0] for r in _runs(relay)} == set(ids)
    proc.signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    wait_for(lambda: q.stats().consumers == 0, 5, "both workers left")


def test_stats_watch_frames_show_snapshots_and_rates(relay: Relay) -> None:
    from redrelay.cli.stats import watch

    queue = relay.queue("w")
    queue.put_many(range(5))
    frames = watch(lambda: relay.stats(["w"]), 0.01, as_json=True)
    first = orjson.loads(next(frames))
    assert first["queues"][0]["ready"] == 5 and first["rates"] == {}
    queue.put_many(range(5))
    second = orjson.loads(next(frames))
    assert second["queues"][0]["ready"] == 10 and "w" in second["rates"]
    text = watch(lambda: relay.stats(["w"]), 0.01, as_json=False)
    assert next(text).startswith("-- ") and "w" in next(text)


def test_stats_shows_priorities_limits_and_parked_keys(
    make_relay: Callable[..., Relay], invoke: Callable[..., Result]
) -> None:
    relay = make_relay()

    @relay.consumer(
        "tenants", limit_key="tenant", key_rate_limit="1/h", rate_limit="50/s"
    )
    def handle(message: Message) -> None:
        pass

    q = relay.queue("tenants")
    q.put_many(["a", "b", "c"], headers={"tenant": "acme"})
    q.put("urgent", priority=10)
    relay.queue("plain").put("x")
    runner = Runner(relay, subscribers=False, poll=0.05)
    runner.start()
    try:
        # Stopping gives back what was fetched and not started: wait for "urgent" and
        # acme's first to be done, not only for the other two to be parked.
        _wait_for(
            lambda: (s := q.stats()).parked == 2 and s.counters.get("acked") == 2,
            what="two of acme's parked, the other two acked",
        )
    finally:
        runner.stop()
    result = invoke("--namespace", relay.namespace, "stats")
    assert result.exit_code == 0, result.output
    flow = result.output.split("\n\n")[2]
    # flow  limits  prioritized  parked  parked keys  held:rate  held:conc.  parked total
    line = next(x for x in flow.splitlines() if x.startswith("tenants"))
    cells = re.split(r"\s{2,}", line.strip())
    assert "key_rate=1/3600s+1" in cells[1], flow
    assert cells[2:5] == ["0", "2", "acme"], flow
    assert "plain" not in flow
    (as_json,) = json.loads(
        invoke("--namespace", relay.namespace, "stats", "--json", "tenants").output
    )
    assert as_json["parked"] == 2 and as_json["parked_keys"] == ["acme"]
    assert as_json["limits"].startswith("rate=50/1s+10")
    assert as_json["ready"] == 2 and as_json["counters"]["parked"] == 2
