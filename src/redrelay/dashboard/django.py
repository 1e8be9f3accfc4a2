"""The dashboard in a Django project: staff only (or a permission), Django's own CSRF.

::

    # urls.py
    from django.urls import include, path

    urlpatterns = [
        path("relay/", include("redrelay.dashboard.django")),   # staff users
        # or: path("relay/", include(dashboard_urls(permission="myapp.view_relay"))),
    ]

Access is decided by ``auth=`` (default: an active staff user, or one with
``permission=``); the audit log records the user name. A visitor who is not logged in
is sent to the admin's login (or ``LOGIN_URL``) from the pages; JSON, ``/metrics`` and
the event stream answer 401. Changes are POSTs that Django's
``CsrfViewMiddleware`` checks (token and Origin), as for any view.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.middleware.csrf import get_token
from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_protect

from ..contrib.django.conf import DEFAULT_ALIAS
from ..contrib.django.relays import get_relay
from .core import Dashboard
from .http import Request
from .wsgi import _closing

__all__ = ["dashboard_urls", "staff_or_permission", "urlpatterns"]


def staff_or_permission(permission: str | None = None) -> Any:
    """An ``auth=`` hook: an active staff user, or an active user with ``permission``."""

    def auth(request: Request, action: str) -> bool | str:
        user = getattr(request.native, "user", None)
        if user is None or not user.is_active:
            return False
        allowed = user.has_perm(permission) if permission else user.is_staff
        return str(user.get_username()) if allowed else False

    return auth


def dashboard_urls(
    alias: str = DEFAULT_ALIAS, *, permission: str | None = None, **options: Any
) -> list[URLPattern]:
    """URL patterns serving the dashboard of relay ``alias``; ``include()`` them.

    :param permission: required of the user instead of ``is_staff``.
    :param options: passed to :class:`~redrelay.dashboard.Dashboard` (``auth=`` replaces
        the staff check).
    """
    options.setdefault("auth", staff_or_permission(permission))
    boards: dict[str, Dashboard] = {}

    def board() -> Dashboard:
        relay = get_relay(alias)
        current = boards.get(alias)
        if current is None or current.relay is not relay:  # settings changed (tests)
            if current is not None:
                current.close()
            current = boards[alias] = Dashboard(relay, **options)
        return current

    def view(request: HttpRequest, path: str) -> HttpResponseBase:
        root = request.path[: len(request.path) - len(path)].rstrip("/")
        req = Request(
            method=request.method or "GET",
            path="/" + path,
            root=root,
            query=request.GET.dict(),
            form={k: request.POST.getlist(k) for k in request.POST},
            headers={k.lower(): v for k, v in request.headers.items()},
            cookies=dict(request.COOKIES),
            remote_addr=request.META.get("REMOTE_ADDR", ""),
            origin=f"{request.scheme}://{request.get_host()}",
            native=request,
            framework_csrf=("csrfmiddlewaretoken", get_token(request)),
        )
        response = board().handle(req)
        if response.status == 401:
            login = _login_redirect(request, path)
            if login is not None:
                return login
        out: HttpResponseBase
        if isinstance(response.body, bytes):
            out = HttpResponse(
                response.body,
                status=response.status,
                content_type=response.content_type,
            )
        else:
            out = StreamingHttpResponse(
                _closing(response.body),
                status=response.status,
                content_type=response.content_type,
            )
        for key, value in response.headers.items():
            out[key] = value
        return out

    # csrf_protect: checked even in a project without CsrfViewMiddleware
    return [re_path(r"^(?P<path>.*)$", csrf_protect(view), name="redrelay-dashboard")]


#: Not pages: what a script or Prometheus reads gets the 401, not a login form.
_NOT_PAGES = ("api/", "events", "metrics", "static/")


def _login_redirect(request: HttpRequest, path: str) -> HttpResponseBase | None:
    """Send a visitor who is not logged in to log in, as the admin's own pages do
    (a bare 401 told a Django user nothing), then back here: the admin's login if the
    admin is installed, else ``settings.LOGIN_URL``. Logged-in users who may not see
    it, other methods and the non-page URLs keep the 401."""
    user = getattr(request, "user", None)
    if (
        user is None
        or user.is_authenticated
        or request.method != "GET"
        or path.startswith(_NOT_PAGES)
    ):
        return None
    from django.conf import settings
    from django.contrib.auth.views import redirect_to_login
    from django.urls import NoReverseMatch, reverse

    try:
        login_url = reverse("admin:login")
    except NoReverseMatch:
        login_url = settings.LOGIN_URL
    return redirect_to_login(request.get_full_path(), login_url)


#: The default relay's dashboard, for ``include("redrelay.dashboard.django")``.
urlpatterns = dashboard_urls()
