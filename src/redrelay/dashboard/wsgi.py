"""The dashboard as a WSGI application, and the standalone server of ``redrelay dashboard``."""

from __future__ import annotations

import socketserver
from collections.abc import Callable, Iterable, Iterator
from http.cookies import CookieError, SimpleCookie
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .core import Dashboard
from .http import Request, Response, parse_form

__all__ = ["MAX_FORM", "make_request", "serve", "wsgi_app"]

#: Largest form body read (the pages' forms are a few hundred bytes).
MAX_FORM = 64 * 1024

StartResponse = Callable[..., Any]


def cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


def make_request(environ: dict[str, Any], native: Any = None) -> Request:
    """A core Request from a WSGI environ."""
    headers = {
        k[5:].replace("_", "-").lower(): str(v)
        for k, v in environ.items()
        if k.startswith("HTTP_")
    }
    form: dict[str, list[str]] = {}
    method = environ.get("REQUEST_METHOD", "GET").upper()
    if method == "POST":
        try:
            length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_FORM)
        except ValueError:
            length = 0
        form = parse_form(environ["wsgi.input"].read(length)) if length else {}
    query = {
        k: v[0]
        for k, v in parse_form(
            environ.get("QUERY_STRING", "").encode("latin-1")
        ).items()
    }
    host = headers.get("host") or environ.get("SERVER_NAME", "")
    return Request(
        method=method,
        path=environ.get("PATH_INFO", "") or "/",
        root=environ.get("SCRIPT_NAME", "").rstrip("/"),
        query=query,
        form=form,
        headers=headers,
        cookies=cookies(headers.get("cookie", "")),
        remote_addr=environ.get("REMOTE_ADDR", ""),
        origin=f"{environ.get('wsgi.url_scheme', 'http')}://{host}",
        native=native if native is not None else environ,
    )


def respond(response: Response, start_response: StartResponse) -> Iterable[bytes]:
    from http import HTTPStatus

    status = f"{response.status} {HTTPStatus(response.status).phrase}"
    start_response(status, response.header_list())
    if isinstance(response.body, bytes):
        return [response.body]
    return _closing(response.body)


def _closing(body: Iterable[bytes]) -> Iterator[bytes]:
    # A WSGI server calls close() on the iterator when the client leaves: passing it on
    # ends the snapshot stream's generator (and unregisters the watcher).
    try:
        yield from body
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def wsgi_app(
    dashboard: Dashboard,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The dashboard as a WSGI callable (mount it under any prefix: SCRIPT_NAME)."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return respond(dashboard.handle(make_request(environ)), start_response)

    return app


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # an open event stream must not keep the process alive


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(dashboard: Dashboard, host: str, port: int) -> _ThreadingServer:
    """A threaded WSGI server for the dashboard (call ``serve_forever()`` on it)."""
    server = make_server(
        host,
        port,
        wsgi_app(dashboard),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
    assert isinstance(server, _ThreadingServer)
    return server
