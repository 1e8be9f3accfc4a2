from django.urls import path
from notifications import views

from redrelay.contrib.django.views import EventStreamView

urlpatterns = [
    path("", views.index, name="index"),
    path("notify/", views.notify, name="notify"),
    # The browser's EventSource: one channel, fixed here, so no other can be watched.
    path("events/", EventStreamView.as_view(channel="notifications"), name="events"),
    path("tasks/count/", views.start_count, name="start-count"),
    path("tasks/<str:result_id>/", views.task_result, name="task-result"),
]
