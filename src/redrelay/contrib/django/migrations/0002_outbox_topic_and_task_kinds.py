from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("redrelay", "0001_initial")]

    operations = [
        migrations.AlterField(
            model_name="outboxmessage",
            name="kind",
            field=models.CharField(
                choices=[
                    ("queue", "queue"),
                    ("channel", "channel"),
                    ("topic", "topic"),
                    ("task", "task"),
                ],
                default="queue",
                max_length=10,
            ),
        ),
    ]
