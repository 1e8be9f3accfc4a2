from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path

from redrelay.contrib.django import enqueue_on_commit, publish_on_commit
from redrelay.contrib.django.views import EventStreamView, sse_view


def order(request: HttpRequest) -> HttpResponse:
    """A view that enqueues and publishes on commit (ATOMIC_REQUESTS-style by hand)."""
    from django.db import transaction

    with transaction.atomic():
        enqueue_on_commit("jobs", {"op": "ok", "from": "view"})
        publish_on_commit("news", {"text": "ordered"})
        if request.GET.get("fail"):
            transaction.set_rollback(True)
    return HttpResponse("ok")


class StaffOnly(EventStreamView):
    def authorize(self, request: HttpRequest, channel: str) -> bool:
        return request.headers.get("X-Staff") == "yes"


urlpatterns = [
    path("admin/", admin.site.urls),
    path("order/", order),
    path("events/<str:channel>/", sse_view),
    path("topics/<str:topic>/", sse_view),
    path("fixed/", EventStreamView.as_view(channel="news")),
    path("staff/<str:channel>/", StaffOnly.as_view()),
]
