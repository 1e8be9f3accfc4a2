"""Helpers for the security tests: certificates, TLS and ACL servers, worker processes."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from redrelay._server import AdminClient, RedisServer, free_port

from .. import processes
from ..processes import ROOT as ROOT

#: The commands redrelay needs: producers, workers, listeners and ``relay.drain()``.
#: Found empirically: INFO commandstats after the scenario of test_acl.py run as a user
#: with +@all, then the scenario again without each command in turn (every one is
#: needed: a test fails, or the ACL LOG shows a denial). CONFIG GET is left out on
#: purpose (see docs/security.md).
REDRELAY_COMMANDS = (
    # health checks: redis-py's on idle connections, the listener's on its subscription
    # (AUTH and HELLO need no rule: Redis always allows them)
    "ping",
    # producers: put, put_many (MULTI/EXEC), publish, queue registration
    "lpush",
    "sadd",
    "multi",
    "exec",
    "publish",
    # every queue transition is a Lua script: EVALSHA, then EVAL after a NOSCRIPT ...
    "evalsha",
    "eval",
    # ... and the scripts call these with the caller's permissions
    "rpop",
    "rpush",
    "del",
    "get",
    "set",
    "hget",
    "hset",
    "hdel",
    "hexists",
    "hincrby",
    "hkeys",
    "hvals",
    "hmget",
    "zadd",
    "zrem",
    "zscore",
    "zrangebyscore",
    "time",
    # workers: the blocking wait on an empty queue
    "blmove",
    # stats, peek, dead letters, relay.stats(), relay.drain()
    "smembers",
    "llen",
    "lindex",
    "lrange",
    "zcard",
    "zrange",
    "zrevrange",
    "hgetall",
    "hlen",
    # channel listeners
    "subscribe",
    "psubscribe",
    "unsubscribe",
    "punsubscribe",
)


def acl_setuser(
    user: str,
    password: str,
    namespace: str,
    patterns: Sequence[str] = (),
    *,
    keys: Sequence[str] | None = None,
) -> list[str]:
    """The ``ACL SETUSER`` arguments of a user limited to one redrelay namespace.

    ``patterns``: the channel patterns the user's listeners subscribe to. Redis checks a
    PSUBSCRIBE pattern *literally* against the user's channel rules, so ``&<ns>:*``
    allows ``PSUBSCRIBE <ns>:*`` only; each pattern gets a rule of its own.
    ``keys``: key patterns instead of ``<ns>:*``.
    """
    key_rules = [f"~{namespace}:*"] if keys is None else [f"~{k}" for k in keys]
    return [
        "ACL",
        "SETUSER",
        user,
        "reset",
        "resetchannels",  # Redis 6.2's reset leaves allchannels (acl-pubsub-default)
        "on",
        f">{password}",
        *key_rules,
        f"&{namespace}:*",
        *(f"&{namespace}:{pattern}" for pattern in patterns),
        "-@all",
        *(f"+{command}" for command in REDRELAY_COMMANDS),
    ]


def user_url(server: RedisServer, user: str, password: str) -> str:
    """``redis://user:password@127.0.0.1:PORT`` for a server that also listens on TCP."""
    return f"redis://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{server.port}"


class Admin:
    """A RESP client authenticated as the all-powerful ``admin`` user (Unix socket)."""

    USER, PASSWORD = "admin", "admin-secret-password"

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.locked = False

    def __call__(self, *args: str | bytes | int) -> object:
        with AdminClient(self.server.url) as client:
            if self.locked:
                client.command("AUTH", self.USER, self.PASSWORD)
            return client.command(*args)

    def lock(self) -> None:
        """Create ``admin`` and turn the ``default`` user off: nobody gets in without a user."""
        self(
            "ACL", "SETUSER", self.USER, "on", f">{self.PASSWORD}", "~*", "&*", "+@all"
        )
        self("ACL", "SETUSER", "default", "off")
        self.locked = True

    @property
    def url(self) -> str:
        """A redis-py URL for the admin user (for test bookkeeping, not for redrelay)."""
        return user_url(self.server, self.USER, self.PASSWORD)


# -- certificates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """PEM files made by :func:`make_certs`."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: a server certificate for 127.0.0.1, signed by another CA
    rogue_cert: Path
    rogue_key: Path
    #: a certificate signed by the right CA, but for another host name
    wrong_host_cert: Path
    wrong_host_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the security tests need the openssl command-line tool"
    result = subprocess.run(
        [openssl, *map(str, args)], cwd=cwd, capture_output=True, text=True
    )
    assert result.returncode == 0, f"openssl {args[0]} failed: {result.stderr}"


def _key(directory: Path, name: str) -> Path:
    path = directory / f"{name}.key"
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path,
        cwd=directory,
    )
    return path


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key = _key(directory, name)
    cert = directory / f"{name}.crt"
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        key,
        "-sha256",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-out",
        cert,
        cwd=directory,
    )
    return cert, key


def _issue(
    directory: Path, name: str, ca: tuple[Path, Path], san: str | None, serial: int
) -> tuple[Path, Path]:
    key = _key(directory, name)
    csr = directory / f"{name}.csr"
    cert = directory / f"{name}.crt"
    _openssl(
        "req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", csr, cwd=directory
    )
    ext = directory / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE"]
    if san:
        lines.append(f"subjectAltName={san}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca[0],
        "-CAkey",
        ca[1],
        "-set_serial",
        str(serial),
        "-days",
        "2",
        "-sha256",
        "-extfile",
        ext,
        "-out",
        cert,
        cwd=directory,
    )
    return cert, key


def make_certs(directory: Path) -> Certs:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and two
    bad server certificates (another CA; another host name)."""
    ca = _ca(directory, "test-ca")
    other_ca = _ca(directory, "other-ca")
    local = "DNS:localhost,IP:127.0.0.1"
    server = _issue(directory, "server", ca, local, 1)
    client = _issue(directory, "client", ca, None, 2)
    rogue = _issue(directory, "rogue", other_ca, local, 3)
    wrong = _issue(directory, "wrong-host", ca, "DNS:redis.example.org", 4)
    return Certs(
        ca=ca[0],
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        rogue_cert=rogue[0],
        rogue_key=rogue[1],
        wrong_host_cert=wrong[0],
        wrong_host_key=wrong[1],
    )


def tls_args(
    port: int, cert: Path, key: Path, ca: Path, auth_clients: str = "optional"
) -> list[str]:
    """``redis-server`` arguments for a TLS port (the plain TCP port stays 0: off)."""
    return [
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(ca),
        "--tls-auth-clients",
        auth_clients,
    ]


def tls_url(port: int, host: str = "127.0.0.1", **params: str | Path) -> str:
    """``rediss://host:port?ssl_ca_certs=...`` with the given query parameters."""
    query = urlencode({k: str(v) for k, v in params.items()})
    return f"rediss://{host}:{port}" + (f"?{query}" if query else "")


def start_tls_server(
    directory: Path,
    cert: Path,
    key: Path,
    ca: Path,
    auth_clients: str = "optional",
) -> tuple[RedisServer, int]:
    """A started ``redis-server`` with a TLS port; its Unix socket stays plain (admin)."""
    port = free_port()
    server = RedisServer(
        directory,
        appendonly=False,
        extra_args=tls_args(port, cert, key, ca, auth_clients),
    )
    return server.start(), port


# -- worker processes --------------------------------------------------------------------


class Worker(processes.Worker):
    """``python -m redrelay worker TARGET`` as a subprocess, its output in a file."""

    def __init__(self, target: str, url: str, **env: str) -> None:
        super().__init__(target, url, env=env, graceful=False)
