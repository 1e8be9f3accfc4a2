"""The dashboard's Django URLs: staff only (or a permission), Django's own CSRF."""

from __future__ import annotations

from dataclasses import dataclass

from django.test import RequestFactory

from redrelay.contrib.django import get_relay
from redrelay.dashboard.django import dashboard_urls


@dataclass
class User:
    name: str
    is_staff: bool
    perms: tuple[str, ...] = ()
    is_active: bool = True
    is_authenticated: bool = True

    def has_perm(self, perm: str) -> bool:
        return perm in self.perms

    def get_username(self) -> str:
        return self.name


def call(method: str, url: str, user: User | None, **kwargs: object) -> object:
    (pattern,) = dashboard_urls()
    request = getattr(RequestFactory(), method)(url, **kwargs)
    request.user = user
    return pattern.callback(request, path=url.removeprefix("/relay/").split("?")[0])


def test_staff_see_the_dashboard_others_do_not() -> None:
    get_relay().queue("jobs").put("<b>x</b>")
    ok = call("get", "/relay/queues/jobs", User("ada", is_staff=True))
    assert ok.status_code == 200  # type: ignore[attr-defined]
    page = ok.content.decode()  # type: ignore[attr-defined]
    assert (
        "&lt;b&gt;x&lt;/b&gt;" in page and 'href="/relay/static/dashboard.css"' in page
    )
    assert ok["Content-Security-Policy"].startswith("default-src 'none'")  # type: ignore[index]
    assert call("get", "/relay/", User("bob", is_staff=False)).status_code == 401  # type: ignore[attr-defined]
    assert call("get", "/relay/", None).status_code == 401  # type: ignore[attr-defined]


def test_permission_instead_of_staff_and_django_csrf() -> None:
    (pattern,) = dashboard_urls(permission="relay.view")
    request = RequestFactory().get("/relay/workers")
    request.user = User("cy", is_staff=False, perms=("relay.view",))
    assert pattern.callback(request, path="workers").status_code == 200
    # a POST without Django's CSRF token is refused by Django, before the dashboard
    post = RequestFactory().post("/relay/queues/jobs/purge", {"scope": "all"})
    post.user = User("cy", is_staff=True, perms=("relay.view",))
    assert pattern.callback(post, path="queues/jobs/purge").status_code == 403


def test_a_visitor_not_logged_in_is_sent_to_the_admin_login() -> None:
    """As the admin's own pages do: a new user got a bare 401 page at /relay/."""
    from django.contrib.auth.models import AnonymousUser

    (pattern,) = dashboard_urls()

    def anonymous(url: str) -> object:
        request = RequestFactory().get(url)
        request.user = AnonymousUser()
        return pattern.callback(request, path=url.removeprefix("/relay/").split("?")[0])

    page = anonymous("/relay/queues/jobs?page=2")
    assert page.status_code == 302  # type: ignore[attr-defined]
    assert page["Location"] == "/admin/login/?next=/relay/queues/jobs%3Fpage%3D2"  # type: ignore[index]
    for url in ("/relay/api/overview", "/relay/metrics", "/relay/events"):
        assert anonymous(url).status_code == 401, url  # type: ignore[attr-defined]
    # A logged-in user who is not staff: refused, not sent to log in again.
    assert call("get", "/relay/", User("bob", is_staff=False)).status_code == 401  # type: ignore[attr-defined]
