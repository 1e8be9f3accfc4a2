"""The ``REDRELAY`` setting, and the relays built from it (lazily, reset on change).

``REDRELAY`` is a dict of aliases, like ``CACHES`` and ``TASKS``::

    REDRELAY = {
        "default": {
            "URL": "redis://localhost:6379/0",   # None: $REDRELAY_URL, else embedded
            "NAMESPACE": "myproject",
            "OPTIONS": {"retries": 5, "lease": 30, "max_message_size": 2_000_000},
            "OUTBOX": False,
        },
    }

Keys of one alias (each optional; unknown keys are system check errors):

``URL``
    ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://`` or
    ``redis+cluster://``. ``None`` (default): ``$REDRELAY_URL``, else the embedded
    development ``redis-server`` when ``DEBUG`` is on, under the test runner, or when
    ``EMBEDDED`` is True; else an error (system check ``redrelay.E012``).
``EMBEDDED``
    ``True``: without a URL, use the embedded ``redis-server`` even with ``DEBUG`` off
    (default ``False``). Its data directory is ``OPTIONS["data_dir"]``, else
    ``$REDRELAY_DATA_DIR``, else ``<BASE_DIR>/.redrelay`` (the folder above the settings
    module when there is no ``BASE_DIR``), whatever the current directory.
``START_IN_PROCESS``
    ``True``: run this alias's consumers and subscribers (and its outbox relay) on
    background threads of each process that serves requests, started by its first
    request (which waits until the subscriptions are in place). Never in the
    autoreloader's parent, ``manage.py shell``, ``migrate`` or ``relay_worker``. Each
    serving process runs its own copy: channel subscribers get every message once per
    process. Default ``False``: run ``manage.py relay_worker``.
``NAMESPACE``
    Prefix of every key and channel (default ``"redrelay"``).
``OPTIONS``
    Keyword arguments of :class:`redrelay.Relay`: ``codec``, ``max_message_size``,
    ``dedup_ttl``, ``dead_letter_cap``, ``connect_retries``, ``data_dir``, ``on_gap``,
    ``on_failure``, ``on_dead`` (each a
    callable or its dotted path), and the consumer defaults ``concurrency``,
    ``prefetch``, ``retries``, ``backoff``, ``lease``, ``heartbeat``, ``max_deliveries``.
``OUTBOX``
    ``True``: :func:`~redrelay.contrib.django.enqueue_on_commit` and
    :func:`~redrelay.contrib.django.publish_on_commit` write an outbox row inside the
    transaction instead of waiting for the commit (default ``False``).
``OUTBOX_POLL``
    Seconds between two reads of the outbox table by ``relay_worker`` (default 0.5).
``OUTBOX_BATCH``
    Rows sent per outbox transaction (default 100).
``SSE_AUTHORIZE``
    A callable ``(request, channel) -> bool``, or its dotted path, deciding who may
    stream a channel from :class:`~redrelay.contrib.django.views.EventStreamView`.
    Default: the view streams any channel its URL pattern lets through.
``SSE_KEEPALIVE``
    Seconds between keep-alive comments on an idle event stream (default 15).

The relays built from these settings live in :mod:`redrelay.contrib.django.relays`.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ...config import ConsumerOptions, resolve_url
from ...embedded import default_data_dir
from ...errors import ConfigurationError, InvalidName
from ...protocol.keys import validate_name
from ...relay import Relay

__all__ = [
    "ALIAS_KEYS",
    "DEFAULT_ALIAS",
    "OPTION_KEYS",
    "InvalidRelaySettings",
    "Problem",
    "RelaySettings",
    "problems",
    "relay_settings",
]

#: The alias used when none is given.
DEFAULT_ALIAS = "default"

#: Keys an alias of ``REDRELAY`` may hold.
ALIAS_KEYS = frozenset(
    {
        "URL",
        "NAMESPACE",
        "OPTIONS",
        "OUTBOX",
        "OUTBOX_POLL",
        "OUTBOX_BATCH",
        "SSE_AUTHORIZE",
        "SSE_KEEPALIVE",
        "EMBEDDED",
        "START_IN_PROCESS",
    }
)


def _option_keys() -> frozenset[str]:
    # Read from the signatures, so a new Relay or consumer option is accepted here too.
    relay = inspect.signature(Relay.__init__).parameters
    consumer = inspect.signature(ConsumerOptions.build).parameters
    skip = {"self", "url", "namespace", "consumer_defaults", "embedded"}
    return frozenset(name for name in [*relay, *consumer] if name not in skip)


#: Keys ``OPTIONS`` may hold: the keyword arguments of ``Relay()``, consumer defaults
#: included.
OPTION_KEYS = _option_keys()
#: Options that take a callable or its dotted path.
HOOKS = ("on_gap", "on_failure", "on_dead")


class InvalidRelaySettings(ImproperlyConfigured, ConfigurationError):
    """The ``REDRELAY`` setting is invalid; the message names the key and the fix.

    ``manage.py check`` reports the same problems as ``redrelay.E0xx`` errors.
    """


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the settings: a check id suffix, what, and how to fix it."""

    code: str
    msg: str
    hint: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RelaySettings:
    """One alias of ``REDRELAY``, validated, with defaults filled in."""

    alias: str
    url: str | None = None
    namespace: str = "redrelay"
    options: dict[str, Any] = field(default_factory=dict)
    outbox: bool = False
    outbox_poll: float = 0.5
    outbox_batch: int = 100
    sse_authorize: Callable[..., bool] | str | None = None
    sse_keepalive: float = 15.0
    embedded: bool = False
    start_in_process: bool = False

    def relay_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``Relay()`` (hooks imported if dotted paths;
        ``embedded`` from ``EMBEDDED`` or ``DEBUG``; ``data_dir`` beside the project)."""
        kwargs = dict(self.options)
        for hook in HOOKS:
            if isinstance(kwargs.get(hook), str):
                kwargs[hook] = import_string(kwargs[hook])
        kwargs["embedded"] = self.embedded or embedded_by_default()
        if kwargs.get("data_dir") is None:
            kwargs["data_dir"] = default_data_dir(project_dir())
        return kwargs

    def authorizer(self) -> Callable[..., bool] | None:
        """The ``SSE_AUTHORIZE`` callable (imported if a dotted path), or None."""
        if isinstance(self.sse_authorize, str):
            return import_string(self.sse_authorize)  # type: ignore[no-any-return]
        return self.sse_authorize


def embedded_by_default() -> bool:
    """Whether a missing URL may mean the embedded server without ``EMBEDDED``: with
    ``DEBUG`` on, or under Django's test runner or pytest-django (which turn ``DEBUG``
    off, and give ``django.core.mail`` its test ``outbox``)."""
    from django.core import mail

    return bool(settings.DEBUG) or hasattr(mail, "outbox")


def project_dir() -> Path | None:
    """``settings.BASE_DIR``, else the folder above the settings module (where
    ``startproject`` puts ``manage.py``), else None."""
    base = getattr(settings, "BASE_DIR", None)
    if base is not None:
        return Path(base)
    module = sys.modules.get(getattr(settings, "SETTINGS_MODULE", "") or "")
    path = getattr(module, "__file__", None)
    return Path(path).absolute().parent.parent if path else None


def _raw_setting() -> object:
    return getattr(settings, "REDRELAY", None)


def _aliases(raw: object) -> dict[str, Any]:
    if raw is None:
        return {DEFAULT_ALIAS: {}}
    if not isinstance(raw, dict):
        raise InvalidRelaySettings(
            f"settings.REDRELAY must be a dict of aliases, got {type(raw).__name__} "
            '(e.g. REDRELAY = {"default": {"URL": "redis://localhost:6379/0"}})'
        )
    return raw


def problems(alias: str, config: object) -> Iterator[Problem]:
    """Everything wrong with ``REDRELAY[alias]`` (system checks and getters share this)."""
    where = f"REDRELAY[{alias!r}]"
    if not isinstance(config, dict):
        yield Problem(
            "E002",
            f"{where} must be a dict, got {type(config).__name__}.",
            'Give each alias a dict, e.g. {"URL": "redis://localhost:6379/0"}.',
        )
        return
    for key in sorted(set(config) - ALIAS_KEYS, key=str):
        close = difflib.get_close_matches(str(key), ALIAS_KEYS, n=1)
        yield Problem(
            "E005",
            f"{where} has an unknown key {key!r}.",
            f"Did you mean {close[0]!r}?"
            if close
            else f"Known keys: {', '.join(sorted(ALIAS_KEYS))}.",
        )
    yield from _url_problems(where, config.get("URL"))
    namespace = config.get("NAMESPACE", "redrelay")
    try:
        validate_name("namespace", namespace)
    except InvalidName as exc:
        yield Problem(
            "E007",
            f"{where}['NAMESPACE']: {exc}.",
            "Use ASCII letters, digits and _ . : - (e.g. your project's name).",
        )
    yield from _option_problems(where, config.get("OPTIONS", {}), config.get("URL"))
    yield from _outbox_problems(where, config)
    yield from _sse_problems(where, config)
    for key in ("EMBEDDED", "START_IN_PROCESS"):
        if not isinstance(config.get(key, False), bool):
            yield Problem(
                "E013",
                f"{where}[{key!r}] must be True or False, got {config[key]!r}.",
                "The default is False.",
            )


def _url_problems(where: str, url: object) -> Iterator[Problem]:
    if url is None:
        return
    if not isinstance(url, str):
        yield Problem(
            "E004",
            f"{where}['URL'] must be a str or None, got {type(url).__name__}.",
            "Use redis://host:port/db, rediss:// (TLS), unix:///path or "
            "redis+sentinel://host:26379,.../<service>, or None for "
            "$REDRELAY_URL or the embedded development server.",
        )
        return
    try:
        resolve_url(url)
    except ConfigurationError as exc:
        yield Problem("E004", f"{where}['URL']: {exc}.", "Fix the URL's scheme.")


def _option_problems(where: str, options: object, url: object) -> Iterator[Problem]:
    if not isinstance(options, dict):
        yield Problem(
            "E006",
            f"{where}['OPTIONS'] must be a dict, got {type(options).__name__}.",
            "OPTIONS holds keyword arguments of redrelay.Relay().",
        )
        return
    unknown = sorted(set(options) - OPTION_KEYS, key=str)
    for key in unknown:
        close = difflib.get_close_matches(str(key), OPTION_KEYS, n=1)
        yield Problem(
            "E006",
            f"{where}['OPTIONS'] has an unknown option {key!r}.",
            f"Did you mean {close[0]!r}?"
            if close
            else f"Known options: {', '.join(sorted(OPTION_KEYS))}.",
        )
    if unknown:
        return
    kwargs = dict(options)
    for hook in HOOKS:
        path = kwargs.get(hook)
        if not isinstance(path, str):
            continue
        try:
            kwargs[hook] = import_string(path)
        except ImportError as exc:
            yield Problem(
                "E006",
                f"{where}['OPTIONS'][{hook!r}]: cannot import {path!r} ({exc}).",
                "Give a callable or the dotted path of one.",
            )
            return
    if not isinstance(url, str) or any(_url_problems("", url)):
        url = None  # E004 reports a bad URL, once
    try:
        # Relay() stores configuration only (no I/O), and names the bad value.
        Relay(url, **kwargs)
    except ConfigurationError as exc:
        yield Problem("E006", f"{where}['OPTIONS']: {exc}.", "Fix the option's value.")
    except TypeError as exc:
        yield Problem("E006", f"{where}['OPTIONS']: {exc}.", "Fix the option's value.")


def _number(value: object, *, integer: bool = False) -> bool:
    if isinstance(value, bool) or (integer and not isinstance(value, int)):
        return False
    return isinstance(value, (int, float)) and value > 0


def _outbox_problems(where: str, config: dict[str, Any]) -> Iterator[Problem]:
    if not isinstance(config.get("OUTBOX", False), bool):
        yield Problem(
            "E008",
            f"{where}['OUTBOX'] must be True or False, got {config['OUTBOX']!r}.",
            "True sends enqueue_on_commit/publish_on_commit through the outbox table.",
        )
    if not _number(config.get("OUTBOX_POLL", 0.5)):
        yield Problem(
            "E008",
            f"{where}['OUTBOX_POLL'] must be a number of seconds > 0, got {config['OUTBOX_POLL']!r}.",
            "The default is 0.5.",
        )
    if not _number(config.get("OUTBOX_BATCH", 100), integer=True):
        yield Problem(
            "E008",
            f"{where}['OUTBOX_BATCH'] must be an int > 0, got {config['OUTBOX_BATCH']!r}.",
            "The default is 100.",
        )


def _sse_problems(where: str, config: dict[str, Any]) -> Iterator[Problem]:
    authorize = config.get("SSE_AUTHORIZE")
    if isinstance(authorize, str):
        try:
            authorize = import_string(authorize)
        except ImportError as exc:
            yield Problem(
                "E009",
                f"{where}['SSE_AUTHORIZE']: cannot import {config['SSE_AUTHORIZE']!r} ({exc}).",
                "Give the dotted path of a function (request, channel) -> bool.",
            )
            return
    if authorize is not None and not callable(authorize):
        yield Problem(
            "E009",
            f"{where}['SSE_AUTHORIZE'] must be callable, got {type(authorize).__name__}.",
            "Give a function (request, channel) -> bool, or its dotted path.",
        )
    if not _number(config.get("SSE_KEEPALIVE", 15.0)):
        yield Problem(
            "E009",
            f"{where}['SSE_KEEPALIVE'] must be a number of seconds > 0, got {config['SSE_KEEPALIVE']!r}.",
            "The default is 15.",
        )


def relay_settings(alias: str = DEFAULT_ALIAS) -> RelaySettings:
    """Read and validate ``REDRELAY[alias]``.

    Reads ``settings.REDRELAY`` (absent: one ``"default"`` alias with every default).

    :raises InvalidRelaySettings: the setting is invalid, or has no such alias.
    """
    aliases = _aliases(_raw_setting())
    if alias not in aliases:
        known = ", ".join(repr(a) for a in aliases) or "none"
        raise InvalidRelaySettings(
            f"settings.REDRELAY has no alias {alias!r} (known: {known}); add "
            f'REDRELAY[{alias!r}] = {{"URL": ...}} or use one of those'
        )
    config = aliases[alias]
    for problem in problems(alias, config):
        raise InvalidRelaySettings(f"{problem.msg} {problem.hint}")
    return RelaySettings(
        alias=alias,
        url=config.get("URL"),
        namespace=config.get("NAMESPACE", "redrelay"),
        options=dict(config.get("OPTIONS", {})),
        outbox=config.get("OUTBOX", False),
        outbox_poll=float(config.get("OUTBOX_POLL", 0.5)),
        outbox_batch=int(config.get("OUTBOX_BATCH", 100)),
        sse_authorize=config.get("SSE_AUTHORIZE"),
        sse_keepalive=float(config.get("SSE_KEEPALIVE", 15.0)),
        embedded=config.get("EMBEDDED", False),
        start_in_process=config.get("START_IN_PROCESS", False),
    )
