"""Settings value objects, and the one place where the environment is read."""

from __future__ import annotations

import difflib
import inspect
import os
import re
from dataclasses import dataclass, field

from ._types import Duration as Duration
from .errors import ConfigurationError, DurabilityNotConfirmed
from .io.cluster import CLUSTER_SCHEMES, split_cluster_url
from .io.sentinel import SCHEME as SENTINEL_SCHEME
from .io.sentinel import parse_sentinel_url
from .io.sync import redact
from .protocol.transitions import Backoff, to_seconds

__all__ = ["ENV_URL", "ConsumerOptions", "Duration", "Durability", "resolve_url"]

#: Environment variable holding the Redis URL.
ENV_URL = "REDRELAY_URL"


def resolve_url(url: str | None) -> str | None:
    """The URL to use: the argument, else ``$REDRELAY_URL``, else None (the embedded server)."""
    if url is None:
        url = os.environ.get(ENV_URL) or None
    if url is not None and url.startswith(SENTINEL_SCHEME):
        parse_sentinel_url(url)  # fail now, naming what is wrong
    elif url is not None and url.startswith(CLUSTER_SCHEMES):
        split_cluster_url(url, redact(url))  # fail now, naming what is wrong
    elif url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            f"unsupported Redis URL {redact(url)!r}: use redis://host:port/db, rediss:// (TLS), "
            "unix:///path, redis+sentinel://host:26379,.../<service>[/db] (Sentinel) or "
            "redis+cluster://host:port[,host:port...] (Redis Cluster)"
        )
    return url


#: "replicas:2", "aof", "aof+replicas:1"
_DURABLE = re.compile(r"(?P<aof>aof)?(?:(?(aof)\+)replicas:(?P<n>[1-9][0-9]*))?")


