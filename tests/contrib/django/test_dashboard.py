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
