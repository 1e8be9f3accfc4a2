"""Periodic jobs in Django: ``@periodic`` in consumers.py style, ``relay_schedules``."""

from __future__ import annotations

from io import StringIO
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from redrelay import Message
from redrelay.contrib.django import get_relay, periodic
from redrelay.worker.periodic import Scheduler


def run(*args: str, **options: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


@pytest.mark.usefixtures("declarations")
def test_periodic_declaration_and_relay_schedules(namespace: str) -> None:
    @periodic(every=60, name="cleanup", queue="cleanup")
    def cleanup(message: Message) -> None: ...

    relay = get_relay()
    assert "cleanup" in relay.schedules and "cleanup" in relay.consumers
    assert "no schedules in namespace" in run("relay_schedules")
    Scheduler(relay).run_once()  # as a worker does: registers it
    [row] = orjson.loads(run("relay_schedules", "--json"))
    assert row["name"] == "cleanup" and row["timing"] == "every 60s"
    assert "paused 'cleanup'" in run("relay_schedules", "pause", "cleanup")
    assert orjson.loads(run("relay_schedules", "--json"))[0]["paused"] is True
    assert "cleanup" in run("relay_schedules")
    with pytest.raises(CommandError, match="no schedule 'nope'"):
        run("relay_schedules", "resume", "nope")
    with pytest.raises(CommandError, match="needs a schedule NAME"):
        run("relay_schedules", "trigger")
