# The session index leads with the session, so a filter on the session alone uses it; built
# and dropped CONCURRENTLY on PostgreSQL so the decision log writers are never blocked.

from django.db import migrations, models

from governance.migration_ops import AddIndexOnline, RemoveIndexOnline


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("governance", "0010_decision_counts"),
    ]

    operations = [
        AddIndexOnline(
            model_name="decision",
            index=models.Index(
                condition=models.Q(("session", ""), _negated=True),
                fields=["session", "workload", "decided_at"],
                name="decision_by_session",
            ),
        ),
        RemoveIndexOnline(model_name="decision", name="decision_in_session"),
    ]
