from django.db import models


class Notification(models.Model):
    text = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def as_event(self) -> dict[str, object]:
        return {"id": self.pk, "text": self.text, "created": self.created.isoformat()}
