"""The outbox table in the Django admin: listed, escaped, read-only, sent on demand."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from redrelay import Relay
from redrelay.contrib.django.models import OutboxMessage

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/admin/redrelay/outboxmessage/"


def test_the_outbox_is_listed_with_bodies_escaped_and_truncated(
    admin_client: Client,
) -> None:
    OutboxMessage.objects.create(
        name="jobs", body={"html": "<script>alert(1)</script>" + "x" * 500}
    )
    OutboxMessage.objects.create(
        kind=OutboxMessage.KIND_CHANNEL, name="news", body=1, last_error="too big"
    )
    page = admin_client.get(URL).content.decode()
    assert "jobs" in page and "news" in page and "too big" in page
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)" in page
    assert "x" * 200 not in page  # truncated
    assert (
        admin_client.get(URL + "?kind__exact=channel")
        .content.decode()
        .count("field-name")
        == 1
    )
    # Read-only: no add page, and a row's page has no save button.
    assert admin_client.get(URL + "add/").status_code == 403
    row = OutboxMessage.objects.get(name="jobs")
    change = admin_client.get(f"{URL}{row.pk}/change/").content.decode()
    assert 'name="_save"' not in change


def test_send_now_sends_the_selected_rows_even_those_that_gave_up(
    admin_client: Client, app_relay: Relay
) -> None:
    stuck = OutboxMessage.objects.create(name="jobs", body={"n": 1}, attempts=99)
    other = OutboxMessage.objects.create(name="jobs", body={"n": 2})
    response = admin_client.post(
        URL, {"action": "send_now", "_selected_action": [stuck.pk]}, follow=True
    )
    assert "1 sent, 0 still in the outbox" in response.content.decode()
    assert list(OutboxMessage.objects.values_list("pk", flat=True)) == [other.pk]
    assert app_relay.queue("jobs").stats().ready == 1


def test_send_now_during_an_outage_keeps_the_rows(
    admin_client: Client, settings: Any, namespace: str
) -> None:
    settings.REDRELAY = {
        "default": {
            "URL": "redis://127.0.0.1:9/0",  # the discard port: nothing listens
            "NAMESPACE": namespace,
            "OPTIONS": {"connect_retries": 0},
        }
    }
    row = OutboxMessage.objects.create(name="jobs", body={"n": 1})
    response = admin_client.post(
        URL, {"action": "send_now", "_selected_action": [row.pk]}, follow=True
    )
    assert "Redis is unreachable" in response.content.decode()
    assert OutboxMessage.objects.filter(pk=row.pk).exists()


def test_the_admin_links_staff_to_the_dashboard(
    client: Client, settings: Any, django_user_model: Any
) -> None:
    settings.ROOT_URLCONF = "tests.contrib.django.urls_dashboard"
    staff = django_user_model.objects.create_user("ada", password="x", is_staff=True)
    client.force_login(staff)  # staff without any model permission
    index = client.get("/admin/").content.decode()
    assert 'href="/admin/redrelay/dashboard/"' in index
    link = client.get("/admin/redrelay/dashboard/")
    assert (link.status_code, link["Location"]) == (302, "/relay/")
    assert "<h1>" in client.get("/relay/").content.decode()  # the dashboard lets ada in
    assert client.get("/admin/redrelay/dashboard/add/").status_code == 403

    nobody = django_user_model.objects.create_user("bob", password="x")
    client.force_login(nobody)
    assert client.get("/admin/redrelay/dashboard/").status_code == 302  # to the login
    assert client.get("/relay/").status_code == 401


def test_the_admin_link_says_how_to_mount_a_dashboard_that_is_not(
    admin_client: Client,
) -> None:
    page = admin_client.get("/admin/redrelay/dashboard/", follow=True)
    assert page.redirect_chain[-1][0] == "/admin/"
    text = page.content.decode()
    assert "dashboard is not mounted" in text
    assert "include(&quot;redrelay.dashboard.django&quot;)" in text
