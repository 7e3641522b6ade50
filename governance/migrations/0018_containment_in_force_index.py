from django.db import migrations, models

from governance.migration_ops import AddIndexOnline


class Migration(migrations.Migration):
    """The findings queue's "containment in force" filter (closed findings whose measures
    still hold): a partial index on the records nobody reversed."""

    atomic = False

    dependencies = [
        ("governance", "0017_containment_records_kept_through_merges"),
    ]

    operations = [
        AddIndexOnline(
            model_name="containmentaction",
            index=models.Index(
                condition=models.Q(("reversed_at__isnull", True)),
                fields=["finding"],
                name="containment_in_force",
            ),
        ),
    ]
