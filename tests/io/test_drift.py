"""The sync and async layers must not drift: same methods, same parameters.

httpcore generates its sync code from the async code; here both are written by hand
(each is small), and these tests fail as soon as one side gains, loses or changes a
method or a parameter that the other does not.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from redrelay import Channel, Queue, Relay, Topic
from redrelay.contrib.flask import RedRelay
from redrelay.handlers import Consumer
from redrelay.io.aio import AsyncConnection
from redrelay.io.sync import Connection
from redrelay.schedules import Schedules


def _methods(cls: type) -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(value)
    }


#: Used only by the worker's threads and the listener thread, which run on the sync
#: layer; a producer never needs them.
SYNC_ONLY = {"node_tags", "send_script", "subscriber_connection"}


def test_io_layers_have_the_same_methods_and_signatures() -> None:
    sync, aio = _methods(Connection), _methods(AsyncConnection)
    assert SYNC_ONLY <= set(sync)
    sync = {name: m for name, m in sync.items() if name not in SYNC_ONLY}
    assert sorted(sync) == sorted(aio)
    assert {"run", "call", "pipeline", "config_get", "close", "send", "drive"} <= set(
        sync
    )
    for name in sync:
        assert inspect.signature(sync[name]) == inspect.signature(aio[name]), name
        assert not inspect.iscoroutinefunction(sync[name]), name
        assert inspect.iscoroutinefunction(aio[name]), name
    assert inspect.signature(Connection) == inspect.signature(AsyncConnection)
    assert isinstance(vars(Connection)["client"], property)
    assert isinstance(vars(AsyncConnection)["client"], property)


@pytest.mark.parametrize(
    "cls", [Queue, Channel, Topic, Relay, Consumer, RedRelay, Schedules]
)
def test_every_async_method_has_a_sync_twin_with_the_same_parameters(
    cls: type,
) -> None:
    methods = _methods(cls)
    twins = {
        name: methods[name[1:]]
        for name, method in methods.items()
        if name.startswith("a") and inspect.iscoroutinefunction(method)
    }
    for name, sync in twins.items():
        assert name[1:] in methods, f"{cls.__name__}.{name} has no sync twin"
        assert inspect.signature(methods[name]) == inspect.signature(sync), name
        assert not inspect.iscoroutinefunction(sync), name
    # not vacuous: the twins the docs promise exist
    promised = {
        Queue: {"aput", "aput_many", "astats"},
        Channel: {"apublish"},
        Topic: {"apublish", "apublish_many"},
        Relay: {"apublish", "astats", "aclose"},
        Consumer: {"aput"},
        RedRelay: {"apublish"},
        Schedules: {"ainfo", "apause", "aresume", "atrigger", "aremove"},
    }[cls]
    assert promised <= set(twins)


def test_the_drift_check_would_fail() -> None:
    class Drifted:
        def put(self, body: Any, *, delay: float | None = None) -> str: ...

        async def aput(self, body: Any) -> str: ...

    methods = _methods(Drifted)
    assert inspect.signature(methods["aput"]) != inspect.signature(methods["put"])
