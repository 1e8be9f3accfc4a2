"""``redis+sentinel://`` URLs: which Sentinels to ask, for which service, with what.

The form (one or more Sentinels, comma-separated, default port 26379)::

    redis+sentinel://[user:password@]host1:26379,host2:26379,host3:26379/<service>[/<db>]
        [?sentinel_username=...&sentinel_password=...]

``user:password@`` authenticates to the Redis servers (the primary), like in a
``redis://`` URL; Sentinels protected by their own password take
``sentinel_password=`` (and ``sentinel_username=``) in the query. No redis-py import
here: :mod:`redrelay.io.sync` builds the client from a :class:`SentinelURL`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigurationError

__all__ = ["DEFAULT_SENTINEL_PORT", "SCHEME", "SentinelURL", "parse_sentinel_url"]

SCHEME = "redis+sentinel://"
DEFAULT_SENTINEL_PORT = 26379
_QUERY = {"sentinel_username", "sentinel_password"}
_FORM = "redis+sentinel://[user:password@]host1:26379,host2:26379/<service>[/<db>]"


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def sentinel_kwargs(
        self, socket_timeout: float, retry: object
    ) -> dict[str, object]:
        """How to talk to the Sentinels themselves (short timeouts: the next Sentinel is
        the retry, so ``retry`` should make none)."""
        return {
            "socket_timeout": min(2.0, socket_timeout),
            "socket_connect_timeout": 2.0,
            "retry": retry,
            "username": self.sentinel_username,
            "password": self.sentinel_password,
        }

    def primary_kwargs(self) -> dict[str, Any]:
        """The service, database and credentials of the primary, for ``master_for``."""
        return {
            "service_name": self.service,
            "db": self.db,
            "username": self.username,
            "password": self.password,
        }


def _bad(url: str, why: str) -> ConfigurationError:
    from .sync import redact

    return ConfigurationError(
        f"invalid Sentinel URL {redact(url)!r}: {why}; the form is {_FORM}"
    )


def _host_port(url: str, item: str) -> tuple[str, int]:
    if item.startswith("["):  # [::1]:26379
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise _bad(url, f"empty host in {item!r}")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _bad(url, f"port of {item!r} must be 1-65535")
    return host, int(port_text)


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse and check a ``redis+sentinel://`` URL.

    :raises ConfigurationError: naming what is wrong (passwords redacted).
    """
    if not url.startswith(SCHEME):
        raise _bad(url, "it must start with redis+sentinel://")
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = tuple(_host_port(url, h.strip()) for h in hosts.split(","))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise _bad(url, "no service name (the primary's name in the Sentinel config)")
    if len(path) > 2:
        raise _bad(url, f"too many path parts {parts.path!r}")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise _bad(url, f"the database must be a number, got {path[1]!r}")
        db = int(path[1])
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - _QUERY)
    if unknown:
        raise _bad(url, f"unknown query parameters {unknown} (known: {sorted(_QUERY)})")
    return SentinelURL(
        sentinels=sentinels,
        service=unquote(path[0]),
        db=db,
        username=unquote(username) or None,
        password=unquote(password) if userinfo and ":" in userinfo else None,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
    )
