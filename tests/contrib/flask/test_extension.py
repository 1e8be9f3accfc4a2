"""The Flask extension: app factories, settings, handlers in the app context, accessors,
in-process consumers, the SSE blueprint and the ``flask relay`` commands."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from flask import Flask, current_app, g

from redrelay import ConfigurationError, Message, Reject, Relay
from redrelay.contrib.flask import RedRelay, RedRelayState
from redrelay.contrib.sse import hub_for
from redrelay.worker.topic_leases import create_group

from .conftest import MakeApp
from .helpers import EventReader, parse_events, wait_for

# -- app factories and state -------------------------------------------------------------


def test_init_app_keeps_state_on_the_app_not_the_extension(make_app: MakeApp) -> None:
    ext = RedRelay()
    first, second = make_app(ext), make_app(ext, REDRELAY_NAMESPACE="other-ns")
    state = first.extensions["redrelay"]
    assert isinstance(state, RedRelayState) and state.ext is ext
    assert not any(isinstance(v, Flask) for v in vars(ext).values())
    assert first.extensions["redrelay"].relay is not second.extensions["redrelay"].relay
    assert ext.relay_for(second).namespace == "other-ns"
    with first.app_context():
        assert ext.relay is ext.relay_for(first)


def test_app_passed_to_the_constructor(make_app: MakeApp, redrelay_url: str) -> None:
    app = Flask("direct")
    app.config.update(REDRELAY_URL=redrelay_url, REDRELAY_NAMESPACE="direct-ns")
    ext = RedRelay(app)
    try:
        assert ext.relay_for(app).namespace == "direct-ns"
    finally:
        ext.relay_for(app).close()


def test_handlers_registered_before_and_after_init_app_reach_every_app(
    make_app: MakeApp,
) -> None:
    ext = RedRelay()
    ext.consumer("early")(lambda m: None)
    ext.subscriber("news")(lambda m: None)
    first = make_app(ext)
    ext.consumer("late", retries=7)(lambda m: None)
    second = make_app(ext, REDRELAY_NAMESPACE="second-ns")
    for app in (first, second):
        relay = ext.relay_for(app)
        assert set(relay.consumers) == {"early", "late"}
        assert relay.consumers["late"].options.retries == 7
        assert [s.channel for s in relay.subscribers] == ["news"]


def test_registration_validates_names_and_does_no_io() -> None:
    ext = RedRelay()
    with pytest.raises(ValueError):
        ext.consumer("bad name")
    with pytest.raises(ValueError):
        ext.subscriber("x*")
    ext.subscriber("x.*", pattern=True)(lambda m: None)  # nothing to connect to: fine


def test_init_app_twice_is_an_error(make_app: MakeApp) -> None:
    ext = RedRelay()
    app = make_app(ext)
    with pytest.raises(ConfigurationError, match="already has a RedRelay"):
        ext.init_app(app)


# -- settings -----------------------------------------------------------------------------


def test_settings_come_from_app_config(make_app: MakeApp, redrelay_url: str) -> None:
    ext = RedRelay()
    ext.consumer("jobs")(lambda m: None)
    ext.consumer("mail", retries=9)(lambda m: None)
    app = make_app(
        ext,
        REDRELAY_LEASE=4,
        REDRELAY_RETRIES=2,
        REDRELAY_CONCURRENCY=3,
        REDRELAY_PREFETCH=7,
        REDRELAY_MAX_MESSAGE_SIZE=4096,
        REDRELAY_DEDUP_TTL=60,
        REDRELAY_START_IN_PROCESS=False,
        REDRELAY_SSE_KEEPALIVE=5,
        REDRELAY_SSE_RETRY_MS=500,
        REDRELAY_SSE_BUFFER=9,
        REDRELAY_DATA_DIR=None,  # None: unset
        REDRELAY_DURABLE="replicas:2",
        REDRELAY_DURABLE_TIMEOUT=0.5,
        REDRELAY_SIGNING_KEY="a secret of 16+ bytes",  # Django has it in OPTIONS too
        REDRELAY_TIME_LIMIT=30,
    )
    state = app.extensions["redrelay"]
    relay = state.relay
    assert relay.url == redrelay_url
    assert relay.max_message_size == 4096 and relay.dedup_ttl == 60
    assert relay.durable is not None and relay.durable.replicas == 2
    assert relay.durable_timeout == 0.5
    assert relay.signing_key == b"a secret of 16+ bytes"
    jobs = relay.consumers["jobs"].options
    assert jobs.time_limit == 30
    assert (jobs.lease, jobs.retries, jobs.concurrency, jobs.prefetch) == (4, 2, 3, 7)
    assert jobs.heartbeat == 1.0
    assert relay.consumers["mail"].options.retries == 9  # the decorator wins
    assert (state.sse_keepalive, state.sse_retry_ms, state.sse_buffer) == (5.0, 500, 9)
    assert state.start_in_process is False


def test_constructor_options_are_defaults_that_config_overrides(
    make_app: MakeApp,
) -> None:
    ext = RedRelay(lease=3, retries=1, namespace="ignored-by-config")
    ext.consumer("q")(lambda m: None)
    app = make_app(ext, REDRELAY_RETRIES=5)
    relay = ext.relay_for(app)
    assert relay.namespace != "ignored-by-config"  # make_app sets REDRELAY_NAMESPACE
    assert (
        relay.consumers["q"].options.lease,
        relay.consumers["q"].options.retries,
    ) == (3, 5)
    with pytest.raises(ConfigurationError, match="unknown relay options"):
        RedRelay(leese=3)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"REDRELAY_LEASSE": 3}, "REDRELAY_LEASSE.*did you mean REDRELAY_LEASE"),
        ({"REDRELAY_LEASE": "soon"}, "^REDRELAY_LEASE must be seconds"),
        ({"REDRELAY_RETRIES": -1}, "^REDRELAY_RETRIES must be an int"),
        ({"REDRELAY_URL": "http://x"}, "unsupported Redis URL"),
        ({"REDRELAY_START_IN_PROCESS": "maybe"}, "REDRELAY_START_IN_PROCESS"),
        ({"REDRELAY_SSE_KEEPALIVE": 0}, "REDRELAY_SSE_KEEPALIVE"),
        ({"REDRELAY_SSE_BUFFER": 0}, "REDRELAY_SSE_BUFFER"),
        ({"REDRELAY_DURABLE": "replicas:0"}, "^REDRELAY_DURABLE must be 'replicas:N'"),
        ({"REDRELAY_SIGNING_KEY": "short"}, "REDRELAY_SIGNING_KEY must be at least 16"),
        ({"REDRELAY_TIME_LIMIT": -1}, "^REDRELAY_TIME_LIMIT must be"),
    ],
)
def test_bad_settings_fail_at_init_app_naming_the_key(
    make_app: MakeApp, config: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        make_app(**config)


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), ("true", True), ("0", False), (0, False)]
)
def test_start_in_process_accepts_env_style_booleans(
    make_app: MakeApp, value: object, expected: bool
) -> None:
    app = make_app(REDRELAY_START_IN_PROCESS=value)
    assert app.extensions["redrelay"].start_in_process is expected


def test_a_given_relay_is_used_and_config_may_not_contradict_it(
    make_app: MakeApp, make_relay: Callable[..., Relay], namespace: str
) -> None:
    relay = make_relay(namespace=namespace)
    ext = RedRelay(relay=relay)
    app = make_app(ext)  # same URL and namespace as the relay: fine
    assert ext.relay_for(app) is relay
    with pytest.raises(ConfigurationError, match="REDRELAY_LEASE"):
        make_app(RedRelay(relay=relay), REDRELAY_LEASE=5)
    with pytest.raises(ConfigurationError, match="not both"):
        RedRelay(relay=relay, lease=5)


# -- handlers in the app context ----------------------------------------------------------


def test_consumers_run_inside_the_app_context(make_app: MakeApp) -> None:
    ext = RedRelay()
    seen: list[Any] = []

    @ext.consumer("jobs")
    def handle(message: Message) -> None:
        g.value = message.body  # needs an app context
        seen.append((current_app.name, current_app.config["MARK"], g.value))

    app = make_app(ext, MARK="first app")
    with app.app_context():
        ext.queue("jobs").put(42)
    ext.relay_for(app).drain()
    assert seen == [("testapp", "first app", 42)]


def test_a_shared_relay_runs_handlers_in_the_last_apps_context(
    make_app: MakeApp, make_relay: Callable[..., Relay], namespace: str
) -> None:
    relay = make_relay(namespace=namespace)
    ext = RedRelay(relay=relay)
    seen: list[str] = []
    ext.consumer("jobs")(lambda m: seen.append(current_app.config["MARK"]))
    make_app(ext, MARK="one")
    make_app(ext, MARK="two")
    relay.queue("jobs").put(1)
    relay.drain()
    assert seen == ["two"]


def test_accessors_need_an_app_context(make_app: MakeApp) -> None:
    ext = RedRelay()
    app = make_app(ext)
    with pytest.raises(RuntimeError, match="outside of application context"):
        ext.queue("jobs")
    with app.app_context():
        message_id = ext.queue("jobs").put({"a": 1})
        assert ext.queue("jobs").stats().ready == 1
        assert isinstance(message_id, str)
        assert ext.publish("news", "hi") == 0  # nobody listens
        assert ext.hub is hub_for(ext.relay)
    other = RedRelay()
    with app.app_context(), pytest.raises(RuntimeError, match="init_app"):
        other.relay  # noqa: B018


def test_start_in_process_runs_handlers_from_the_first_request(
    make_app: MakeApp,
) -> None:
    ext = RedRelay()
    done = threading.Event()
    news: list[Any] = []

    @ext.consumer("jobs")
    def job(message: Message) -> None:
        assert current_app.config["MARK"] == "web"
        done.set()

    @ext.subscriber("news")
    def on_news(message: Message) -> None:
        news.append((current_app.config["MARK"], message.body))

    app = make_app(ext, REDRELAY_START_IN_PROCESS=True, MARK="web")
    app.add_url_rule("/", "index", lambda: "ok")
    state = app.extensions["redrelay"]
    # Flask commands (and the app factory alone) never start consumers.
    assert app.test_cli_runner().invoke(args=["relay", "stats"]).exit_code == 0
    assert not state.started
    with app.app_context():
        ext.queue("jobs").put(1)
    assert app.test_client().get("/").status_code == 200
    assert state.started
    assert done.wait(10)

    def published() -> bool:
        with app.app_context():
            ext.publish("news", "flash")
        return bool(news)

    wait_for(published, what="the in-process subscriber")
    assert news[0] == ("web", "flash")


# -- server-sent events -------------------------------------------------------------------


def sse_app(make_app: MakeApp, **blueprint: Any) -> tuple[Flask, RedRelay]:
    ext = RedRelay()
    app = make_app(ext)
    app.register_blueprint(ext.sse_blueprint(**blueprint))
    return app, ext


def test_sse_endpoint_streams_a_channel(make_app: MakeApp) -> None:
    app, ext = sse_app(make_app)
    response = app.test_client().get("/events/news", buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    reader = EventReader(response.response)
    with app.app_context():
        assert ext.hub.clients == 1
        ext.publish("news", {"title": "hello"}, headers={"event": "headline"})
    wait_for(lambda: reader.json("headline"), what="the event")
    assert reader.json("headline") == [{"title": "hello"}]
    reader.close()
    with app.app_context():
        wait_for(lambda: ext.hub.clients == 0, what="the client to leave")


def test_sse_keepalive_and_retry_come_from_config(make_app: MakeApp) -> None:
    ext = RedRelay()
    app = make_app(ext, REDRELAY_SSE_KEEPALIVE=0.05, REDRELAY_SSE_RETRY_MS=750)
    app.register_blueprint(ext.sse_blueprint(url_prefix="/sse"))
    response = app.test_client().get("/sse/quiet", buffered=False)
    body = iter(response.response)
    assert b"retry: 750" in next(body)
    assert next(body) == b": keep-alive\n\n"
    response.close()


def test_sse_reconnect_with_last_event_id_is_told_about_the_gap(
    make_app: MakeApp,
) -> None:
    app, _ = sse_app(make_app)
    response = app.test_client().get(
        "/events/news", buffered=False, headers={"Last-Event-ID": "abc"}
    )
    first: bytes = next(iter(response.response))  # type: ignore[assignment]
    (gap,) = parse_events(first)
    assert gap["event"] == "gap" and "lost" in gap["json"]["reason"]
    response.close()


def test_sse_authorize_hook_and_bad_names(make_app: MakeApp) -> None:
    asked: list[str] = []

    def authorize(channel: str) -> bool:
        asked.append(channel)
        from flask import request

        return channel == "public" or request.headers.get("X-Token") == "secret"

    app, ext = sse_app(make_app, authorize=authorize)
    client = app.test_client()
    assert client.get("/events/private").status_code == 403
    assert client.get("/events/-bad").status_code == 404
    assert client.get("/events/a%20b").status_code == 404
    allowed = client.get(
        "/events/private", buffered=False, headers={"X-Token": "secret"}
    )
    assert allowed.status_code == 200
    allowed.close()
    public = client.get("/events/public", buffered=False)
    assert public.status_code == 200
    public.close()
    assert asked == ["private", "private", "public"]
    with app.app_context():
        assert ext.hub.clients == 0


# -- flask relay ---------------------------------------------------------------------------


def test_flask_relay_stats_and_dead_letters(make_app: MakeApp) -> None:
    ext = RedRelay()

    @ext.consumer("jobs")
    def job(message: Message) -> None:
        if message.body == "bad":
            raise Reject("not today")

    app = make_app(ext)
    with app.app_context():
        ext.queue("jobs").put_many(["ok", "bad", "ok"])
    ext.relay_for(app).drain(raise_on_failure=False)
    runner = app.test_cli_runner()

    result = runner.invoke(args=["relay", "stats"])
    assert result.exit_code == 0, result.output
    assert "jobs" in result.output
    (stats,) = orjson.loads(runner.invoke(args=["relay", "stats", "--json"]).output)
    assert stats["name"] == "jobs" and stats["dead"] == 1
    assert stats["counters"]["acked"] == 2

    relay = ext.relay_for(app)
    relay.subscriber("orders", group="mail")(lambda m: None)
    create_group(relay.connection, relay.topic_subscribers[-1])  # as a worker does
    relay.topic("orders").publish_many(["a", "b"])
    result = runner.invoke(args=["relay", "stats"])
    # topic group length consumers lag pending
    row = next(r.split() for r in result.output.splitlines() if r.startswith("orders"))
    assert row[:6] == ["orders", "mail", "2", "0", "2", "0"]
    result = runner.invoke(args=["relay", "stats", "--json", "--topics"])
    [group] = orjson.loads(result.output)["topics"][0]["groups"]
    assert (group["group"], group["lag"], group["pending"]) == ("mail", 2, 0)

    result = runner.invoke(args=["relay", "dead", "list", "jobs"])
    assert result.exit_code == 0, result.output
    assert "not today" in result.output
    result = runner.invoke(args=["relay", "dead", "requeue", "jobs", "--all"])
    assert "requeued 1" in result.output
    with app.app_context():
        assert ext.queue("jobs").stats().ready == 1
    result = runner.invoke(args=["relay", "dead", "purge", "jobs", "--all", "-y"])
    assert result.exit_code == 0, result.output


def test_flask_relay_errors_are_one_line(make_app: MakeApp) -> None:
    app = make_app()
    result = app.test_cli_runner().invoke(args=["relay", "dead", "list", "nope"])
    assert result.exit_code == 2
    assert "no queue 'nope'" in result.output
    assert "Traceback" not in result.output


def test_flask_relay_put_and_help(make_app: MakeApp) -> None:
    app = make_app()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["relay", "put", "jobs", '{"n": 1}'])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert app.extensions["redrelay"].relay.queue("jobs").stats().ready == 1
    result = runner.invoke(args=["relay", "--help"])
    for command in ("worker", "stats", "dead", "put", "publish", "tail", "doctor"):
        assert command in result.output


def test_migrating_a_seed_style_list_with_lmove(
    make_app: MakeApp, redrelay_url: str, namespace: str
) -> None:
    """docs/flask.md: what waits in an old LPUSH/BRPOP list moves over atomically."""
    import redis

    ext = RedRelay()
    got: list[Any] = []
    ext.consumer("queue")(lambda m: got.append((m.raw, m.body)))
    app = make_app(ext)
    old = f"{namespace}:legacy-queue"
    with redis.Redis.from_url(redrelay_url) as r:
        r.lpush(old, "first", "second")  # the seed's producer
        ready = f"{namespace}:{{queue}}:ready"
        while r.lmove(old, ready, "RIGHT", "LEFT") is not None:
            pass
        r.lpush(ready, "third")  # an old producer pointed at the new list
    ext.relay_for(app).drain()
    assert got == [(True, b"first"), (True, b"second"), (True, b"third")]


def test_importing_does_no_io_and_without_flask_says_how_to_install(
    subprocess_env: dict[str, str],
) -> None:
    import subprocess
    import sys

    code = (
        "import socket\n"
        "def refuse(*a, **k): raise AssertionError('I/O at import')\n"
        "socket.socket.connect = refuse\n"
        "import redrelay.contrib.sse, redrelay.contrib.flask\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=subprocess_env,
        check=True,
    )
    assert out.stdout.strip() == "ok"
    code = "import sys; sys.modules['flask'] = None\nimport redrelay.contrib.flask\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env
    )
    assert out.returncode == 1
    assert "pip install 'redrelay[flask]'" in out.stderr
