from django.db import migrations


def seed(apps, schema_editor):
    from workloads.seed import seed_reference_data

    seed_reference_data(
        apps.get_model("workloads", "SensitivityTier"),
        apps.get_model("workloads", "Tool"),
        apps.get_model("workloads", "CombinationRule"),
    )


class Migration(migrations.Migration):
    dependencies = [("workloads", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
