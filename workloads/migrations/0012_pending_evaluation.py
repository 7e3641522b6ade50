"""Evaluation's work list moves from a flag on each event to a narrow table of its own.

Claiming a batch used to rewrite each wide event row (`SET evaluated = true`: a new row
version and an entry in each of the table's indexes, about 16 µs an event on PostgreSQL);
it now deletes small `PendingEvaluation` rows (about 4 µs). A trigger adds the pending row in
the statement that stores the event, so no insertion path (ingestion, a script, a fixture)
can store an event that evaluation never sees.

The trigger is created last: SQLite rebuilds a table to drop a column, and the rebuild drops
the table's triggers. A later migration that rebuilds `workloads_usageevent` on SQLite must
create it again (tests/evaluation/test_pending.py fails if it is missing).
"""

import django.db.models.deletion
from django.db import migrations, models

EVENTS = "workloads_usageevent"
PENDING = "workloads_pendingevaluation"

# PostgreSQL: once per statement, over the rows it actually inserted (the transition table
# leaves out rows skipped by ON CONFLICT DO NOTHING): one INSERT … SELECT per ingest batch.
POSTGRES_CREATE = f"""
CREATE FUNCTION mandate_event_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {PENDING} (event_id) SELECT id FROM stored_events;
    RETURN NULL;
END;
$$;
CREATE TRIGGER usage_event_pending AFTER INSERT ON {EVENTS}
    REFERENCING NEW TABLE AS stored_events
    FOR EACH STATEMENT EXECUTE FUNCTION mandate_event_pending();
"""
POSTGRES_DROP = f"""
DROP TRIGGER IF EXISTS usage_event_pending ON {EVENTS};
DROP FUNCTION IF EXISTS mandate_event_pending();
"""
# SQLite has no statement triggers; INSERT OR IGNORE does not fire it for skipped rows.
SQLITE_CREATE = f"""
CREATE TRIGGER usage_event_pending AFTER INSERT ON {EVENTS}
BEGIN
    INSERT INTO {PENDING} (event_id) VALUES (NEW.id);
END
"""
SQLITE_DROP = "DROP TRIGGER IF EXISTS usage_event_pending"


def _by_vendor(postgres: str, sqlite: str):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        schema_editor.execute(postgres if vendor == "postgresql" else sqlite, None)

    return run


def pending_from_flags(apps, schema_editor):
    schema_editor.execute(
        f"INSERT INTO {PENDING} (event_id) SELECT id FROM {EVENTS} WHERE NOT evaluated"
    )


def flags_from_pending(apps, schema_editor):
    schema_editor.execute(
        f"UPDATE {EVENTS} SET evaluated = NOT EXISTS "
        f"(SELECT 1 FROM {PENDING} p WHERE p.event_id = {EVENTS}.id)"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("workloads", "0011_session_traces"),
    ]

    operations = [
        migrations.CreateModel(
            name="PendingEvaluation",
            fields=[
                (
                    "event",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="pending_evaluation",
                        serialize=False,
                        to="workloads.usageevent",
                    ),
                ),
            ],
        ),
        migrations.RemoveIndex(
            model_name="usageevent",
            name="unevaluated_events",
        ),
        migrations.RunPython(pending_from_flags, flags_from_pending),
        migrations.RemoveField(
            model_name="usageevent",
            name="evaluated",
        ),
        migrations.RunPython(
            _by_vendor(POSTGRES_CREATE, SQLITE_CREATE), _by_vendor(POSTGRES_DROP, SQLITE_DROP)
        ),
    ]
