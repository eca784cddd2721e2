"""AuditEvent and ApiToken moved here from the dashboard app (dashboard 0007 drops them from its
state). Their tables keep their names (Meta.db_table), so this only adds them to this app's
state: existing databases keep their rows, and a fresh one gets the tables from dashboard's
0003 and 0005. Their content types move with them, so permissions and admin history follow."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = ["auditevent", "apitoken"]


def move_content_types(apps, schema_editor, source="dashboard", destination="common"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MOVED:
        if ContentType.objects.using(db).filter(app_label=destination, model=model).exists():
            continue
        ContentType.objects.using(db).filter(app_label=source, model=model).update(app_label=destination)


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, source="common", destination="dashboard")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("dashboard", "0006_endpoint_batching_action"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditEvent",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("actor_name", models.CharField(blank=True, help_text="Kept if the user is deleted", max_length=150)),
                        ("action", models.CharField(choices=[("upload", "Upload"), ("register", "Register"), ("alias_set", "Alias Set"), ("alias_remove", "Alias Remove"), ("gate_override", "Gate Override"), ("endpoint_create", "Endpoint Create"), ("deploy", "Deploy"), ("rollback", "Rollback"), ("endpoint_token", "Endpoint Token"), ("endpoint_batching", "endpoint batching"), ("api_token", "Api Token"), ("integrity", "artifact integrity failure")], db_index=True, max_length=20)),
                        ("target", models.CharField(help_text="What it was done to: model:version, endpoint, …", max_length=300)),
                        ("details", models.JSONField(blank=True, default=dict)),
                        ("actor", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                    ],
                    options={"db_table": "dashboard_auditevent", "ordering": ["-at", "-id"]},
                ),
                migrations.CreateModel(
                    name="ApiToken",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(help_text="What uses it, e.g. 'CI: digits repo'", max_length=100)),
                        ("prefix", models.CharField(help_text="The key's first characters, to recognise it", max_length=16)),
                        ("key_hash", models.CharField(max_length=64, unique=True)),
                        ("scope", models.CharField(choices=[("full", "full (everything the user's role allows)"), ("register", "register (read, upload and register versions: for CI)"), ("read", "read-only")], default="full", max_length=10)),
                        ("created", models.DateTimeField(auto_now_add=True)),
                        ("expires", models.DateTimeField(blank=True, null=True)),
                        ("last_used", models.DateTimeField(blank=True, null=True)),
                        ("revoked", models.DateTimeField(blank=True, db_index=True, null=True)),
                        ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="api_tokens", to=settings.AUTH_USER_MODEL)),
                    ],
                    options={"db_table": "dashboard_apitoken", "ordering": ["-created", "-id"]},
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
