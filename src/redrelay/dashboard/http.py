"""The framework-free request and response the dashboard core speaks.

Each mount (standalone WSGI, Flask, Django, ASGI) converts its framework's request into a
:class:`Request` and the :class:`Response` back; nothing here imports a framework.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

__all__ = ["Request", "Response", "is_loopback", "open_url", "parse_form"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One request, as the dashboard needs it."""

    method: str
    #: The path below the dashboard's mount point, starting with ``/``.
    path: str
    #: The mount point as the browser sees it (``""`` at the root, ``/relay`` ...).
    root: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, list[str]] = field(default_factory=dict)
    #: Header names in lower case.
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    remote_addr: str = ""
    #: ``scheme://host[:port]`` the browser used (for the Origin check).
    origin: str = ""
    #: The framework's own request, for ``auth=`` hooks (Flask's, Django's, ASGI scope).
    native: Any = None
    #: The CSRF form field the framework checks itself (Django): ``(name, value)``; None
    #: makes the core check its own token and the Origin header.
    framework_csrf: tuple[str, str] | None = None


@dataclass(slots=True, kw_only=True)
class Response:
    """A response: a body (bytes, or an iterator of bytes for event streams)."""

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    #: The same stream for an event loop (ASGI), so that an open stream holds no thread.
    abody: Callable[[], AsyncIterator[bytes]] | None = None

    @property
    def streaming(self) -> bool:
        return not isinstance(self.body, bytes)

    def header_list(self) -> list[tuple[str, str]]:
        return [("Content-Type", self.content_type), *self.headers.items()]


def parse_form(body: bytes) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body (the only one the pages send)."""
    return parse_qs(body.decode("latin-1"), keep_blank_values=True)


def open_url(host: str, port: int) -> str:
    """The URL to print for a dashboard bound to ``host``: this machine's name for a
    wildcard address (``0.0.0.0``, ``::``), which no browser can open."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP, or a host name for a bind address) is loopback."""
    if address in ("localhost", ""):
        return address == "localhost"
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False
