# Room.members gets a declared through model, `Membership`, on the table Django already made
# for it (realtime_room_members: the same columns, indexes and unique pair). Only the
# migration state changes; the database is left as it is.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("realtime", "0004_resumable_sessions"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="Membership",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "room",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="memberships",
                                to="realtime.room",
                            ),
                        ),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "realtime_room_members",
                        "unique_together": {("room", "user")},
                    },
                ),
                migrations.AlterField(
                    model_name="room",
                    name="members",
                    field=models.ManyToManyField(
                        blank=True, related_name="rooms", through="realtime.Membership", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
        ),
    ]
