"""Refuse UPDATE and DELETE on audit events in PostgreSQL itself, not only in the ORM.

A raw SQL statement (a mistaken script, an injection) can no longer rewrite history; only a
role that may alter the table can, by disabling the trigger first, and `verify_audit` is
there for that case. SQLite (the embedded default) keeps the ORM-level guard only.
"""

from django.db import migrations

TABLE = "governance_auditevent"

CREATE = f"""
CREATE FUNCTION mandate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION mandate_audit_append_only();
"""

DROP = f"""
DROP TRIGGER IF EXISTS audit_append_only ON {TABLE};
DROP FUNCTION IF EXISTS mandate_audit_append_only();
"""


def _on_postgres(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, None)  # no parameters: '%' is plpgsql's

    return run


class Migration(migrations.Migration):
    dependencies = [("governance", "0008_decision_log_cheaper_writes")]

    operations = [migrations.RunPython(_on_postgres(CREATE), _on_postgres(DROP))]
