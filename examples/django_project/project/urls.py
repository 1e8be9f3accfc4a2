from django.urls import include, path
from notifications import views

from redrelay.contrib.django.views import EventStreamView
from redrelay.dashboard.django import dashboard_urls

urlpatterns = [
    # The operator's dashboard. This example has no users, so it lets browsers on this
    # machine in; a real project keeps the default (staff users only):
    #     path("relay/", include("redrelay.dashboard.django")),
    path("relay/", include(dashboard_urls(auth=None, anonymous=True))),
    path("", views.index, name="index"),
    path("notify/", views.notify, name="notify"),
    # The browser's EventSource: one channel, fixed here, so no other can be watched.
    path("events/", EventStreamView.as_view(channel="notifications"), name="events"),
    path("tasks/count/", views.start_count, name="start-count"),
    path("tasks/<str:result_id>/", views.task_result, name="task-result"),
]