@dataclass(frozen=True, slots=True)
class Durability:
    """What a durable put waits for after its write, on the same connection.

    ``"replicas:N"``: ``WAIT N timeout`` (N replicas have the write in memory);
    ``"aof"``: ``WAITAOF 1 0 timeout`` (the primary fsynced it to its AOF, Redis >= 7.2);
    ``"aof+replicas:N"``: ``WAITAOF 1 N timeout`` (the primary and N replicas fsynced it).
    """

    spec: str
    replicas: int
    aof: bool
    timeout: float

    @classmethod
    def parse(cls, spec: object, timeout: float, name: str = "durable") -> Durability:
        """Check a ``durable=`` value, naming the argument and the accepted forms."""
        match = _DURABLE.fullmatch(spec) if isinstance(spec, str) else None
        replicas = int(match["n"] or 0) if match else 0
        if match is None or not replicas <= 100 or not (match["aof"] or replicas):
            raise ConfigurationError(
                f"{name}= must be 'replicas:N' (N from 1 to 100), 'aof' or "
                f"'aof+replicas:N', got {spec!r}"
            )
        return cls(match[0], replicas, bool(match["aof"]), timeout)

    def command(self) -> tuple[str | int, ...]:
        """``WAIT`` or ``WAITAOF``, with the timeout in milliseconds (never 0: forever)."""
        ms = max(1, round(self.timeout * 1000))
        if self.aof:
            return ("WAITAOF", 1, self.replicas, ms)
        return ("WAIT", self.replicas, ms)

    def check(self, reply: object, ids: list[str]) -> None:
        """Raise :class:`DurabilityNotConfirmed` unless ``reply`` meets the spec."""
        if self.aof and isinstance(reply, list) and len(reply) == 2:
            local, replicas = int(reply[0]), int(reply[1])
            if local >= 1 and replicas >= self.replicas:
                return
            got = f"local AOF fsync {'yes' if local else 'no'}, {replicas} replica(s)"
        elif not self.aof and isinstance(reply, int):
            if reply >= self.replicas:
                return
            got = f"{reply} replica(s)"
        else:
            got = f"an unexpected reply {reply!r}"
        raise DurabilityNotConfirmed(ids, self.spec, got, self.timeout)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerOptions:
    """How one queue is consumed. Built by ``@relay.consumer`` from the relay's defaults.

    :param concurrency: handler threads in each worker process; for an ``async def``
        handler, coroutines in flight at once on the worker's one event loop thread.
    :param prefetch: entries fetched per round trip by each fetching thread.
    :param retries: failed attempts that are retried; then the message is dead-lettered.
    :param backoff: delay before each retry.
    :param lease: seconds a consumer's deliveries stay its own without a heartbeat.
    :param heartbeat: seconds between heartbeats (default: a quarter of the lease).
    :param time_limit: seconds a handler may run; past it :class:`TimeLimitExceeded` is
        raised inside the handler (a failure: retried, then dead-lettered), and a handler
        that does not stop within a second more is abandoned (None: no limit).
    :param max_deliveries: hand-outs (crashes included) before the message is dead-lettered
        without running (default: ``retries + 3``).
    :param result_ttl: seconds to keep each message's outcome (its return value, or the
        failure of a dead one) for ``queue.result(id)``; None (default) stores nothing and
        keeps the ack path unchanged. See docs/results.md.
    """

    concurrency: int = 1
    prefetch: int = 50
    retries: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    lease: float = 10.0
    heartbeat: float = 2.5
    max_deliveries: int = 6
    time_limit: float | None = None
    result_ttl: float | None = None

    @classmethod
    def check_names(cls, options: dict[str, object], where: str) -> None:
        """Refuse an unknown option (a typo) with a suggestion, instead of a TypeError."""
        known = [p for p in inspect.signature(cls.build).parameters if p != "cls"]
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = (
                    f"did you mean {close[0]}=?"
                    if close
                    else f"known: {', '.join(known)}"
                )
                raise ConfigurationError(
                    f"{where} got an unknown option {name}= ({hint})"
                )

    @classmethod
    def build(
        cls,
        *,
        concurrency: int = 1,
        prefetch: int = 50,
        retries: int = 3,
        backoff: Backoff | Duration | None = None,
        lease: Duration = 10.0,
        heartbeat: Duration | None = None,
        max_deliveries: int | None = None,
        time_limit: Duration | None = None,
        result_ttl: Duration | None = None,
    ) -> ConsumerOptions:
        """Validate public arguments (naming the bad one) and fill derived defaults."""
        _positive_int("concurrency", concurrency, 1024)
        _positive_int("prefetch", prefetch, 1000)
        _positive_int("retries", retries, 10_000, allow_zero=True)
        lease_s = to_seconds(lease, "lease", allow_zero=False)
        if lease_s < 0.2:
            raise ConfigurationError(
                f"lease= must be at least 0.2 seconds, got {lease_s}"
            )
        beat = (
            to_seconds(heartbeat, "heartbeat", allow_zero=False)
            if heartbeat is not None
            else lease_s / 4
        )
        if beat >= lease_s / 2:
            raise ConfigurationError(
                f"heartbeat= ({beat}s) must be under half the lease ({lease_s}s), so one late beat is not fatal"
            )
        if max_deliveries is None:
            max_deliveries = retries + 3
        _positive_int("max_deliveries", max_deliveries, 1_000_000)
        if not isinstance(backoff, Backoff):
            base = 1.0 if backoff is None else to_seconds(backoff, "backoff")
            backoff = Backoff(base=base)
        return cls(
            concurrency=concurrency,
            prefetch=prefetch,
            retries=retries,
            backoff=backoff,
            lease=lease_s,
            heartbeat=beat,
            max_deliveries=max_deliveries,
            time_limit=None
            if time_limit is None
            else to_seconds(time_limit, "time_limit", allow_zero=False),
            result_ttl=None
            if result_ttl is None
            else to_seconds(result_ttl, "result_ttl", allow_zero=False),
        )


def _positive_int(
    name: str, value: object, limit: int, *, allow_zero: bool = False
) -> None:
    low = 0 if allow_zero else 1
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not low <= value <= limit
    ):
        raise ConfigurationError(
            f"{name}= must be an int from {low} to {limit}, got {value!r}"
        )
