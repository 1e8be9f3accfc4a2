"""pytest fixtures on a real ``redis-server``: ``relay``, ``make_relay`` and more.

The plugin is registered through the ``pytest11`` entry point, so installing redrelay
makes these fixtures available in every test suite without a ``conftest.py`` import:

- ``redrelay_server`` (session): a ``redis-server`` on a Unix socket in a temporary
  directory, AOF off, stopped when the session ends.
- ``redrelay_url`` (session): its URL.
- ``make_relay`` (function): ``make_relay(**kwargs) -> Relay`` on that server, each
  relay in its own ``test-<hex>`` namespace unless ``namespace=`` is given; at teardown
  the relays are closed and every key under their namespaces is deleted.
- ``relay`` (function): ``make_relay()``.
- ``redrelay_namespace`` (function): a fresh ``test-<hex>`` namespace for this test,
  its keys deleted at teardown: give it to your app (``REDRELAY_NAMESPACE``) so no
  dedup key, queue or dead letter leaks from one test (or one run) into the next.
- ``django_redrelay`` (function, needs pytest-django): points ``settings.REDRELAY``
  (every alias) at the session server in this test's namespace and returns
  ``get_relay()``; make it ``autouse`` in your ``conftest.py``.
- :class:`ChannelRecorder`: records channel messages from now on, for
  ``relay.drain(channels=...)`` (see :meth:`redrelay.Relay.drain`).
- ``redrelay_cluster`` (session, started only when asked for): a 3-primary Redis Cluster
  on loopback (``redis-server --cluster-enabled yes`` x3 and ``redis-cli --cluster
  create``), a :class:`redrelay._cluster.LocalCluster`.
- ``redrelay_cluster_url`` (session): its ``redis+cluster://`` URL; pass it as
  ``make_relay(url=...)``.

Example::

    def test_put(relay):
        relay.queue("emails").put({"to": "ada@example.com"})
        assert relay.queue("emails").stats().ready == 1

Importing this module has no side effect (no I/O, no server): servers start when a
test asks for a fixture.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .worker.drain import DrainReport as DrainReport
from .worker.drain import Failure as Failure
from .worker.recorder import ChannelRecorder as ChannelRecorder

if TYPE_CHECKING:
    from ._cluster import LocalCluster
    from ._server import RedisServer
    from .relay import Relay

__all__ = [
    "ChannelRecorder",
    "DrainReport",
    "Failure",
    "django_redrelay",
    "make_relay",
    "redrelay_cluster",
    "redrelay_cluster_url",
    "redrelay_namespace",
    "redrelay_server",
    "redrelay_url",
    "relay",
]


@pytest.fixture(scope="session")
def redrelay_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A ``redis-server`` for the whole test session (Unix socket, AOF off)."""
    from ._server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redrelay-server"), appendonly=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redrelay_url(redrelay_server: RedisServer) -> str:
    """The URL of the session's ``redis-server``."""
    return redrelay_server.url


@pytest.fixture(scope="session")
def redrelay_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalCluster]:
    """A 3-primary Redis Cluster on loopback for the whole session (``.servers``, ``.url``)."""
    from ._cluster import LocalCluster

    with LocalCluster(tmp_path_factory.mktemp("redrelay-cluster"), nodes=3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redrelay_cluster_url(redrelay_cluster: LocalCluster) -> str:
    """The ``redis+cluster://`` URL of the session's cluster (naming every node)."""
    return redrelay_cluster.url


@pytest.fixture
def make_relay(redrelay_url: str) -> Iterator[Callable[..., Relay]]:
    """A factory of :class:`~redrelay.Relay` objects on the session server.

    ``make_relay(**kwargs)`` passes ``kwargs`` to ``Relay``; ``url`` defaults to the
    session server and ``namespace`` to a fresh ``test-<hex>``. Pass the same
    ``namespace=`` twice to get two relays (say, a web process and a worker) that share
    keys. At teardown every relay is closed and its namespace's keys are deleted.
    """
    from .relay import Relay

    relays: list[Relay] = []
    namespaces: list[str] = []

    def factory(**kwargs: Any) -> Relay:
        kwargs.setdefault("url", redrelay_url)
        kwargs.setdefault("namespace", f"test-{secrets.token_hex(6)}")
        relay = Relay(**kwargs)
        relays.append(relay)
        if relay.namespace not in namespaces:
            namespaces.append(relay.namespace)
        return relay

    try:
        yield factory
    finally:
        try:
            for relay in reversed(relays):
                relay.close()
        finally:
            _delete_namespaces(redrelay_url, namespaces)


@pytest.fixture
def relay(make_relay: Callable[..., Relay]) -> Relay:
    """A :class:`~redrelay.Relay` in its own namespace on the session server."""
    return make_relay()


@pytest.fixture
def redrelay_namespace(redrelay_url: str) -> Iterator[str]:
    """A namespace of this test's own on the session server; its keys go at teardown."""
    namespace = f"test-{secrets.token_hex(6)}"
    try:
        yield namespace
    finally:
        _delete_namespaces(redrelay_url, [namespace])


@pytest.fixture
def django_redrelay(
    request: pytest.FixtureRequest, redrelay_url: str, redrelay_namespace: str
) -> Iterator[Relay]:
    """``settings.REDRELAY`` on the session server, in this test's namespace (pytest-django).

    Every alias keeps its other settings; ``default`` gets ``redrelay_namespace`` and
    each other alias ``<namespace>-<alias>``. Returns the default alias's relay. In a
    ``TestCase`` test, ``get_relay().drain()`` runs handlers on the test's database
    connection, so they see its uncommitted rows. Example ``conftest.py``::

        @pytest.fixture(autouse=True)
        def _redrelay(django_redrelay):
            return django_redrelay
    """
    settings = request.getfixturevalue("settings")  # pytest-django's, undone after
    from .contrib.django import get_relay

    configured = getattr(settings, "REDRELAY", None) or {"default": {}}
    namespaces = []
    aliases: dict[str, Any] = {}
    for alias, options in configured.items():
        namespace = redrelay_namespace
        if alias != "default":
            namespace = f"{redrelay_namespace}-{alias}"
            namespaces.append(namespace)
        aliases[alias] = {**options, "URL": redrelay_url, "NAMESPACE": namespace}
    settings.REDRELAY = aliases
    try:
        yield get_relay()
    finally:
        _delete_namespaces(redrelay_url, namespaces)


def _delete_namespaces(url: str, namespaces: list[str]) -> None:
    """Delete every key under ``<namespace>:`` (SCAN MATCH + UNLINK)."""
    if not namespaces:
        return
    from .io.admin import AdminClient

    with AdminClient(url) as client:
        for namespace in namespaces:
            pattern = _glob_escape(namespace) + ":*"
            cursor: bytes = b"0"
            while True:
                reply = client.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
                assert isinstance(reply, list) and isinstance(reply[0], bytes)
                cursor, keys = reply[0], reply[1]
                if isinstance(keys, list) and keys:
                    client.command("UNLINK", *(k for k in keys if isinstance(k, bytes)))
                if cursor == b"0":
                    break


def _glob_escape(text: str) -> str:
    """Escape Redis glob characters so a namespace matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
