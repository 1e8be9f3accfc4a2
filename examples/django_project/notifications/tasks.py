"""A django.tasks task, run by the redrelay worker (TASKS backend RedRelayBackend)."""

try:
    from django.tasks import task  # Django >= 6.0
except ImportError:
    from django_tasks import task  # the backport on Django 5.x

from .models import Notification


@task
def count_notifications() -> int:
    return Notification.objects.count()
