"""Fixtures of the security tests: certificates, a TLS server, and a server with ACL users."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from redrelay import Relay
from redrelay._server import RedisServer, free_port

from .helpers import (
    Admin,
    Certs,
    acl_setuser,
    make_certs,
    start_tls_server,
    tls_url,
    user_url,
)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA with server and client certificates, and two bad server certificates."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@dataclass(frozen=True)
class TlsServer:
    server: RedisServer
    port: int
    #: ``rediss://127.0.0.1:PORT?ssl_ca_certs=<ca>``
    url: str


@pytest.fixture(scope="module")
def tls_server(
    certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsServer]:
    """A ``redis-server`` listening on TLS only (client certificates optional)."""
    server, port = start_tls_server(
        tmp_path_factory.mktemp("tls-server"),
        certs.server_cert,
        certs.server_key,
        certs.ca,
    )
    try:
        yield TlsServer(server, port, tls_url(port, ssl_ca_certs=certs.ca))
    finally:
        server.stop()


@pytest.fixture
def relays() -> Iterator[Callable[..., Relay]]:
    """``relays(url, **kwargs)``: a Relay in a fresh ``sec-<hex>`` namespace, closed at teardown."""
    made: list[Relay] = []

    def make(url: str, **kwargs: Any) -> Relay:
        kwargs.setdefault("namespace", f"sec-{secrets.token_hex(6)}")
        relay = Relay(url, **kwargs)
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.close()


@dataclass(frozen=True)
class AclServer:
    server: RedisServer
    admin: Admin


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclServer]:
    """A ``redis-server`` (TCP and Unix socket) whose ``default`` user is off."""
    server = RedisServer(
        tmp_path_factory.mktemp("acl-server"), appendonly=False, port=free_port()
    ).start()
    try:
        admin = Admin(server)
        admin.lock()
        yield AclServer(server, admin)
    finally:
        server.stop()  # SHUTDOWN is refused without a user: it falls back to SIGTERM


@dataclass(frozen=True)
class NamespaceUser:
    """An ACL user limited to one namespace, and the URL that logs in as it."""

    namespace: str
    user: str
    password: str
    url: str
    admin: Admin

    def denials(self, *, reset: bool = False) -> list[str]:
        """What the server refused this user (``ACL LOG``), as "reason object" lines.

        ``reset``: then empty the log (the tests that provoke refusals on purpose).
        """
        reply = self.admin("ACL", "LOG")
        if reset:
            self.admin("ACL", "LOG", "RESET")
        assert isinstance(reply, list)
        found = []
        for entry in reply:
            fields = dict(zip(entry[::2], entry[1::2], strict=True))
            if fields[b"username"] == self.user.encode():
                found.append(
                    f"{fields[b'reason'].decode()} {fields[b'object'].decode()}"
                )
        return found


#: The channel patterns the tests subscribe to, granted literally (see acl_setuser).
GRANTED_PATTERNS = ("orders.*", "events.*")


@pytest.fixture
def ns_user(acl_server: AclServer) -> NamespaceUser:
    """A fresh namespace and a user allowed only its keys and channels."""
    token = secrets.token_hex(6)
    namespace, user, password = f"sec-{token}", f"app-{token}", secrets.token_hex(16)
    acl_server.admin(*acl_setuser(user, password, namespace, GRANTED_PATTERNS))
    return NamespaceUser(
        namespace=namespace,
        user=user,
        password=password,
        url=user_url(acl_server.server, user, password),
        admin=acl_server.admin,
    )
