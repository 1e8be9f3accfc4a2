from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from redrelay.contrib.django import publish_on_commit

from .models import Notification
from .tasks import count_notifications


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    recent = [n.as_event() for n in Notification.objects.all()[:20]]
    return render(request, "notifications/index.html", {"recent": recent})


@require_POST
def notify(request: HttpRequest) -> JsonResponse:
    """Save a notification and announce it: subscribers hear of it once it is committed."""
    text = request.POST.get("text", "").strip()[:200] or "(empty)"
    with transaction.atomic():
        notification = Notification.objects.create(text=text)
        # Written to the outbox in this transaction (OUTBOX is on in settings): sent
        # right after the commit, or by the worker once Redis is back.
        publish_on_commit("notifications", notification.as_event())
    return JsonResponse({"id": notification.pk})


@require_POST
def start_count(request: HttpRequest) -> JsonResponse:
    result = count_notifications.enqueue()
    return JsonResponse({"id": result.id})


@require_GET
def task_result(request: HttpRequest, result_id: str) -> JsonResponse:
    result = count_notifications.get_result(result_id)
    payload: dict[str, object] = {"id": result.id, "status": str(result.status)}
    if result.status == "SUCCESSFUL":
        payload["value"] = result.return_value
    elif result.status == "FAILED":
        payload["error"] = result.errors[-1].traceback.splitlines()[-1]
    return JsonResponse(payload)
