"""The outbox table in the Django admin: what waits to be sent, and why it is stuck.

Loaded by the admin's autodiscovery when ``django.contrib.admin`` is installed. Rows are
read-only (a row typed by hand would skip the checks of ``enqueue_on_commit``); the
actions send the selected rows now (their failure count reset, so a row that had given
up is tried again) or delete them. Bodies and errors are escaped by the admin and
truncated here, since a body is whatever the app put in it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse

from ...errors import RedrelayError
from .models import Dashboard, OutboxMessage
from .outbox import flush_outbox

__all__ = ["DashboardAdmin", "OutboxMessageAdmin"]

#: Characters of a body or an error shown in the list.
SHOWN = 80


def _short(text: str) -> str:
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


class _ReadOnly(admin.ModelAdmin):
    """Nothing added or changed through the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: Any | None = None
    ) -> bool:
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(_ReadOnly):
    """Outbox rows: newest last, filterable by kind and alias, searchable by name."""

    list_display = (
        "id",
        "kind",
        "name",
        "alias",
        "short_body",
        "created",
        "eta",
        "attempts",
        "short_error",
    )
    list_filter = ("kind", "alias")
    search_fields = ("name", "dedup_key")
    date_hierarchy = "created"
    actions = ["send_now"]
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]

    @admin.display(description="body")  # type: ignore[untyped-decorator]
    def short_body(self, row: OutboxMessage) -> str:
        return _short(repr(row.body))

    @admin.display(description="last error")  # type: ignore[untyped-decorator]
    def short_error(self, row: OutboxMessage) -> str:
        return _short(row.last_error)

    @admin.action(  # type: ignore[untyped-decorator]
        description="Send selected outbox messages now", permissions=["delete"]
    )
    def send_now(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        pks = list(queryset.values_list("pk", flat=True))
        queryset.update(attempts=0)
        try:
            sent = flush_outbox(pks=pks, using=queryset.db)
        except RedrelayError as exc:
            self.message_user(
                request,
                f"Redis is unreachable ({exc}); the rows stay in the outbox.",
                messages.ERROR,
            )
            return
        left = OutboxMessage.objects.using(queryset.db).filter(pk__in=pks).count()
        level = messages.SUCCESS if not left else messages.WARNING
        self.message_user(
            request, f"{sent} sent, {left} still in the outbox (see last error).", level
        )


@admin.register(Dashboard)
class DashboardAdmin(_ReadOnly):
    """The "Dashboard" entry of the admin's index, for staff: a link to where the project mounted
    ``redrelay.dashboard.django`` (the URL named ``redrelay-dashboard``), which checks
    its own access (staff, or the ``permission=`` it was given)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(
        self, request: HttpRequest, obj: Any | None = None
    ) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            return super().changelist_view(request, extra_context)  # Django's refusal
        try:
            url = reverse("redrelay-dashboard", kwargs={"path": ""})
        except NoReverseMatch:
            self.message_user(
                request,
                "The redrelay dashboard is not mounted: add "
                'path("relay/", include("redrelay.dashboard.django")) to your URLs '
                "(docs/dashboard.md).",
                messages.WARNING,
            )
            return HttpResponseRedirect(reverse("admin:index"))
        return HttpResponseRedirect(url)
