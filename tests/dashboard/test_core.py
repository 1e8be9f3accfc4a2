"""The dashboard core through its WSGI app (werkzeug's test client), on a real Redis."""

from __future__ import annotations

import re
import secrets
import socket
from collections.abc import Callable, Iterator

import orjson
import pytest
from werkzeug.test import Client, TestResponse

from redrelay import Message, Relay
from redrelay.dashboard import Dashboard
from redrelay.dashboard.core import CSP
from redrelay.dashboard.data import BODY_LIMIT
from redrelay.dashboard.http import open_url
from redrelay.dashboard.wsgi import wsgi_app

TOKEN = secrets.token_urlsafe(24)
READ = secrets.token_urlsafe(24)
LOCAL = {"REMOTE_ADDR": "127.0.0.1"}
REMOTE = {"REMOTE_ADDR": "203.0.113.5"}
ORIGIN = "http://localhost"


@pytest.fixture
def failing(make_relay: Callable[..., Relay]) -> Relay:
    relay = make_relay(retries=0)

    @relay.consumer("jobs")
    def handle(message: Message) -> None:
        if isinstance(message.body, dict) and message.body.get("fail"):
            raise (KeyError if message.body["fail"] == "key" else RuntimeError)("boom")

    return relay


@pytest.fixture
def board(failing: Relay) -> Iterator[Dashboard]:
    board = Dashboard(
        failing, token=TOKEN, read_token=READ, anonymous=True, interval=0.1
    )
    yield board
    board.close()


@pytest.fixture
def client(board: Dashboard) -> Client:
    return Client(wsgi_app(board))


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, page
    return found.group(1)


def test_overview_json_matches_stats(failing: Relay, client: Client) -> None:
    failing.queue("jobs").put_many([{"n": 1}, {"fail": "run"}])
    failing.drain(timeout=10, raise_on_failure=False)
    failing.queue("jobs").put({"n": 2})
    r = client.get("/api/overview", environ_base=LOCAL)
    assert r.status_code == 200 and r.headers["Content-Security-Policy"] == CSP
    (q,) = orjson.loads(r.data)["queues"]
    s = failing.queue("jobs").stats()
    assert (
        (q["ready"], q["dead"], q["counters"]["acked"])
        == (s.ready, s.dead, s.counters["acked"])
        == (1, 1, 1)
    )
    assert sum(q["history"]) == 1 and len(q["history"]) == 60
    page = client.get("/", environ_base=LOCAL)
    assert page.status_code == 200 and 'data-q="jobs" data-f="ready">1<' in page.text
    assert page.headers["X-Frame-Options"] == "DENY"
    # No request for /favicon.ico (outside the mount: a 404 in the browser's console)
    assert '<link rel="icon" href="data:,">' in page.text


