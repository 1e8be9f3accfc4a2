"""The dashboard core: routing, access control, CSRF, actions. No framework here.

Access (checked on every request, most specific first):

1. ``token=``: full access for ``Authorization: Bearer <token>``, the cookie it sets, or
   ``?token=<token>`` once (which sets the cookie and redirects to drop it from the URL);
   ``read_token=``: the same, read-only.
2. ``auth=``: a callable ``auth(request, action)`` with ``action`` ``"view"`` or
   ``"change"``; True (or the user's name, for the audit log) lets the request through.
3. ``anonymous=True``: anyone whose connection comes from loopback, with no proxy header
   (a proxy on the same machine would make everyone look local). The standalone server
   sets it only when it is bound to a loopback address.

Everything else gets 401. Changes are POST only, with a CSRF token in the form (the
framework's own under Django) and an ``Origin`` (or ``Referer``) of this very site.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import quote, unquote

import orjson

from ..errors import BrokerFull, BrokerUnavailable, InvalidName
from ..protocol.keys import queues_key, validate_name
from ..relay import Relay
from . import audit, data, pages
from .http import Request, Response, is_loopback
from .live import Snapshots

__all__ = ["CSP", "Dashboard"]

#: The Content-Security-Policy of every response: no inline script or style, nothing
#: from elsewhere, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

#: Seconds one bulk request may run before it answers with its progress (and a
#: "continue" button): each chunk of 500 is atomic, so stopping anywhere is safe.
BULK_BUDGET = 2.0

#: Seconds the dead-letter groups of a queue page are reused (per dashboard process).
GROUPS_TTL = 10.0

COOKIE = "redrelay_dashboard"
_STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
_PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")

Auth = Callable[[Request, str], "bool | str"]


class _Denied(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


class Dashboard:
    """The dashboard of one relay; mount it with one of the adapters (wsgi, flask,
    django, asgi) or serve it with ``redrelay dashboard``.

    :param auth: ``auth(request, action) -> bool | str``; see the module docstring.
    :param token: a secret giving full access; ``read_token`` gives read-only access.
    :param anonymous: let loopback clients in without credentials.
    :param interval: seconds between live snapshots.
    """

    def __init__(
        self,
        relay: Relay,
        *,
        auth: Auth | None = None,
        token: str | None = None,
        read_token: str | None = None,
        anonymous: bool = False,
        interval: float = 2.0,
    ) -> None:
        for name, value in (("token", token), ("read_token", read_token)):
            if value is not None and (not isinstance(value, str) or len(value) < 16):
                raise ValueError(
                    f"{name}= must be a str of at least 16 characters (use secrets.token_urlsafe()); got {'a short one' if isinstance(value, str) else type(value).__name__}"
                )
        self.relay = relay
        self.auth = auth
        self.token = token
        self.read_token = read_token
        self.anonymous = anonymous
        self._secret: bytes | None = None  # the CSRF key, shared in Redis (_csrf_key)
        #: queue -> (monotonic time, dead letters by error type): grouping reads the
        #: newest DEAD_SAMPLE records, so a page reuses it for GROUPS_TTL seconds.
        self._groups: dict[str, tuple[float, dict[str, Any]]] = {}
        self.live = Snapshots(lambda: data.overview(relay), interval)

    def close(self) -> None:
        """End the live streams (before closing the relay)."""
        self.live.close()

    # -- access --------------------------------------------------------------------------

    def _who(self, request: Request, action: str) -> str | None:
        """Who is asking, if allowed to ``action``; None if not."""
        given = (
            _bearer(request)
            or request.cookies.get(COOKIE)
            or request.query.get("token")
        )
        role = self._role(given)
        if role is not None:
            return role if action == "view" or role == "token" else None
        if self.auth is not None:
            verdict = self.auth(request, action)
            if verdict:
                return verdict if isinstance(verdict, str) else "auth"
        if self.anonymous and is_loopback(request.remote_addr):
            if not any(p in request.headers for p in _PROXY_HEADERS):
                return f"anonymous@{request.remote_addr}"
        return None

    def _role(self, given: str | None) -> str | None:
        """ "token" or "read-token" if ``given`` is one of them (in constant time)."""
        if not given:
            return None
        for role, secret in (("token", self.token), ("read-token", self.read_token)):
            if secret and hmac.compare_digest(given.encode(), secret.encode()):
                return role
        return None

    def _csrf_key(self) -> bytes:
        """One random key per namespace, kept in Redis, so that a form rendered by one
        process of a multi-process server is accepted by another."""
        if self._secret is None:
            key = f"{self.relay.namespace}:dashboard:csrf"
            self.relay.connection.call("SET", key, secrets.token_hex(32), "NX")
            self._secret = bytes(self.relay.connection.call("GET", key))
        return self._secret

    def _csrf(self, request: Request, who: str) -> tuple[str, str]:
        if request.framework_csrf is not None:
            return request.framework_csrf
        digest = hmac.new(self._csrf_key(), who.encode(), hashlib.sha256).hexdigest()
        return ("csrf", digest[:40])

    def _check_post(self, request: Request, who: str) -> None:
        if request.framework_csrf is not None:
            return  # Django's middleware checked the token and the Origin already
        name, expected = self._csrf(request, who)
        got = (request.form.get(name) or [""])[0]
        if not hmac.compare_digest(got.encode(), expected.encode()):
            raise _Denied(
                403, "Missing or wrong CSRF token: reload the page and try again."
            )
        origin = request.headers.get("origin") or ""
        if not origin:
            referer = request.headers.get("referer", "")
            origin = "/".join(referer.split("/")[:3])
        if not request.origin or origin != request.origin:
            raise _Denied(
                403, "Cross-site request refused (Origin does not match this site)."
            )

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request (never raises for a bad request: an error page instead)."""
        try:
            response = self._route(request)
        except _Denied as exc:
            response = self._page(
                request,
                pages.error_page(request.root, exc.status, exc.text),
                exc.status,
            )
        except (BrokerUnavailable, BrokerFull) as exc:
            text = (
                f"Redis did not answer: {exc}. The page will work again once it does."
            )
            response = self._page(
                request, pages.error_page(request.root, 503, text), 503
            )
        except InvalidName as exc:
            response = self._page(
                request, pages.error_page(request.root, 404, str(exc)), 404
            )
        if response.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="redrelay dashboard"'
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _route(self, request: Request) -> Response:
        path = request.path or "/"
        if request.method == "GET" and path.startswith("/static/"):
            return _static(path.removeprefix("/static/"))
        action = "change" if request.method == "POST" else "view"
        if request.method not in ("GET", "HEAD", "POST"):
            raise _Denied(405, "Method not allowed.")
        who = self._who(request, action)
        if who is None:
            if action == "change" and self._who(request, "view") is not None:
                raise _Denied(403, "This access is read-only.")
            raise _Denied(
                401,
                "Not allowed: this dashboard needs a token or a login (see docs/dashboard.md).",
            )
        if request.method == "GET" and self._role(request.query.get("token")):
            return self._set_cookie(request)
        if request.method == "POST":
            self._check_post(request, who)
            return self._post(request, who, path)
        return self._get(request, who, path)

    def _get(self, request: Request, who: str, path: str) -> Response:
        root = request.root
        if path == "/":
            return self._page(
                request, pages.overview_page(root, data.overview(self.relay))
            )
        if path == "/api/overview":
            return _json(data.overview(self.relay))
        if path == "/events":
            return Response(
                body=self.live.stream(),
                abody=self.live.astream,
                content_type="text/event-stream",
                headers={"X-Accel-Buffering": "no"},
            )
        if path == "/metrics":
            try:
                from .. import metrics
            except ImportError as exc:
                raise _Denied(501, str(exc)) from None
            body, content_type = metrics.exposition(self.relay)
            return Response(body=body, content_type=content_type)
        if path in ("/workers", "/api/workers"):
            found = data.workers(self.relay)
            return (
                _json(found)
                if path.startswith("/api")
                else self._page(request, pages.workers_page(root, found))
            )
        if path in ("/messages", "/api/messages"):
            msg_id = request.query.get("id", "").strip()[:200]
            hits = data.find_message(self.relay, msg_id) if msg_id else []
            return (
                _json(hits)
                if path.startswith("/api")
                else self._page(request, pages.message_page(root, msg_id, hits))
            )
        if path in ("/audit", "/api/audit"):
            entries = audit.read(self.relay)
            return (
                _json(entries)
                if path.startswith("/api")
                else self._page(request, pages.audit_page(root, entries))
            )
        match = re.fullmatch(r"(/api)?/queues/([^/]+)", path)
        if match:
            name = self._queue(match.group(2))
            offset = _int(request.query.get("dead_offset"), 0, 1_000_000)
            page = data.queue_page(
                self.relay, name, dead_offset=offset, groups=self._dead_groups(name)
            )
            if match.group(1):
                return _json(page)
            csrf = self._csrf(request, who) if self._who(request, "change") else None
            return self._page(request, pages.queue_page(root, page, csrf))
        raise _Denied(404, "No such page.")

    def _dead_groups(self, name: str) -> dict[str, Any]:
        cached = self._groups.get(name)
        if cached is None or time.monotonic() - cached[0] > GROUPS_TTL:
            cached = (time.monotonic(), data.dead_groups(self.relay, name))
            self._groups[name] = cached
        return cached[1]

    def _queue(self, raw: str) -> str:
        name = validate_name("queue", unquote(raw))
        if not self.relay.connection.call(
            "SISMEMBER", queues_key(self.relay.namespace), name
        ):
            raise _Denied(
                404, f"No queue named {name!r} in namespace {self.relay.namespace!r}."
            )
        return name

    def _post(self, request: Request, who: str, path: str) -> Response:
        match = re.fullmatch(r"/queues/([^/]+)/(requeue|purge)", path)
        if not match:
            raise _Denied(404, "No such action.")
        name, verb = self._queue(match.group(1)), match.group(2)
        form = {k: v[0] for k, v in request.form.items() if v}
        scope = form.get("scope", "")
        queue = self.relay.queue(name)
        act = queue.requeue_dead if verb == "requeue" else queue.purge_dead
        remaining = 0
        self._groups.pop(name, None)  # the groups change with this action
        if scope == "one" and form.get("id"):
            target, done = f"{name} id {form['id']}", act([form["id"][:200]])
        elif scope == "group" and form.get("error"):
            ids = [
                d["id"]
                for d in data.dead_letters(self.relay, name, limit=data.DEAD_SAMPLE)
                if d["error"] == form["error"]
            ]
            target, done = f"{name} error {form['error']}", act(ids)
        elif scope == "all":
            target, (done, remaining) = f"{name} all", _bulk(queue, act)
        else:
            raise _Denied(
                400,
                "Say what to act on: scope=one with id=, scope=group with error=, or scope=all.",
            )
        verb_done = "requeued" if verb == "requeue" else "purged"
        detail = f"{verb_done} {done}" + (f", {remaining} left" if remaining else "")
        audit.record(self.relay, who=who, action=verb, target=target, detail=detail)
        more = None
        if remaining:
            csrf = self._csrf(request, who)
            more = pages._form(
                request.root,
                path,
                csrf,
                {"scope": "all"},
                f"Continue ({remaining} left)",
            )
        back = f"/queues/{quote(name)}"
        return self._page(
            request,
            pages.result_page(
                request.root, f"{verb.capitalize()}: {name}", detail, back, more
            ),
        )

    def _set_cookie(self, request: Request) -> Response:
        token = request.query["token"]
        cookie = (
            f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path={request.root or '/'}"
        )
        if request.origin.startswith("https:"):
            cookie += "; Secure"
        location = (request.root + request.path) or "/"
        return Response(
            status=303, headers={"Location": location, "Set-Cookie": cookie}
        )

    @staticmethod
    def _page(request: Request, text: str, status: int = 200) -> Response:
        return Response(status=status, body=text.encode())


def _bulk(queue: Any, act: Callable[[list[str]], int]) -> tuple[int, int]:
    """Act on the oldest dead letters, 500 at a time (at least one chunk), until none
    is left or BULK_BUDGET is spent. Returns (done, left)."""
    done, deadline = 0, time.monotonic() + BULK_BUDGET
    while True:
        batch: list[str] = next(iter(queue.iter_dead_ids(batch=500)), [])
        if not batch:
            return done, 0
        done += act(batch)
        if time.monotonic() >= deadline:
            return done, queue.stats().dead


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else None


def _json(value: Any) -> Response:
    return Response(body=orjson.dumps(value), content_type="application/json")


def _int(raw: str | None, default: int, top: int) -> int:
    try:
        return max(0, min(top, int(raw))) if raw is not None else default
    except ValueError:
        return default


def _static(name: str) -> Response:
    if name not in _STATIC:
        raise _Denied(404, "No such file.")
    body = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
    return Response(
        body=body, content_type=_STATIC[name], headers={"Cache-Control": "max-age=300"}
    )
