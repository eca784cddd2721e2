"""AuditEvent and ApiToken now belong to the common app (common 0001 adds them to its state);
their tables stay, so this drops them from this app's state only."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0006_endpoint_batching_action"),
        ("common", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="AuditEvent"),
                migrations.DeleteModel(name="ApiToken"),
            ],
            database_operations=[],
        ),
    ]
