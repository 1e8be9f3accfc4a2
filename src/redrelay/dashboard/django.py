"""The dashboard in a Django project: staff only (or a permission), Django's own CSRF.

::

    # urls.py
    from django.urls import include, path

    urlpatterns = [
        path("relay/", include("redrelay.dashboard.django")),   # staff users
        # or: path("relay/", include(dashboard_urls(permission="myapp.view_relay"))),
    ]

Access is decided by ``auth=`` (default: an active staff user, or one with
``permission=``); the audit log records the user name. Changes are POSTs that Django's
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


#: The default relay's dashboard, for ``include("redrelay.dashboard.django")``.
urlpatterns = dashboard_urls()
