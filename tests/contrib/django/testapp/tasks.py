"""Tasks of the test app (django.tasks, or the django-tasks backport)."""

from __future__ import annotations

from typing import Any

try:
    from django.tasks import task  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from django_tasks import task


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def lookup(model: str) -> int:
    """The pk of a content type that the enqueuing transaction created."""
    from django.contrib.contenttypes.models import ContentType

    return int(ContentType.objects.get(app_label="rrtest", model=model).pk)


@task
def explode(text: str) -> None:
    raise ValueError(text)


@task(queue_name="other")
def shout(text: str) -> str:
    return text.upper()


@task(takes_context=True)
def attempt(context: Any) -> int:
    return int(context.attempt)


@task
def returns_set() -> Any:
    return {1, 2}


async def _twice(n: int) -> int:
    return 2 * n


@task
async def double(n: int) -> int:
    return await _twice(n)
