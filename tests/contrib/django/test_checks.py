"""System checks: ids, messages and hints (``manage.py check``)."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from redrelay import Message
from redrelay.contrib.django import consumer, subscriber


def redrelay_messages(**kwargs: Any) -> dict[str, checks.CheckMessage]:
    found = checks.run_checks(**kwargs)
    return {m.id: m for m in found if m.id and m.id.startswith("redrelay.")}


def test_a_valid_configuration_passes() -> None:
    assert redrelay_messages() == {}


@pytest.mark.parametrize(
    ("value", "check_id", "hint"),
    [
        ("redis://x", "redrelay.E001", "REDRELAY = {"),
        ({"default": []}, "redrelay.E002", "Give each alias a dict"),
        ({"replica": {"URL": "redis://x"}}, "redrelay.E003", 'add REDRELAY["default"]'),
        ({"default": {"URL": "http://x"}}, "redrelay.E004", "scheme"),
        ({"default": {"URL": 6379}}, "redrelay.E004", "redis://host:port/db"),
        (
            {"default": {"URL": "redis://x", "NAMSPACE": "a"}},
            "redrelay.E005",
            "'NAMESPACE'",
        ),
        ({"default": {"URL": "redis://x", "OPTIONS": []}}, "redrelay.E006", "Relay()"),
        (
            {"default": {"URL": "redis://x", "OPTIONS": {"concurency": 2}}},
            "redrelay.E006",
            "'concurrency'",
        ),
        (
            {"default": {"URL": "redis://x", "OPTIONS": {"codec": "pickle"}}},
            "redrelay.E006",
            "value",
        ),
        ({"default": {"URL": "redis://x", "NAMESPACE": ""}}, "redrelay.E007", "ASCII"),
        ({"default": {"URL": "redis://x", "OUTBOX_POLL": 0}}, "redrelay.E008", "0.5"),
        (
            {"default": {"URL": "redis://x", "OUTBOX_BATCH": 1.5}},
            "redrelay.E008",
            "100",
        ),
        (
            {"default": {"URL": "redis://x", "SSE_AUTHORIZE": 42}},
            "redrelay.E009",
            "dotted path",
        ),
        ({"default": {"URL": "redis://x", "SSE_KEEPALIVE": -1}}, "redrelay.E009", "15"),
    ],
)
def test_setting_errors(settings: Any, value: object, check_id: str, hint: str) -> None:
    settings.REDRELAY = value
    found = redrelay_messages()
    assert check_id in found, found
    assert found[check_id].level == checks.ERROR
    assert hint in (found[check_id].hint or "")


def test_no_url_with_debug_off_is_an_error_unless_embedded_is_asked(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.REDRELAY = {"default": {}}
    settings.DEBUG = False
    assert redrelay_messages() == {}  # under the test runner: allowed
    monkeypatch.delattr("django.core.mail.outbox")  # as in production
    found = redrelay_messages()
    assert set(found) == {"redrelay.E012"}
    assert "REDRELAY['default']['URL']" in (found["redrelay.E012"].hint or "")
    assert "'EMBEDDED'] = True" in (found["redrelay.E012"].hint or "")
    settings.DEBUG = True
    assert redrelay_messages() == {}
    settings.DEBUG = False
    settings.REDRELAY = {"default": {"EMBEDDED": True}}
    assert redrelay_messages() == {}
    settings.REDRELAY = {
        "default": {"URL": "redis://x", "EMBEDDED": "yes", "START_IN_PROCESS": 1}
    }
    found = redrelay_messages()
    assert set(found) == {"redrelay.E013"}


def test_embedded_server_is_fine_when_the_environment_names_a_url(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.REDRELAY = {"default": {}}
    monkeypatch.setenv("REDRELAY_URL", "redis://localhost:6379/0")
    assert redrelay_messages() == {}


@pytest.mark.usefixtures("declarations")
def test_a_handler_that_cannot_be_registered_is_an_error() -> None:
    @consumer("jobs")  # the test app's consumers.py has one already
    def again(message: Message) -> None:
        pass

    found = redrelay_messages()
    assert set(found) == {"redrelay.E010"}
    assert "already has a consumer" in found["redrelay.E010"].msg


@pytest.mark.usefixtures("declarations")
def test_an_unknown_handler_option_is_e010_not_a_crash() -> None:
    @consumer("emails", retrys=3)
    def send(message: Message) -> None:
        pass

    found = redrelay_messages()
    assert set(found) == {"redrelay.E010"}
    assert (
        "unknown option retrys= (did you mean retries=?)" in found["redrelay.E010"].msg
    )
    assert "test_checks" in found["redrelay.E010"].msg  # names where the handler is


@pytest.mark.usefixtures("declarations")
def test_a_handler_for_an_unknown_alias_is_e010() -> None:
    @subscriber("news", alias="replica")
    def on_news(message: Message) -> None:
        pass

    found = redrelay_messages()
    assert set(found) == {"redrelay.E010"}
    assert "names alias 'replica'" in found["redrelay.E010"].msg
    assert "never run" in found["redrelay.E010"].msg
    assert "alias=" in (found["redrelay.E010"].hint or "")


def test_a_bad_url_scheme_is_reported_once(settings: Any) -> None:
    settings.REDRELAY = {"default": {"URL": "http://localhost:6379"}}
    found = [m for m in checks.run_checks() if (m.id or "").startswith("redrelay.")]
    assert [m.id for m in found] == ["redrelay.E004"]


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"RELAY": "nope"}, "names 'nope', not a REDRELAY alias"),
        ({"RESULT_TLL": 5}, "did you mean 'RESULT_TTL'"),
        ({"RESULT_TTL": 0}, "RESULT_TTL"),
        ({"CONSUMER": {"retries": 3}}, "failed tasks are not retried"),
        ({"CONSUMER": {"lease": 0.01}}, "lease= must be at least"),
        ({"QUEUE_PREFIX": "bad prefix "}, "invalid queue name"),
    ],
)
def test_tasks_backend_errors(
    settings: Any, options: dict[str, Any], text: str
) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "redrelay.contrib.django.tasks.RedRelayBackend",
            "OPTIONS": options,
        }
    }
    from redrelay.contrib.django.tasks import RedRelayBackend

    backend = RedRelayBackend.__new__(RedRelayBackend)  # the settings fail __init__
    backend.alias, backend.options, backend.queues = "default", options, {"default"}
    found = {m.id: m for m in backend.check()}
    assert set(found) == {"redrelay.E011"}
    assert text in found["redrelay.E011"].msg


@pytest.mark.parametrize(
    ("queues", "ok"), [([], True), (["default"], True), ("default", False), (3, False)]
)
def test_tasks_backend_queues(settings: Any, queues: Any, ok: bool) -> None:
    """``QUEUES: []`` means any queue name, as in django.tasks (issue 18)."""
    if ok:
        settings.TASKS = {
            "default": {
                "BACKEND": "redrelay.contrib.django.tasks.RedRelayBackend",
                "QUEUES": queues,
            }
        }
    from redrelay.contrib.django._tasks_conf import problems

    # (A QUEUES that is not a list fails the framework's own __init__ first.)
    found = list(problems({"QUEUES": queues}))
    if ok:
        assert found == []
        assert "redrelay.E011" not in redrelay_messages()
    else:
        assert found and "QUEUES must be a list" in found[0]


def test_two_task_aliases_on_one_queue_are_reported(settings: Any) -> None:
    backend = "redrelay.contrib.django.tasks.RedRelayBackend"
    settings.TASKS = {
        "default": {"BACKEND": backend, "QUEUES": ["default", "emails"]},
        "other": {"BACKEND": backend, "QUEUES": ["emails"]},
        "apart": {
            "BACKEND": backend,
            "QUEUES": ["emails"],
            "OPTIONS": {"QUEUE_PREFIX": "apart."},
        },
    }
    found = [m.msg for m in checks.run_checks() if m.id == "redrelay.W011"]
    assert sorted(found) == [
        "TASKS['default'] and TASKS['other'] both put tasks on the redrelay "
        "queue(s) tasks.emails.",
        "TASKS['other'] and TASKS['default'] both put tasks on the redrelay "
        "queue(s) tasks.emails.",
    ]


@pytest.mark.django_db
def test_outbox_table_missing_is_a_database_warning(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redrelay.contrib.django.models import OutboxMessage

    settings.REDRELAY = {"default": {"URL": "redis://x", "OUTBOX": True}}
    assert redrelay_messages(databases=["default"]) == {}
    monkeypatch.setattr(OutboxMessage._meta, "db_table", "redrelay_missing")
    found = redrelay_messages(databases=["default"])
    assert set(found) == {"redrelay.W002"}
    assert found["redrelay.W002"].hint == "Run `manage.py migrate redrelay`."
    assert redrelay_messages() == {}  # a database check: only with databases=


def test_manage_py_check_reports_them(settings: Any) -> None:
    settings.REDRELAY = {"default": {"URL": "http://x"}}
    with pytest.raises(SystemCheckError, match=r"redrelay\.E004"):
        call_command("check", stdout=StringIO(), stderr=StringIO())
