# CredentialState moves into the app. Until 7392aaa it was the reference deployment's
# `accounts.CredentialState`; a database made then has its rows in `accounts_credentialstate`
# and a content type `accounts.credentialstate` that permissions, their grants and admin log
# entries point to. This migration cannot depend on `accounts` (a project that adopts the app
# has none, or one of its own), so it adopts what it finds: the old table is renamed (rows and
# the user foreign key untouched), else the table is created; the old content type gets the
# label `realtime` and keeps its id, so everything that points to it follows.
# In the reference deployment `accounts` 0002 runs before this one and `accounts` 0003 after it.

import django.db.models.deletion
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, migrations, models, transaction

MODEL = "credentialstate"
OLD_APP = "accounts"


class CreateOrAdoptModel(migrations.CreateModel):
    """`CreateModel` that renames `old_table` to the model's table when it is there with the model's columns.

    Backwards, the table goes back to `old_table` when the state before this migration still
    has a model on that name (its owner's migrations expect it) and nothing else took it;
    otherwise it is dropped as `CreateModel` drops it.
    """

    def __init__(self, *args, old_table: str, **kwargs):
        self.old_table = old_table
        super().__init__(*args, **kwargs)

    def describe(self):
        return f"Create model {self.name}, or adopt the table {self.old_table}"

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.name)
        if self.allow_migrate_model(schema_editor.connection.alias, model) and self._adoptable(schema_editor, model):
            schema_editor.alter_db_table(model, self.old_table, model._meta.db_table)
        else:
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.name)
        owned = any(other._meta.db_table == self.old_table for other in to_state.apps.get_models())
        free = self.old_table not in schema_editor.connection.introspection.table_names()
        if self.allow_migrate_model(schema_editor.connection.alias, model) and owned and free:
            schema_editor.alter_db_table(model, model._meta.db_table, self.old_table)
        else:
            super().database_backwards(app_label, schema_editor, from_state, to_state)

    def _adoptable(self, schema_editor, model) -> bool:
        """Whether `old_table` exists with exactly the model's columns (not another app's table of that name)."""
        introspection = schema_editor.connection.introspection
        if self.old_table not in introspection.table_names():
            return False
        with schema_editor.connection.cursor() as cursor:
            columns = {column.name for column in introspection.get_table_description(cursor, self.old_table)}
        return columns == {field.column for field in model._meta.local_concrete_fields}


def relabel(apps, schema_editor, source, target):
    """Give the content type `<source>.credentialstate` the label `target`, keeping its id.

    A `<target>.credentialstate` made meanwhile is merged into it: code of the other side asks
    for its model's content type (`ContentType.objects.get_for_model`, which creates it: the
    admin, `create_permissions` on the project's models) while the database has the old label,
    a process started before `migrate` or left running after `migrate realtime 0007`, say. Its
    permissions' grants and everything else that points to it move over, then it is deleted.
    """
    content_types = apps.get_model("contenttypes", "ContentType").objects.db_manager(schema_editor.connection.alias)
    moving = content_types.filter(app_label=source, model=MODEL).first()
    if moving is None:
        return
    stale = content_types.filter(app_label=target, model=MODEL).first()
    if stale is not None:
        merge(apps, schema_editor.connection.alias, stale, moving)
    moving.app_label = target
    moving.save(update_fields=["app_label"])
    content_types.clear_cache()
    ContentType.objects.clear_cache()  # the process's own cache, which post_migrate and the code read


def merge(apps, db, stale, kept):
    """Point what points to the content type `stale` (and to its permissions) to `kept` (and its own); delete it."""
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.db_manager(db)
    twins = {permission.codename: permission for permission in permissions.filter(content_type=kept)}
    for permission in permissions.filter(content_type=stale):
        twin = twins.get(permission.codename)
        if twin is None:
            permission.content_type = kept  # its grants come along
            permission.save(update_fields=["content_type"])
        else:
            repoint(apps, db, permission, twin)
            permission.delete()
    repoint(apps, db, stale, kept)
    stale.delete()


def repoint(apps, db, old, new):
    """Every row (grants too: the through tables) with a foreign key to `old` points to `new` instead.

    A row that would then repeat one already pointing to `new` (a unique constraint says so:
    a group granted both permissions) is deleted instead.
    """
    for model in apps.get_models(include_auto_created=True):
        for field in model._meta.local_concrete_fields:
            if not field.many_to_one or field.related_model is not type(old):
                continue
            for row in model._base_manager.db_manager(db).filter(**{field.name: old}):
                try:
                    with transaction.atomic(using=db):
                        model._base_manager.db_manager(db).filter(pk=row.pk).update(**{field.name: new})
                except IntegrityError:
                    row.delete()


def forwards(apps, schema_editor):
    relabel(apps, schema_editor, OLD_APP, "realtime")


def backwards(apps, schema_editor):
    relabel(apps, schema_editor, "realtime", OLD_APP)


class Migration(migrations.Migration):

    dependencies = [
        ("realtime", "0007_room_slug_end_of_text"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0001_initial"),
    ]

    operations = [
        CreateOrAdoptModel(
            name="CredentialState",
            fields=[
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="realtime_credentials",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                ("refresh_revoked_at", models.DateTimeField(blank=True, null=True)),
            ],
            old_table=f"{OLD_APP}_{MODEL}",
        ),
        migrations.RunPython(forwards, backwards),
    ]
