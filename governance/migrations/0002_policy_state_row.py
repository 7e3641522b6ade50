from django.db import migrations


def create_row(apps, schema_editor):
    apps.get_model("governance", "PolicyState").objects.get_or_create(id=1)


class Migration(migrations.Migration):
    dependencies = [("governance", "0001_initial")]
    operations = [migrations.RunPython(create_row, migrations.RunPython.noop)]