def test_bodies_reasons_and_tracebacks_are_escaped_and_truncated(
    failing: Relay, client: Client
) -> None:
    evil = "<script>alert(1)</script>"
    failing.queue("jobs").put({"fail": "run", "x": evil, "pad": "y" * 10_000})
    failing.drain(timeout=10, raise_on_failure=False)
    failing.queue("jobs").put(evil)
    page = client.get("/queues/jobs", environ_base=LOCAL).text
    assert (
        "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    )
    assert "more characters)" in page and "y" * (BODY_LIMIT + 10) not in page
    assert "RuntimeError" in page  # the reason and the group
    assert "<script" not in page.replace('<script src="', "")


def test_remote_needs_a_token_and_read_token_is_read_only(
    failing: Relay, client: Client
) -> None:
    failing.queue("jobs").put(1)
    refused = client.get("/", environ_base=REMOTE)
    assert refused.status_code == 401 and refused.headers[
        "WWW-Authenticate"
    ].startswith("Bearer")
    assert "jobs" not in refused.text
    assert client.get("/api/overview", environ_base=REMOTE).status_code == 401
    # a proxy on the same machine would make everyone look local: not anonymous then
    proxied = client.get(
        "/", environ_base=LOCAL, headers={"X-Forwarded-For": "198.51.100.1"}
    )
    assert proxied.status_code == 401
    ok = client.get(
        "/", environ_base=REMOTE, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert ok.status_code == 200
    ro = client.get(
        "/queues/jobs", environ_base=REMOTE, headers={"Authorization": f"Bearer {READ}"}
    )
    assert ro.status_code == 200 and 'name="csrf"' not in ro.text  # no action buttons
    post = client.post(
        "/queues/jobs/purge",
        data={"scope": "all", "csrf": "x"},
        environ_base=REMOTE,
        headers={"Authorization": f"Bearer {READ}", "Origin": ORIGIN},
    )
    assert post.status_code == 403
    # ?token= sets an HttpOnly cookie and drops the token from the URL
    r = client.get(f"/workers?token={TOKEN}", environ_base=REMOTE)
    assert r.status_code == 303 and r.headers["Location"] == "/workers"
    assert (
        "HttpOnly" in r.headers["Set-Cookie"]
        and "SameSite=Strict" in r.headers["Set-Cookie"]
    )
    assert client.get("/workers", environ_base=REMOTE).status_code == 200  # the cookie


def test_auth_hook_decides_per_action(failing: Relay) -> None:
    calls: list[str] = []

    def auth(request: object, action: str) -> bool | str:
        calls.append(action)
        return "alice" if action == "view" else False

    board = Dashboard(failing, auth=auth)
    try:
        client = Client(wsgi_app(board))
        failing.queue("jobs").put(1)
        assert client.get("/", environ_base=LOCAL).status_code == 200  # not anonymous=
        r = client.post(
            "/queues/jobs/purge",
            data={"scope": "all"},
            environ_base=LOCAL,
            headers={"Origin": ORIGIN},
        )
        assert r.status_code == 403 and "This access is read-only" in r.text
        assert "change" in calls
    finally:
        board.close()


def post(
    client: Client, path: str, page: str, origin: str = ORIGIN, **form: str
) -> TestResponse:
    return client.post(
        path,
        data={"csrf": csrf_of(page), **form},
        environ_base=LOCAL,
        headers={"Origin": origin},
    )


def test_changes_need_post_csrf_and_origin_and_are_audited(
    failing: Relay, client: Client
) -> None:
    failing.queue("jobs").put_many([{"fail": "run"}, {"fail": "key"}, {"fail": "key"}])
    failing.drain(timeout=10, raise_on_failure=False)
    page = client.get("/queues/jobs", environ_base=LOCAL).text
    assert "KeyError" in page and "RuntimeError" in page
    bad = client.post(
        "/queues/jobs/requeue",
        data={"scope": "all"},
        environ_base=LOCAL,
        headers={"Origin": ORIGIN},
    )
    assert bad.status_code == 403
    cross = post(
        client, "/queues/jobs/requeue", page, origin="http://evil.example", scope="all"
    )
    assert cross.status_code == 403
    assert client.get("/queues/jobs/requeue", environ_base=LOCAL).status_code == 404
    assert failing.queue("jobs").stats().dead == 3
    # one group: the two KeyErrors
    r = post(client, "/queues/jobs/purge", page, scope="group", error="KeyError")
    assert r.status_code == 200 and "purged 2" in r.text
    assert failing.queue("jobs").stats().dead == 1
    (letter,) = failing.queue("jobs").dead_letters()
    r = post(client, "/queues/jobs/requeue", page, scope="one", id=letter.id)
    assert "requeued 1" in r.text
    s = failing.queue("jobs").stats()
    assert (s.dead, s.ready) == (0, 1)
    log = orjson.loads(client.get("/api/audit", environ_base=LOCAL).data)
    assert [(e["action"], e["detail"]) for e in log] == [
        ("requeue", "requeued 1"),
        ("purge", "purged 2"),
    ]
    assert (
        log[0]["who"] == "anonymous@127.0.0.1"
        and log[0]["target"] == f"jobs id {letter.id}"
    )
    assert "requeued 1" in client.get("/audit", environ_base=LOCAL).text


def test_message_lookup_workers_metrics_and_404s(
    failing: Relay, client: Client
) -> None:
    failing.queue("jobs").put({"fail": "run"})
    failing.drain(timeout=10, raise_on_failure=False)
    delayed_id = failing.queue("jobs").put("later", delay=60)
    (letter,) = failing.queue("jobs").dead_letters()
    hits = orjson.loads(
        client.get(f"/api/messages?id={letter.id}", environ_base=LOCAL).data
    )
    assert [(h["state"], h["queue"]) for h in hits] == [("dead", "jobs")]
    hits = orjson.loads(
        client.get(f"/api/messages?id={delayed_id}", environ_base=LOCAL).data
    )
    assert [(h["state"], h["body"]) for h in hits] == [("delayed", '"later"')]
    assert "Not found" in client.get("/messages?id=nope", environ_base=LOCAL).text
    assert client.get("/api/workers", environ_base=LOCAL).data == b"[]"
    metrics = client.get("/metrics", environ_base=LOCAL)
    assert b'redrelay_queue_messages{queue="jobs",state="dead"} 1.0' in metrics.data
    assert client.get("/queues/nope", environ_base=LOCAL).status_code == 404
    assert client.get("/queues/%7Bx%7D", environ_base=LOCAL).status_code == 404
    assert client.get("/static/../core.py", environ_base=LOCAL).status_code == 404
    assert client.get("/static/dashboard.js", environ_base=LOCAL).status_code == 200


def test_event_stream_sends_shared_snapshots(
    failing: Relay, board: Dashboard, client: Client
) -> None:
    failing.queue("jobs").put(1)
    r = client.get("/events", environ_base=LOCAL, buffered=False)
    assert r.headers["Content-Type"] == "text/event-stream"
    frames = iter(r.response)
    assert next(frames) == b"retry: 2000\n\n"
    first = next(frames)
    assert first.startswith(b"id: 1\nevent: overview\ndata: ")
    assert orjson.loads(first.split(b"data: ", 1)[1])["queues"][0]["ready"] == 1
    failing.queue("jobs").put(2)
    for _ in range(50):  # bounded: snapshots every 0.1 s
        data = orjson.loads(next(frames).split(b"data: ", 1)[1])
        if data["queues"][0]["ready"] == 2:
            break
    else:
        raise AssertionError("the stream never showed the new message")
    r.close()


def test_workers_page_shows_a_running_worker(
    make_relay: Callable[..., Relay],
) -> None:
    import os
    import socket
    import time

    relay = make_relay(concurrency=3, lease=5.0, heartbeat=0.5)

    @relay.consumer("jobs")
    def handle(message: Message) -> None:
        pass

    relay.queue("jobs").put(1)
    board = Dashboard(relay, anonymous=True)
    relay.start()
    try:
        client = Client(wsgi_app(board))

        def one() -> list[dict[str, object]]:
            found = orjson.loads(client.get("/api/workers", environ_base=LOCAL).data)
            return found if found and found[0]["last_heartbeat"] else []

        from ..worker.helpers import wait_for

        (w,) = wait_for(one, timeout=10, what="the worker on the workers page")
        assert (w["host"], w["pid"]) == (socket.gethostname(), os.getpid())
        assert w["queues"] == ["jobs"] and w["concurrency"] == 3
        assert w["last_heartbeat"] <= time.time() + 1 < w["heartbeat_until"] + 1
        assert str(os.getpid()) in client.get("/workers", environ_base=LOCAL).text
        assert (
            orjson.loads(client.get("/api/overview", environ_base=LOCAL).data)[
                "workers"
            ]
            == 1
        )
    finally:
        relay.stop()
        board.close()


def test_bulk_purge_runs_in_chunks_and_resumes(
    failing: Relay, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no time budget each POST does one chunk of 500, says what is left, and
    offers to continue; continuing ends with none left."""
    from redrelay.dashboard import core

    k = failing.queue("jobs").shard_keys(register=True)[0]
    ids = [f"d{i}" for i in range(1200)]
    failing.connection.call(
        "ZADD", k.dead, *[x for i, d in enumerate(ids) for x in (i, d)]
    )
    records = [
        orjson.dumps(
            {"id": d, "queue": "jobs", "reason": "RuntimeError: x", "entry": ""}
        )
        for d in ids
    ]
    failing.connection.call(
        "HSET", k.dead_data, *[x for p in zip(ids, records, strict=True) for x in p]
    )
    monkeypatch.setattr(core, "BULK_BUDGET", 0.0)
    page = client.get("/queues/jobs", environ_base=LOCAL).text
    r = post(client, "/queues/jobs/purge", page, scope="all")
    assert "purged 500, 700 left" in r.text and "Continue (700 left)" in r.text
    r = post(client, "/queues/jobs/purge", r.text, scope="all")  # its Continue form
    assert "purged 500, 200 left" in r.text
    r = post(client, "/queues/jobs/purge", r.text, scope="all")
    assert "purged 200" in r.text and "left" not in r.text.split("purged 200")[1][:10]
    assert failing.queue("jobs").stats().dead == 0
    details = [
        e["detail"]
        for e in orjson.loads(client.get("/api/audit", environ_base=LOCAL).data)
    ]
    assert details == ["purged 200", "purged 500, 200 left", "purged 500, 700 left"]


def test_a_malformed_dead_record_does_not_break_the_pages(
    failing: Relay, client: Client
) -> None:
    failing.queue("jobs").put({"fail": "run"})
    failing.drain(timeout=10, raise_on_failure=False)
    k = failing.queue("jobs").shard_keys()[0]
    failing.connection.call("ZADD", k.dead, 1, "broken")
    failing.connection.call("HSET", k.dead_data, "broken", b"<not json \xff>")
    page = client.get("/queues/jobs", environ_base=LOCAL)
    assert page.status_code == 200
    assert "malformed dead-letter record" in page.text and "&lt;not json" in page.text
    assert "RuntimeError" in page.text  # the good one is still there
    hits = orjson.loads(client.get("/api/messages?id=broken", environ_base=LOCAL).data)
    assert [h["reason"] for h in hits] == ["malformed dead-letter record"]


def test_csrf_key_is_shared_by_processes_and_bad_tokens_are_refused(
    failing: Relay, client: Client
) -> None:
    """A form rendered by one dashboard process is accepted by another (the key lives in
    Redis); a wrong ?token= sets no cookie; a non-ASCII token is a 401, not a crash."""
    failing.queue("jobs").put({"fail": "run"})
    failing.drain(timeout=10, raise_on_failure=False)
    page = client.get("/queues/jobs", environ_base=LOCAL).text
    other = Dashboard(failing, anonymous=True)  # as in another worker process
    try:
        r = post(Client(wsgi_app(other)), "/queues/jobs/purge", page, scope="all")
        assert r.status_code == 200 and "purged 1" in r.text
    finally:
        other.close()
    wrong = client.get("/?token=" + "x" * 30, environ_base=LOCAL)
    assert wrong.status_code == 200 and "Set-Cookie" not in wrong.headers
    odd = client.get("/", environ_base=REMOTE, headers={"Authorization": "Bearer é€"})
    assert odd.status_code == 401


def test_redis_down_is_a_503_page(make_relay: Callable[..., Relay]) -> None:
    from redrelay._server import free_port

    relay = make_relay()
    down = Relay(
        f"redis://127.0.0.1:{free_port()}", namespace=relay.namespace, connect_retries=0
    )
    board = Dashboard(down, anonymous=True)
    try:
        r = Client(wsgi_app(board)).get("/", environ_base=LOCAL)
        assert r.status_code == 503 and "Redis did not answer" in r.text
    finally:
        board.close()
        down.close()


def test_queue_page_shows_priorities_limits_and_parked_keys(
    make_relay: Callable[..., Relay],
) -> None:
    from redrelay.worker.runner import Runner

    relay = make_relay()

    @relay.consumer("flow", limit_key="tenant", key_rate_limit="1/h")
    def handle(message: Message) -> None:
        pass

    q = relay.queue("flow")
    q.put_many([1, 2, 3], headers={"tenant": "acme"})
    q.put(4, headers={"tenant": "<script>x</script>"})  # not plain: hashed, never shown
    runner = Runner(relay, subscribers=False, poll=0.05)
    runner.start()
    try:
        for _ in range(200):
            if q.stats().parked == 2 and q.stats().counters.get("acked") == 2:
                break
            runner._stopping.wait(0.05)
    finally:
        runner.stop()
    q.put("later", priority=-3)
    board = Dashboard(relay, anonymous=True, interval=0.1)
    try:
        page = Client(wsgi_app(board)).get("/queues/flow", environ_base=LOCAL).text
    finally:
        board.close()
    assert "key_rate=1/3600s+1" in page
    assert "prioritized: <b>1</b>" in page and "parked: <b>2</b>" in page
    assert "parked keys: <b>acme</b>" in page and "<script>x" not in page


def test_the_printed_url_can_be_opened() -> None:
    """``redrelay dashboard --host 0.0.0.0`` printed ``http://0.0.0.0:8765/``."""
    name = socket.gethostname()
    assert open_url("0.0.0.0", 8765) == f"http://{name}:8765/"
    assert open_url("::", 8765) in (f"http://{name}:8765/", f"http://[{name}]:8765/")
    assert open_url("127.0.0.1", 1) == "http://127.0.0.1:1/"
    assert open_url("::1", 2) == "http://[::1]:2/"
